"""A fleet's challengers trained in one pass (``bundle.fit_bundles`` -> ``train.train_fleet``:
tickers x members on one stack's leading axis) against one ticker at a time (``fit_bundle``), on
the CPU: wall seconds of each, and each ticker's mean AUC out of time (2022-2024, the default
retrain fitted through 2021): the one pass minus the same seed alone, paired on the same sessions
with its block-bootstrap interval, beside one seed alone minus another (the noise of a seed).

    .venv/bin/python bench/fleet_stack.py --tickers SPY,QQQ,IWM,XLF --seeds 3     # ~8 min on 2 cores
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
from spywatch.comparison import BootstrapConfig, compare  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, predict_proba  # noqa: E402


def csv_of(ticker: str) -> Path:
    return REPO / "data" / ("spy_daily.csv" if ticker == "SPY" else f"etf/{ticker}.csv")


def holdout_proba(bundle, table):
    """(labels, probabilities, dates) of ``bundle`` on 2022-2024, the sessions every fit is scored on."""
    w = bundle.windows(table, "2022-01-01", "2024-12-31").labelled()
    return w.y, predict_proba(bundle.model, w.X), w.dates


def mean_auc(y, p, names) -> float:
    m = metrics_by_horizon(y, p, names)
    return round(float(np.mean([m[h]["auc"] for h in names])), 4)


def paired(y, p_a, p_b, names, dates) -> dict:
    """a - b mean AUC on the same sessions, with its 90% interval (block bootstrap, blocks of 10)."""
    c = compare(y, p_a, p_b, names, dates, "mean_auc", BootstrapConfig(n_boot=2000, block=10))
    return {"estimate": round(c.estimate, 4), "ci_low": round(c.ci_low, 4), "ci_high": round(c.ci_high, 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tickers", default="SPY,QQQ,IWM,XLF")
    ap.add_argument("--train-end", default="2021-12-24")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fleet_stack")
    args = ap.parse_args()
    tickers = args.tickers.split(",")
    seeds = list(range(args.seeds))
    tables = {t: build_table(read_bars_csv(csv_of(t))) for t in tickers}
    names = next(iter(tables.values())).targets_config.names
    spec = FitSpec(train_end=args.train_end, members=FitSettings().members)
    proba = {t: {} for t in tickers}  # ticker -> (way, seed) -> (y, p, dates)
    seconds = {}
    for seed in seeds:
        t0 = time.perf_counter()
        for t in tickers:
            proba[t][("alone", seed)] = holdout_proba(fit_bundle(tables[t], spec, TrainConfig(seed=seed)), tables[t])
        seconds[f"one_at_a_time_seed{seed}"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        fleet = fit_bundles(tables, spec, TrainConfig(seed=seed))
        seconds[f"one_pass_seed{seed}"] = round(time.perf_counter() - t0, 1)
        for t in tickers:
            proba[t][("one_pass", seed)] = holdout_proba(fleet[t], tables[t])
    rows = {}
    for t in tickers:
        y, _, dates = proba[t][("alone", 0)]
        auc = {f"{way}_seed{s}": mean_auc(y, proba[t][(way, s)][1], names) for way, s in proba[t]}
        # the one pass against the same seed alone; and, for scale, one seed alone against another
        vs_alone = [paired(y, proba[t][("one_pass", s)][1], proba[t][("alone", s)][1], names, dates) for s in seeds]
        seed_to_seed = [paired(y, proba[t][("alone", s)][1], proba[t][("alone", (s + 1) % len(seeds))][1], names,
                               dates) for s in seeds]
        rows[t] = {"mean_auc": auc, "one_pass_minus_alone": vs_alone, "alone_seed_minus_next_seed": seed_to_seed,
                   "sessions": int(len(y)),
                   "mean_one_pass_minus_alone": round(float(np.mean([d["estimate"] for d in vs_alone])), 4),
                   "mean_abs_seed_to_seed": round(float(np.mean([abs(d["estimate"]) for d in seed_to_seed])), 4),
                   "one_pass_intervals_holding_zero": sum(d["ci_low"] <= 0 <= d["ci_high"] for d in vs_alone)}
    result = {"command": "python bench/fleet_stack.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "members": spec.members, "epochs": spec.epochs, "train_end": args.train_end, "scored": "2022-2024",
              "seeds": seeds, "interval": "paired block bootstrap over sessions, blocks of 10, 2000 resamples, 90%",
              "seconds": seconds, "tickers": rows}
    atomic_write_json(args.out.with_suffix(".json"), result)
    m = result["machine"]

    def ci(d):
        return f"{d['estimate']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"

    alone_s = [seconds[f"one_at_a_time_seed{s}"] for s in seeds]
    pass_s = [seconds[f"one_pass_seed{s}"] for s in seeds]
    lines = ["# A fleet's challengers in one pass against one ticker at a time (bench/fleet_stack.py)", "",
             f"- ran: `{result['command']}`, {m['date']}, git {m.get('git')}, {m['cpu']}, {m['host_cores']} cores, CPU",
             f"- the default retrain (full recipe, {spec.epochs} epochs, {spec.members} members, fit through "
             f"{args.train_end}), seeds {seeds}; scored on 2022-2024 (mean AUC over {', '.join(names)})",
             f"- differences: {result['interval']}, paired on the same sessions",
             f"- wall seconds per seed: one at a time {alone_s}; one pass {pass_s}", "",
             "| ticker | sessions | one pass - alone, per seed [90% CI] | mean | intervals holding 0 | "
             "alone seed - next seed [90% CI] | mean abs |",
             "|---|---|---|---|---|---|---|",
             *[f"| {t} | {r['sessions']} | {'; '.join(ci(d) for d in r['one_pass_minus_alone'])} | "
               f"{r['mean_one_pass_minus_alone']:+.4f} | {r['one_pass_intervals_holding_zero']}/{len(seeds)} | "
               f"{'; '.join(ci(d) for d in r['alone_seed_minus_next_seed'])} | {r['mean_abs_seed_to_seed']:.4f} |"
               for t, r in rows.items()],
             "", "| ticker | " + " | ".join(f"{w} s{s}" for w in ("alone", "one_pass") for s in seeds) + " |",
             "|---|" + "---|" * (2 * len(seeds)),
             *[f"| {t} | " + " | ".join(str(r["mean_auc"][f"{w}_seed{s}"]) for w in ("alone", "one_pass")
                                         for s in seeds) + " |" for t, r in rows.items()]]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
