"""Prediction drift: how often the fixed threshold and the calibrated one fire over a replay.

Reads the nights a replay published (``spywatch backfill`` or bench/policy_comparison.py roots):
each night's audit holds its champion's prediction-drift scores, and the champion's version holds
the validation predictions the night compared them with. For every night and horizon it sets the
fixed rule (normed Wasserstein >= 0.5, what every night used before) beside the calibrated one
(``spywatch.drift.prediction_threshold`` with the shipped settings), and counts how many nights
each calls drifted, per policy root, in total and on each new champion's first night (the
champion's first night, when its window lies next to the validation year it was judged on).

    .venv/bin/python bench/prediction_drift.py bench/out/policy_comparison_2005_step12/policy_never ...

Results: bench/results/prediction_drift.{json,md}. Seconds per root (no model runs: the scores are
read back, only the thresholds are computed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def nights(root: Path, config) -> pd.DataFrame:  # noqa: ANN001 (a DriftConfig)
    from spywatch.drift import prediction_threshold

    rows, thresholds, measured_by, last_measurer = [], {}, None, None
    for path in sorted((root / "published" / "sessions").glob("*/audit.json")):
        audit = json.loads(path.read_text())
        version = audit.get("model_version")
        promoted = bool((audit.get("retrain") or {}).get("promoted"))
        # The drift stage runs before the retrain: on a night that promoted, the champion that measured
        # the drift was the one before (the first night, with none, trains first and measures with it).
        champion = measured_by if promoted and measured_by is not None else version
        first_use, last_measurer, measured_by = champion != last_measurer, champion, version
        scores = (audit.get("drift") or {}).get("prediction_drift") or {}
        if not champion or not scores:
            continue
        version = champion
        if version not in thresholds:
            metrics = json.loads((root / "models" / "versions" / version / "metrics.json").read_text())
            validation = pd.DataFrame(metrics["validation_predictions"])
            thresholds[version] = {h: prediction_threshold(validation[h].to_numpy(), config.window, config)[0]
                                   for h in validation}
        for h, verdict in scores.items():
            rows.append({"session": audit["session"], "horizon": h, "version": version, "first_use": first_use,
                         "score": verdict["score"], "fixed": verdict["score"] >= config.prediction_threshold,
                         "threshold": thresholds[version][h],
                         "calibrated": verdict["score"] >= thresholds[version][h]})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> dict:
    by_night = frame.groupby("session").agg(fixed=("fixed", "any"), calibrated=("calibrated", "any"),
                                            first=("first_use", "first"))
    return {"nights": int(len(by_night)), "champions": int(frame["version"].nunique()),
            "nights_any_horizon": {"fixed": int(by_night["fixed"].sum()),
                                   "calibrated": int(by_night["calibrated"].sum())},
            "share_any_horizon": {"fixed": round(float(by_night["fixed"].mean()), 3),
                                  "calibrated": round(float(by_night["calibrated"].mean()), 3)},
            "first_nights": {"n": int(by_night["first"].sum()),
                             "fixed": int(by_night.loc[by_night["first"], "fixed"].sum()),
                             "calibrated": int(by_night.loc[by_night["first"], "calibrated"].sum())},
            "per_horizon": {h: {"fixed": round(float(g["fixed"].mean()), 3),
                                "calibrated": round(float(g["calibrated"].mean()), 3),
                                "threshold_median": round(float(g["threshold"].median()), 3),
                                "threshold_range": [round(float(g["threshold"].min()), 3),
                                                    round(float(g["threshold"].max()), 3)]}
                            for h, g in frame.groupby("horizon")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "prediction_drift.json")
    args = parser.parse_args()
    from machine import machine

    from spywatch.atomic import atomic_write_json, atomic_write_text
    from spywatch.drift_config import DriftConfig

    config = DriftConfig.load()
    results = {}
    for root in args.roots:
        frame = nights(root, config)
        if frame.empty:
            raise SystemExit(f"{root}: no published night with prediction drift")
        results[root.name] = summary(frame) | {"span": [frame["session"].min(), frame["session"].max()]}
    record = {"command": "python bench/prediction_drift.py " + " ".join(str(r) for r in args.roots),
              "machine": machine(), "settings": {"window": config.window, "fixed": config.prediction_threshold,
                                                 "quantile": config.prediction_quantile},
              "roots": results}
    atomic_write_json(args.out, record)
    lines = ["# Prediction drift: the fixed threshold against the calibrated one", "",
             f"`{record['command']}` at {record['machine'].get('git')}, {record['machine']['date']}.", "",
             f"Each night compares its champion's last {config.window} predictions per horizon with the champion's "
             f"validation predictions (normed Wasserstein). *Fixed*: drifted at >= {config.prediction_threshold}. "
             f"*Calibrated*: drifted beyond the {config.prediction_quantile:.0%} quantile of the distances between "
             f"the validation predictions and each {config.window}-session stretch of them (never below "
             f"{config.prediction_threshold}). A night counts when any horizon fires.", "",
             "| replay root | span | nights | champions | fixed: nights fired | calibrated: nights fired "
             "| a new champion's first night: fired (fixed / calibrated) | calibrated threshold, median per horizon |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for name, r in results.items():
        share = r["share_any_horizon"]
        medians = ", ".join(f"{h} {v['threshold_median']:.2f} ({v['threshold_range'][0]:.2f}-{v['threshold_range'][1]:.2f})"
                            for h, v in r["per_horizon"].items())
        lines.append(f"| {name} | {r['span'][0]} → {r['span'][1]} | {r['nights']} | {r['champions']} "
                     f"| {r['nights_any_horizon']['fixed']} ({share['fixed']:.0%}) "
                     f"| {r['nights_any_horizon']['calibrated']} ({share['calibrated']:.0%}) "
                     f"| {r['first_nights']['fixed']} / {r['first_nights']['calibrated']} of "
                     f"{r['first_nights']['n']} "
                     f"| {medians} |")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
