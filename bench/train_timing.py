"""Wall time and peak memory of one training of the default PatchTST (all three horizons in one
model) on the issue's split, in a fresh process, with the machine otherwise idle.

    .venv/bin/python bench/train_timing.py [--device auto|cpu|cuda]
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

from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.evaluate import Split, model_inputs, resolve_periods  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.model import PatchTSTConfig  # noqa: E402
from spywatch.train import TrainConfig, make_windows, predict_proba, train_model  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "spy_daily.csv"
SPLIT = Split(train_end="2021-12-31", val_start="2016-01-01", test_start="2022-01-01", test_end="2024-12-31")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_timing")
    args = ap.parse_args()
    table = build_table(read_bars_csv(DATA))
    periods = resolve_periods(table.index, SPLIT, 5, table.features.dropna().index[0])
    inputs = model_inputs(table, "normalized", periods.fit[1])
    win = lambda span: make_windows(inputs.frame, table.targets, 20, *span).labelled()  # noqa: E731
    fit_w, val_w, test_w = win(periods.fit), win(periods.val), win(periods.test)
    cfg = PatchTSTConfig(n_channels=inputs.frame.shape[1], n_outputs=3)
    res = train_model(fit_w, val_w, cfg, replace(TrainConfig(), device=args.device))
    test = metrics_by_horizon(test_w.y, predict_proba(res.model, test_w.X), table.targets_config.names)
    out = {"machine": machine(), "device": res.device, "train_seconds": round(res.seconds, 1),
           "epochs": len(res.history), "best_epoch": res.best_epoch, "seconds_per_epoch": round(res.seconds / len(res.history), 2),
           "peak_rss_mb": round(res.peak_rss_mb), "peak_gpu_mb": res.peak_gpu_mb, "n_params": res.n_params,
           "samples": {"fit": len(fit_w), "val": len(val_w)}, "test_auc": {h: round(m["auc"], 4) for h, m in test.items()},
           "model": cfg.to_dict(), "train": TrainConfig().to_dict()}
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("model", "train")}, indent=2))


if __name__ == "__main__":
    main()
