"""The ``spywatch`` command line. Each subcommand parses its arguments here and calls one
function of the library; heavy imports happen inside the command that needs them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from spywatch.market_data import DataFormatError, MarketDataError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spywatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="compute features and the train-vs-test feature-shift table")
    p.add_argument("--data", required=True, type=Path, help="bars CSV (Date, Open, High, Low, Close, Adj Close, Volume)")
    p.add_argument("--train-end", required=True, help="last date of the training period (scaler fit)")
    p.add_argument("--test-start", required=True)
    p.add_argument("--test-end", default=None)
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
                   "spywatch.models_cli", "spywatch.run_cli", "spywatch.backfill_cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        yield mod.register


def main(argv: list[str] | None = None) -> int:
    return _dispatch(build_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (DataFormatError, MarketDataError, ValueError, FileNotFoundError) as exc:
        print(f"spywatch {args.command}: error: {exc}", file=sys.stderr)
        return 2


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
