"""``spywatch features``: compute the features of a bars CSV and the train-vs-test feature-shift table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spywatch.cli.arguments import iso_date


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="compute features and the train-vs-test feature-shift table")
    p.add_argument("--data", required=True, type=Path, help="bars CSV (Date, Open, High, Low, Close, Adj Close, Volume)")
    p.add_argument("--train-end", required=True, type=iso_date, help="last date of the training period (scaler fit)")
    p.add_argument("--test-start", required=True, type=iso_date)
    p.add_argument("--test-end", default=None, type=iso_date)
    p.add_argument("--out", default=None, help="folder for features.parquet and scaler.json")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=_cmd_features)


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
