"""``spywatch validate``: run a data suite on a bars CSV; exit 0 when every check passes, else 1.

Bad data is a finding, not a crash: an unparsable file, a missing column or a non-numeric value
fail like any other check (one line naming the check, the column and the row/date, exit 1).
Exit 2 is kept for usage errors (no ``--model`` for the features suite, a bad ``--as-of``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spywatch.cli.arguments import iso_date

SUITES = ("raw_bars", "features")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` subcommand (called by ``spywatch.cli``)."""
    p = subparsers.add_parser("validate", help="check a bars CSV (raw_bars) or its features against a model")
    p.add_argument("--data", required=True, type=Path,
                   help="bars CSV (Date, Open, High, Low, Close, Adj Close, Volume)")
    p.add_argument("--as-of", default=None, type=iso_date,
                   help="the run's date (default: the last settled NYSE session); raw_bars only")
    p.add_argument("--suite", choices=SUITES, default="raw_bars")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder with scaler.json and features_suite.json (--suite features)")
    p.add_argument("--results", type=Path, default=None, help="folder for the JSON validation record")
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Validate, print one line per failed check and a summary; return the exit code."""
    import pandas as pd

    from spywatch import sessions, validation

    if args.suite == "features" and args.model is None:
        raise ValueError("--suite features needs --model DIR "
                         "(a folder with scaler.json and features_suite.json)")
    as_of = pd.Timestamp(args.as_of) if args.as_of else sessions.last_closed_session()
    try:
        bars = validation.read_bars_for_validation(args.data, args.results)
        if args.suite == "raw_bars":
            result = validation.validate_bars(bars, as_of, args.results)
        else:
            from spywatch.dataset import build_table

            result = validation.validate_features(build_table(bars).features, args.model, args.results)
    except validation.ValidationFailed as exc:
        result = exc.result
    print(result.format())
    if args.suite == "raw_bars":
        print(f"as of {as_of.date()} ({'--as-of' if args.as_of else 'the last settled NYSE session'})")
    if result.results_path is not None:
        print(f"record: {result.results_path}")
    return 0 if result.success else 1
