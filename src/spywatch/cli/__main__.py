"""``python -m spywatch.cli``: the ``spywatch`` command, as ``python -m spywatch``."""

from spywatch.cli import entry

entry()
