"""PatchTST vs Random Forest / logistic / prior, out of time, on real SPY.

Split (the issue's): fit to 2015-12-31, validation 2016-2021 (early stopping), test
2022-01-01..2024-12-31, embargo of 5 sessions (the longest horizon) before each boundary.
Runs the normalised features with N seeds, then the raw inputs of the original study
(Close, MACD, ATR, RSI, Volume, unscaled) once, then all the original study's choices once, and
writes bench/results/evaluate.{json,md}. Each run reports the training audit's verdict (how the
model trained) beside the inference audit's (what it predicts on the test period).
PatchTST is the ensemble of its seeds; every AUC carries a block-bootstrap interval, and the
ensemble is compared with each baseline (RF, logistic, volatility-only logistic) on the same
test sessions, paired.

    .venv/bin/python bench/evaluate_patchtst.py [--seeds 3] [--device auto] [--boot 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.evaluate import ORIGINAL_MODEL, ORIGINAL_TRAIN, EvalConfig, Split, evaluate, format_report  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
SPLIT = Split(train_end="2021-12-31", val_start="2016-01-01", test_start="2022-01-01", test_end="2024-12-31")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--raw-seeds", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--boot", type=int, default=2000, help="block-bootstrap resamples")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "evaluate")
    args = ap.parse_args()
    bars = read_bars_csv(DATA)
    base = EvalConfig(n_boot=args.boot)
    base = replace(base, train=replace(base.train, device=args.device))
    normal = evaluate(bars, SPLIT, replace(base, seeds=args.seeds))
    raw = evaluate(bars, SPLIT, replace(base, seeds=args.raw_seeds, features="raw"))
    # The original study's choices, to reproduce the collapse the audits must catch: raw inputs,
    # randn positional encoding (std 1), sigmoid + BCELoss, a flatten head, post-norm BatchNorm.
    original = evaluate(bars, SPLIT, replace(base, seeds=1, features="raw", model=dict(ORIGINAL_MODEL),
                                             train=replace(base.train, **ORIGINAL_TRAIN)))
    result = {"machine": machine(), "split": SPLIT.__dict__, "normalized": normal, "raw": raw, "original": original,
              "command": "python bench/evaluate_patchtst.py " + " ".join(sys.argv[1:])}
    atomic_write_json(args.out.with_suffix(".json"), result)
    md = [f"# PatchTST vs baselines, out of time (real SPY)\n",
          f"- ran: `{result['command']}` on {result['machine']['date']}",
          f"- machine: {result['machine']['cpu']}, {result['machine']['host_cores']} cores, torch {result['machine'].get('torch')}, device {normal['device']}",
          f"- split: fit {normal['periods']['fit']}, val {normal['periods']['val']}, test {normal['periods']['test']}, embargo {normal['periods']['embargo_sessions']} sessions",
          f"- samples: {normal['samples']}",
          f"- intervals: {round(100 * normal['bootstrap']['level'])}% circular block bootstrap over test sessions, "
          f"{normal['bootstrap']['n_boot']} resamples, blocks of {normal['bootstrap']['block']} sessions; "
          f"PatchTST = the mean of its {args.seeds} seeds' probabilities; vol_logistic = logistic regression on "
          f"{', '.join(normal['vol_features'])} only", "",
          "## Normalised features", "", "```", format_report(normal), "```", "",
          "## Raw inputs (the original study's: Close, MACD, ATR, RSI, Volume unscaled)", "", "```",
          format_report(raw), "```", "",
          "## The original study's choices (raw inputs, randn positional encoding, sigmoid + BCELoss, flatten head, "
          "post-norm BatchNorm, 3 layers)",
          "", "```", format_report(original), "```", ""]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
