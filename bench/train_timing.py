"""Training time of the default champion, before and after the byte-mask dropout, in one run.

The champion is the pipeline's recipe (``FitSpec`` "full": every session up to an embargo before the
test, FULL_EPOCHS epochs, no validation) with ``FitSettings().members`` members. Each member is
trained here with torch's ``nn.Dropout`` (the implementation before, kept reachable by swapping the
class the model is built with) and with ``spywatch.model.Dropout`` (one random byte per element),
alternating, ``--repeats`` times each, on the same windows and seed; a retrain costs one member's time
times the members. The AUC each reaches on 2022-2024 is recorded beside its time. Run it on an
otherwise idle machine.

    .venv/bin/python bench/train_timing.py [--repeats 2] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

import spywatch.model as model_module  # noqa: E402
from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.bundle import FULL_EPOCHS  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.evaluate import Split, model_inputs, resolve_periods  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.model import PatchTSTConfig  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, make_windows, predict_proba, train_model  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "spy_daily.csv"
SPLIT = Split(train_end="2021-12-31", test_start="2022-01-01", test_end="2024-12-31")
IMPLEMENTATIONS = {"torch_dropout": nn.Dropout, "byte_mask_dropout": model_module.Dropout}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_timing")
    args = ap.parse_args()
    table = build_table(read_bars_csv(DATA))
    periods = resolve_periods(table.index, SPLIT, 5, table.features.dropna().index[0], early_stopping=False)
    inputs = model_inputs(table, "normalized", periods.fit[1])
    win = lambda span: make_windows(inputs.frame, table.targets, 20, *span).labelled()  # noqa: E731
    fit_w, test_w = win(periods.fit), win(periods.test)
    cfg = PatchTSTConfig(n_channels=inputs.frame.shape[1], n_outputs=3)
    train = replace(TrainConfig(), max_epochs=FULL_EPOCHS, device=args.device)
    runs = []
    for repeat in range(args.repeats):
        for name, cls in IMPLEMENTATIONS.items():
            model_module.Dropout = cls  # the class EncoderLayer and the classifier build their dropout with
            try:
                res = train_model(fit_w, None, cfg, train)
            finally:
                model_module.Dropout = IMPLEMENTATIONS["byte_mask_dropout"]
            test = metrics_by_horizon(test_w.y, predict_proba(res.model, test_w.X), table.targets_config.names)
            runs.append({"implementation": name, "repeat": repeat, "device": res.device, "seconds": round(res.seconds, 2),
                         "seconds_per_epoch": round(res.seconds / len(res.history), 2), "epochs": len(res.history),
                         "peak_rss_mb": round(res.peak_rss_mb), "peak_gpu_mb": res.peak_gpu_mb,
                         "test_auc": {h: round(m["auc"], 4) for h, m in test.items()},
                         "mean_test_auc": round(statistics.mean(m["auc"] for m in test.values()), 4)})
            print(json.dumps(runs[-1]), flush=True)
    members = FitSettings().members
    summary = {}
    for name in IMPLEMENTATIONS:
        rows = [r for r in runs if r["implementation"] == name]
        per_member = statistics.median(r["seconds"] for r in rows)
        summary[name] = {"member_seconds_median": round(per_member, 1),
                         "seconds_per_epoch_median": statistics.median(r["seconds_per_epoch"] for r in rows),
                         "retrain_seconds": round(per_member * members, 1),
                         "mean_test_auc": [r["mean_test_auc"] for r in rows]}
    speedup = summary["torch_dropout"]["member_seconds_median"] / summary["byte_mask_dropout"]["member_seconds_median"]
    out = {"machine": machine(), "command": "python bench/train_timing.py " + " ".join(sys.argv[1:]),
           "periods": periods.to_dict(), "samples": {"fit": len(fit_w), "test": len(test_w)}, "members": members,
           "epochs": FULL_EPOCHS, "runs": runs, "summary": summary, "speedup": round(speedup, 2),
           "model": cfg.to_dict(), "train": train.to_dict()}
    atomic_write_json(args.out.with_suffix(".json"), out)
    m = out["machine"]
    lines = ["# Training time of the default champion (bench/train_timing.py)", "",
             f"- ran: `{out['command']}`, {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, torch {m.get('torch')}, device {runs[0]['device']}",
             f"- one member: the `full` recipe, {FULL_EPOCHS} epochs on {len(fit_w)} windows "
             f"(fit {periods.fit[0].date()}..{periods.fit[1].date()}), the default PatchTST; a retrain trains "
             f"{members} members; AUC on {len(test_w)} sessions of 2022-2024", "",
             "| dropout | s per member (median) | s per epoch | retrain s | mean test AUC per run |",
             "|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['member_seconds_median']} | {s['seconds_per_epoch_median']:.2f} | "
                     f"{s['retrain_seconds']} | {', '.join(f'{a:.4f}' for a in s['mean_test_auc'])} |")
    lines += ["", f"Speed-up of the byte mask: {out['speedup']}x per member (runs alternated, same windows and seed)."]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
