"""spywatch keeps a PatchTST classifier on SPY daily bars healthy: every night it fetches and
validates the bars, measures drift against the training data, audits the champion for collapse
and decay, retrains and promotes a challenger only when it is better, and publishes the
predictions with their audit.

The ``spywatch`` command: the top-level parser, the exit codes and the one-line errors. Each
subcommand group is a module of this package, listed in ``SUBCOMMANDS`` and imported like any
other (a missing one is an ImportError); each parses its arguments and calls one function of the
library, and heavy imports happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from spywatch.cli import backfill, drift, evaluate, features, fleet, models, run, serve, validation
from spywatch.cli.arguments import Parser
from spywatch.market_data import DataFormatError, MarketDataError
from spywatch.text import LIMIT, cut

# In the order of the help page; each module exposes ``register(subparsers)``.
SUBCOMMANDS = (features, validation, drift, evaluate, models, run, backfill, serve, fleet)

DESCRIPTION = """\
Watch, retrain and publish a PatchTST classifier of SPY's next 1/3/5 sessions (P of a +1% gain).

  spywatch run                      one night end to end (the Prefect flow, on a local server)
  spywatch run --source csv:FILE --as-of 2024-12-31    ... on a CSV of daily bars
  spywatch serve                    the published reports over HTTP, for the Prefect UI's links
  spywatch models list              the model versions; * marks the champion
  spywatch validate / drift         check a CSV of bars, or a window of it against the training data
  spywatch backfill / evaluate      replay a policy over past sessions; score PatchTST out of time

Dates are ISO (YYYY-MM-DD). Outputs go under ./workspace unless --root / --out says otherwise."""

EPILOG = """\
exit status:
  0  done: the night was published, the data passed, no drift
  1  a finding: a check failed, drift was detected, the night failed (its audit says why)
  2  a usage or input error (a bad argument, a file that is not there, a session that has not
     settled, a root this user cannot write); nothing was run or written
  1  also: the disk is full (the error names the file; what was published before is unchanged)
  3  spywatch run: another run holds the root's lock (its PID, host and start are printed)"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spywatch", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spywatch")
    except PackageNotFoundError:
        return "unknown (not installed)"


# OSErrors told in one line instead of a traceback, with their exit status: a full disk fails the
# command (1); a root this user may not write is a usage error (2).
MACHINE_ERRORS = {errno.ENOSPC: 1, errno.EDQUOT: 1, errno.EACCES: 2, errno.EPERM: 2, errno.EROFS: 2}


def main(argv: list[str] | None = None) -> int:
    return _dispatch(build_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (DataFormatError, MarketDataError, ValueError, FileNotFoundError) as exc:
        print(f"spywatch {args.command}: error: {cut(str(exc), 5 * LIMIT)}", file=sys.stderr)
        return 2
    except OSError as exc:
        code = MACHINE_ERRORS.get(exc.errno)
        if code is None:
            raise
        print(f"spywatch {args.command}: error: {os.strerror(exc.errno)}: {exc.filename or '?'} (what was published "
              f"before is unchanged)", file=sys.stderr)
        return code


def entry() -> None:
    """The ``spywatch`` console script: ``main``, then exit. A command that loaded the whole stack
    (``run``: Prefect, Great Expectations, Evidently, torch) leaves without the interpreter's
    teardown, which frees its ~5,500 modules one by one (~2.5 s on 2 cores) after the work
    is done and reported: output and logs are flushed first, its server is already stopped and its
    events delivered."""
    args = build_parser().parse_args()
    code = _dispatch(args)
    if getattr(args, "skip_teardown", False):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
