"""Design search for PatchTST on the issue's split: one line per variant (AUC per horizon vs RF,
train seconds). Selection uses the VALIDATION span (2016-2021) only; the test AUC is printed for
the record but variants are chosen on validation AUC, so the test period stays out of time.

    .venv/bin/python bench/tune_patchtst.py VARIANT [VARIANT ...]
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from spywatch.audit import metrics_by_horizon
from spywatch.dataset import build_table
from spywatch.evaluate import EvalConfig, Split, model_inputs, resolve_periods
from spywatch.market_data import read_bars_csv
from spywatch.model import PatchTSTConfig
from spywatch.train import TrainConfig, make_windows, predict_proba, train_model

DATA = Path(__file__).resolve().parents[1] / "data" / "spy_daily.csv"
SPLIT = Split(train_end="2021-12-31", val_start="2016-01-01", test_start="2022-01-01", test_end="2024-12-31")

VARIANTS: dict[str, tuple[dict, dict]] = {
    # name: (model overrides, train overrides)
    # "base": the first defaults (batch 256, lr 1e-3, 40 epochs, patience 6, no head skip)
    "base": ({"head_skip": False}, {"max_epochs": 40, "patience": 6, "batch_size": 256, "lr": 1e-3}),
    "fast": ({}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_bal": ({}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3, "balance_horizons": True}),
    "fast_posw": ({}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3, "pos_weight": True}),
    "fast_drop1": ({"dropout": 0.1}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_d32": ({"d_model": 32, "n_heads": 4, "d_ff": 64}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_revin": ({"revin": True}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_flatten": ({"head": "flatten"}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_lb10": ({"lookback": 10, "patch_len": 2, "stride": 2}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_l1": ({"n_layers": 1}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_skip": ({"head_skip": True}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
    "fast_skip_bal": ({"head_skip": True}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3,
                                            "balance_horizons": True}),
    "fast_posw_drop1": ({"dropout": 0.1}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3,
                                           "pos_weight": True}),
    "fast_skip_posw": ({"head_skip": True}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3,
                                             "pos_weight": True}),
    "fast_bn": ({"norm": "batchnorm"}, {"max_epochs": 25, "patience": 5, "batch_size": 512, "lr": 2e-3}),
}


def main() -> None:
    bars = read_bars_csv(DATA)
    table = build_table(bars)
    names = table.targets_config.names
    periods = resolve_periods(table.index, SPLIT, 5, table.features.dropna().index[0])
    inputs = model_inputs(table, "normalized", periods.fit[1])
    for name in sys.argv[1:]:
        model_o, train_o = VARIANTS[name]
        model_o = {"head_skip": "skip" in name, **model_o}  # variants were run before head_skip became default
        lookback = model_o.get("lookback", 20)
        win = lambda span: make_windows(inputs.frame, table.targets, lookback, *span).labelled()  # noqa: E731
        fit_w, val_w, test_w = win(periods.fit), win(periods.val), win(periods.test)
        cfg = PatchTSTConfig(n_channels=inputs.frame.shape[1], n_outputs=3, **{"lookback": lookback, **model_o})
        res = train_model(fit_w, val_w, cfg, replace(TrainConfig(), **train_o))
        val_m = metrics_by_horizon(val_w.y, predict_proba(res.model, val_w.X), names)
        test_m = metrics_by_horizon(test_w.y, predict_proba(res.model, test_w.X), names)
        row = {"variant": name, "val_auc": {h: round(m["auc"], 4) for h, m in val_m.items()},
               "val_mean": round(float(np.mean([m["auc"] for m in val_m.values()])), 4),
               "test_auc": {h: round(m["auc"], 4) for h, m in test_m.items()},
               "seconds": round(res.seconds, 1), "epochs": len(res.history), "params": res.n_params}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
