"""``python -m spywatch``: the ``spywatch`` command."""

from spywatch.cli import entry

entry()
