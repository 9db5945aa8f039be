"""A fleet's challengers trained in one pass (``bundle.fit_bundles`` -> ``train.train_fleet``:
tickers x members on one stack's leading axis) against one ticker at a time (``fit_bundle``), on
the CPU: wall seconds of each, and each ticker's mean AUC out of time (2022-2024, the default
retrain fitted through 2021) beside the spread between two seeds of the one-at-a-time fit.

    .venv/bin/python bench/fleet_stack.py --tickers SPY,QQQ,IWM,XLF        # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "src")]

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.bundle import FitSpec, fit_bundle, fit_bundles  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, predict_proba  # noqa: E402


def csv_of(ticker: str) -> Path:
    return REPO / "data" / ("spy_daily.csv" if ticker == "SPY" else f"etf/{ticker}.csv")


def mean_auc(bundle, table, names) -> float:
    w = bundle.windows(table, "2022-01-01", "2024-12-31").labelled()
    m = metrics_by_horizon(w.y, predict_proba(bundle.model, w.X), names)
    return round(float(np.mean([m[h]["auc"] for h in names])), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tickers", default="SPY,QQQ,IWM,XLF")
    ap.add_argument("--train-end", default="2021-12-24")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fleet_stack")
    args = ap.parse_args()
    tickers = args.tickers.split(",")
    tables = {t: build_table(read_bars_csv(csv_of(t))) for t in tickers}
    names = next(iter(tables.values())).targets_config.names
    spec = FitSpec(train_end=args.train_end, members=FitSettings().members)
    rows = {t: {} for t in tickers}
    alone_s = {}
    for seed in (0, 1):
        t0 = time.perf_counter()
        for t in tickers:
            rows[t][f"alone_seed{seed}"] = mean_auc(fit_bundle(tables[t], spec, TrainConfig(seed=seed)), tables[t], names)
        alone_s[seed] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    fleet = fit_bundles(tables, spec, TrainConfig(seed=0))
    one_pass_s = round(time.perf_counter() - t0, 1)
    for t in tickers:
        rows[t]["one_pass_seed0"] = mean_auc(fleet[t], tables[t], names)
        rows[t]["one_pass_minus_alone_seed0"] = round(rows[t]["one_pass_seed0"] - rows[t]["alone_seed0"], 4)
        rows[t]["seed_spread_alone"] = round(abs(rows[t]["alone_seed1"] - rows[t]["alone_seed0"]), 4)
    result = {"command": "python bench/fleet_stack.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "members": spec.members, "epochs": spec.epochs, "train_end": args.train_end, "scored": "2022-2024",
              "seconds": {"one_at_a_time_seed0": alone_s[0], "one_at_a_time_seed1": alone_s[1], "one_pass": one_pass_s},
              "tickers": rows}
    atomic_write_json(args.out.with_suffix(".json"), result)
    m = result["machine"]
    lines = ["# A fleet's challengers in one pass against one ticker at a time (bench/fleet_stack.py)", "",
             f"- ran: `{result['command']}`, {m['date']}, git {m.get('git')}, {m['cpu']}, {m['host_cores']} cores, CPU",
             f"- the default retrain (full recipe, {spec.epochs} epochs, {spec.members} members, fit through "
             f"{args.train_end}), mean AUC over h1/h3/h5 on 2022-2024",
             f"- wall seconds: one at a time {alone_s[0]} (seed 0) / {alone_s[1]} (seed 1); one pass {one_pass_s}", "",
             "| ticker | alone seed 0 | alone seed 1 | one pass seed 0 | one pass - alone | seed spread |",
             "|---|---|---|---|---|---|",
             *[f"| {t} | {r['alone_seed0']} | {r['alone_seed1']} | {r['one_pass_seed0']} | "
               f"{r['one_pass_minus_alone_seed0']:+.4f} | {r['seed_spread_alone']} |" for t, r in rows.items()]]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
