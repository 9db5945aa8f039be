"""The names that become paths, one rule each, checked wherever a name enters (the CLI's
arguments, the flows' parameters, fleet files) and again where the path is built, so that nothing
a caller types can leave the root.

- a ticker: an upper-case symbol, ``SPY``, ``BRK.B``, ``BF-B`` (a letter, then up to 9 letters,
  digits, ``.`` or ``-``); lower case is accepted and upper-cased. It names ``bars/<TICKER>.parquet``
  and a fleet's ``tickers/<TICKER>/``.
- a run id: what names a run's folders (``published/.runs/<session>.<run_id>``, ``attempts/<run_id>``):
  letters, digits, ``.``, ``_``, ``-``, at most 64, not starting with ``.``.
"""

from __future__ import annotations

import re

from spywatch.text import shown

TICKER = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class BadName(ValueError):
    """A name that would not stay a plain name in a path (a usage error: exit 2)."""


def ticker(name: object) -> str:
    """``name`` as a ticker (upper case), or ``BadName``."""
    if isinstance(name, str) and TICKER.match(name.upper()):
        return name.upper()
    raise BadName(f"ticker {shown(name)} is not a symbol like SPY or BRK.B (a letter, then up to 9 letters, digits, "
                  f"'.' or '-')")


def run_id(name: object) -> str:
    """``name`` as a run id, or ``BadName``."""
    if isinstance(name, str) and RUN_ID.match(name):
        return name
    raise BadName(f"run id {shown(name)} is not a plain name (letters, digits, '.', '_', '-'; at most 64)")
