"""The argument types every subcommand shares (ISO dates, tickers, roots) and the parser class
whose usage errors cut the offending value (``spywatch.text``)."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

from spywatch.text import LIMIT, cut, shown

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def iso_date(text: str) -> str:
    """An argparse type: a calendar date written YYYY-MM-DD, nothing looser (``31/12/2024``,
    ``03/04/2024`` and ``20241231`` are refused rather than guessed)."""
    if not ISO_DATE.match(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is not an ISO date (YYYY-MM-DD, e.g. 2024-12-31)")
    try:
        dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{shown(text)}: {exc}") from None
    return text


def ticker_arg(text: str) -> str:
    """An argparse type: a ticker by the one name rule (``spywatch.names``), upper-cased."""
    from spywatch.names import BadName, ticker

    try:
        return ticker(text)
    except BadName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def root_dir(text: str) -> Path:
    """An argparse type: a root folder (created on first use), refused when it names a file, or an
    object-storage URL (``spywatch run`` and the flows take those: ``root_spec``)."""
    if "://" in text:
        raise argparse.ArgumentTypeError(f"{shown(text)}: this command reads a local root; a root on object "
                                         f"storage is run with `spywatch run --root s3://bucket/prefix`")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{shown(text)} is a file, not a folder (a root holds the store, models and "
                                         f"published outputs)")
    return path


def root_spec(text: str) -> Path | str:
    """An argparse type: a local root (``root_dir``) or a root on object storage, ``s3://bucket/prefix``
    (kept as the URL: ``spywatch.objectroot``)."""
    if text.startswith("s3://"):
        if len(text.removeprefix("s3://").strip("/")) == 0:
            raise argparse.ArgumentTypeError(f"{shown(text)} names no bucket (s3://bucket/prefix)")
        return text.rstrip("/")
    return root_dir(text)


class Parser(argparse.ArgumentParser):
    """argparse, with the offending value in its usage errors cut (``spywatch.text``)."""

    def error(self, message: str):  # noqa: ANN201 - NoReturn, argparse's contract
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {cut(message, 2 * LIMIT)}\n")
