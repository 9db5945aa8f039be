"""spywatch keeps a PatchTST classifier on SPY daily bars healthy: every night it fetches and
validates the bars, measures drift against the training data, audits the champion for collapse
and decay, retrains and promotes a challenger only when it is better, and publishes the
predictions with their audit.

Each subcommand parses its arguments here (or in the module beside its stage) and calls one
function of the library; heavy imports happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import logging
import os
import re
import sys
from pathlib import Path

from spywatch.market_data import DataFormatError, MarketDataError
from spywatch.text import LIMIT, cut, shown


def _cmd_features(args: argparse.Namespace) -> int:
    from spywatch.dataset import build_table, fit_and_shift
    from spywatch.market_data import read_bars_csv

    bars = read_bars_csv(args.data)
    table = build_table(bars)
    scaler, shift = fit_and_shift(table, args.train_end, args.test_start, args.test_end)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from spywatch.atomic import atomic_write

        frame = table.features.join(table.targets)
        atomic_write(out / "features.parquet", lambda tmp: frame.to_parquet(tmp))
        scaler.save(out / "scaler.json")
    if args.json:
        print(json.dumps(shift.to_dict(), indent=2))
    else:
        print(f"train ..{scaler.train_end} ({scaler.n_rows} rows), test {args.test_start}..{args.test_end or 'end'}")
        print(shift.format())
        name, worst = shift.max_abs_shift()
        print(f"\nlargest model-feature shift: {name} {worst:+.2f} training std; "
              f"raw Close ratio {shift.raw['Close']['ratio']:.2f}")
        if args.out:
            print(f"wrote {Path(args.out) / 'features.parquet'} and {Path(args.out) / 'scaler.json'}")
    return 0


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
    """An argparse type: a root folder (created on first use), refused when it names a file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{shown(text)} is a file, not a folder (a root holds the store, models and "
                                         f"published outputs)")
    return path


class Parser(argparse.ArgumentParser):
    """argparse, with the offending value in its usage errors cut (``spywatch.text``)."""

    def error(self, message: str):  # noqa: ANN201 - NoReturn, argparse's contract
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {cut(message, 2 * LIMIT)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spywatch", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="compute features and the train-vs-test feature-shift table")
    p.add_argument("--data", required=True, type=Path, help="bars CSV (Date, Open, High, Low, Close, Adj Close, Volume)")
    p.add_argument("--train-end", required=True, type=iso_date, help="last date of the training period (scaler fit)")
    p.add_argument("--test-start", required=True, type=iso_date)
    p.add_argument("--test-end", default=None, type=iso_date)
    p.add_argument("--out", default=None, help="folder for features.parquet and scaler.json")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=_cmd_features)

    for register in _registrars():
        register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spywatch")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _registrars():
    """Subcommands that live beside their stage's module (each exposes ``register(subparsers)``)."""
    import importlib

    for module in ("spywatch.validation_cli", "spywatch.drift_cli", "spywatch.evaluate_cli",
                   "spywatch.models_cli", "spywatch.run_cli", "spywatch.backfill_cli", "spywatch.serve",
                   "spywatch.fleet_cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        yield mod.register


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


if __name__ == "__main__":
    entry()
