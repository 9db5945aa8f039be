"""The training audit at retrain scale: the findings each provocation gets, what recording costs,
and what starting the output bias at the prior does to out-of-time AUC, in one run.

1. Findings: every case trains what a retrain trains (2 members, the fixed 8 epochs, batch 512)
   on real SPY fitted through 2016 (an embargo before the holdout), the 250 sessions of 2017
   followed as the holdout; the provocations are those of tests/model/test_training_audit.py.
2. Overhead: ``fit_bundle`` as a retrain calls it at T = 2012, 2016, 2020 (tuning) and 2021 (eval),
   recorded (the default) and not (``TrainConfig(record=False)``), two runs each, alternating.
   Recording draws no random numbers, so both train the same model: the bench checks that their
   predictions are identical.
3. Output bias at the prior (``TrainConfig.prior_bias``, the default now) against the layer's own
   init (the default before), both unrecorded: mean AUC on the 250 sessions after each T, paired
   block bootstrap on the same sessions (tuning periods together; eval apart, confirmation only).

    .venv/bin/python bench/training_audit.py          # ~8 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine  # noqa: E402
from train_timing import PERIODS, TUNING, paired, retrain_at  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.bundle import FULL_EPOCHS  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.evaluate import ORIGINAL_MODEL, ORIGINAL_TRAIN, model_inputs  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.model import PatchTSTConfig  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, Windows, make_windows, predict_members, train_ensemble  # noqa: E402
from spywatch.training_audit import TrainingThresholds, training_section  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
NAMES = ["h1", "h3", "h5"]
FIT_END, HOLDOUT = "2016-12-21", ("2017-01-03", "2017-12-29")
ENCODER = ("patch_embedding", "positional_encoding", "layer_0")


def cases() -> dict[str, dict]:
    """name -> inputs ("normalized" or "raw"), model overrides, TrainConfig overrides, a windows change."""
    return {
        "default": {},
        "original study's choices": {"mode": "raw", "model": ORIGINAL_MODEL, "train": ORIGINAL_TRAIN},
        "raw inputs into the default model": {"mode": "raw"},
        "randn positional encoding": {"model": {"pos_init": "randn"}},
        "frozen encoder": {"train": {"freeze": ENCODER}},
        "learning rate 0": {"train": {"lr": 0.0}},
        "learning rate 10": {"train": {"lr": 10.0}},
        "poisoned batch (one NaN)": {"change": "poison"},
        "inputs without information": {"change": "constant"},
        "labels shuffled against the inputs": {"change": "shuffle"},
    }


def changed(w: Windows, how: str | None) -> Windows:
    if how == "poison":
        X = w.X.copy()
        X[100, 5, 2] = np.nan
        return Windows(X, w.y, w.dates)
    if how == "constant":
        return Windows(np.broadcast_to(w.X.mean(axis=0), w.X.shape).copy(), w.y, w.dates)
    if how == "shuffle":
        return Windows(w.X, w.y[np.random.default_rng(0).permutation(len(w))], w.dates)
    return w


def run_case(table, name: str, case: dict) -> dict:
    mode = case.get("mode", "normalized")
    frame = model_inputs(table, mode, pd.Timestamp(FIT_END)).frame
    fit_w = changed(make_windows(frame, table.targets, 20, None, FIT_END).labelled(), case.get("change"))
    hold_w = make_windows(frame, table.targets, 20, *HOLDOUT).labelled()
    cfg = PatchTSTConfig(n_channels=frame.shape[1], **case.get("model", {}))
    tc = TrainConfig(max_epochs=FULL_EPOCHS, **case.get("train", {}))
    t0 = time.perf_counter()
    result = train_ensemble(fit_w, None, cfg, tc, FitSettings().members, monitor=hold_w, monitor_name="holdout")
    seconds = time.perf_counter() - t0
    section = training_section([m.evidence for m in result.members], NAMES)
    proba = predict_members(result.model, hold_w.X).mean(axis=0)
    auc = [m["auc"] for m in metrics_by_horizon(hold_w.y, proba, NAMES).values()]
    members = []
    for ev in section["members"]:
        gains = [1 - a / b for a, b in zip(ev["fit_loss"], ev["prior_loss"]["fit_sample"])]
        grads = {g: statistics.mean(e["grad_norm"][g] for e in ev["epochs"]) for g in ev["groups"]}
        members.append({"fit_gain": gains, "grad_norm": grads, "weight_change": ev["weight_change"],
                        "pos_to_content": ev["init"]["pos_to_content"], "init_pred_std": ev["init"]["pred_std"]})
    return {"case": name, "inputs": mode, "model": case.get("model", {}), "train": case.get("train", {}),
            "change": case.get("change"), "verdict": section["verdict"],
            "findings": [{"finding": f["finding"], "member": f["member"], "text": f["text"]} for f in section["findings"]],
            "members": members, "holdout_mean_auc": float(np.mean(auc)) if np.isfinite(auc).all() else None,
            "train_seconds": round(seconds, 1)}


# ----------------------------------------------------------------------------- overhead and prior bias

VARIANTS = {"audited": {}, "unrecorded": {"record": False}, "no_prior_bias": {"record": False, "prior_bias": False}}


def run_fit(table, period: str, variant: str) -> dict:
    bundle, w, _, _ = retrain_at(table, period, TrainConfig(**VARIANTS[variant]))
    proba = predict_members(bundle.model, w.X).mean(axis=0)
    ens = metrics_by_horizon(w.y, proba, NAMES)
    training = bundle.metrics.get("training")
    return {"period": period, "variant": variant, "train_seconds": round(bundle.metrics["train_seconds"], 3),
            "n_fit": bundle.metrics["samples"]["fit"], "mean_auc": statistics.mean(ens[h]["auc"] for h in NAMES),
            "verdict": training["verdict"] if training else None,
            "dates": [str(d.date()) for d in w.dates], "y": w.y.tolist(), "proba": np.round(proba, 7).tolist()}


def summarise(fits: list[dict]) -> dict:
    by = lambda v: [r for r in fits if r["variant"] == v]  # noqa: E731
    aud, unr = by("audited"), by("unrecorded")
    seconds = {v: round(statistics.mean(r["train_seconds"] for r in by(v)), 2) for v in VARIANTS if by(v)}
    # overhead per period: mean over the repeats, recorded over unrecorded
    ratios = []
    for p in PERIODS:
        a = [r["train_seconds"] for r in aud if r["period"] == p]
        u = [r["train_seconds"] for r in unr if r["period"] == p]
        if a and u:
            ratios.append(statistics.mean(a) / statistics.mean(u))
    same = all(r["proba"] == u["proba"] for r in aud for u in unr if u["period"] == r["period"])
    return {"seconds_per_fit": seconds, "overhead_by_period": [round(x - 1, 4) for x in ratios],
            "overhead_mean": round(statistics.mean(ratios) - 1, 4) if ratios else None,
            "recorded_and_unrecorded_predict_the_same": same,
            "verdicts": sorted({r["verdict"] for r in aud}),
            "prior_bias_vs_layer_init": {"tuning": paired(fits, "unrecorded", TUNING, b="no_prior_bias"),
                                         "eval": paired(fits, "unrecorded", ("eval",), b="no_prior_bias")},
            "mean_auc": {v: {p: round(statistics.mean(r["mean_auc"] for r in by(v) if r["period"] == p), 4)
                             for p in PERIODS} for v in VARIANTS}}


def markdown(result: dict) -> str:
    m, s = result["machine"], result["summary"]
    ci = lambda c: f"{c['estimate']:+.4f} [90% CI {c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}], P(better) {c['p_better']:.2f}"  # noqa: E731
    t = TrainingThresholds()
    lines = ["# The training audit at retrain scale (bench/training_audit.py)", "",
             f"- ran: `{result['command']}` on {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, torch {m.get('torch')}",
             f"- thresholds: loss on the training windows at least {100 * t.prior_margin:g}% below the prior's in "
             f"one horizon; dead group: mean gradient norm < max({t.dead_grad_abs:g}, {t.dead_grad_rel:g} x the "
             f"median group's); exploding: above {t.max_grad_ratio:g}x the median group's; no update: weights moved < {t.min_weight_change:g} of their norm; positional "
             f"encoding > {t.max_pos_to_content:g}x the patch embeddings at init; diverged: NaN/inf, or a training "
             f"loss above {t.max_loss_to_prior:g}x both the prior's and the untrained model's", "",
             "## 1. Findings (fit 1994-2016, 2 members, 8 epochs; the 2017 sessions followed as the holdout)", "",
             "| case | verdict | findings (member) | fit loss below the prior, best horizon, per member | "
             "smallest mean grad norm (group) | smallest weight change (group) | pos/content at init | "
             "holdout mean AUC | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["cases"]:
        fs = ", ".join(sorted({f"{f['finding']} ({f['member']})" for f in r["findings"]})) or "—"
        gains = " / ".join(f"{100 * g:+.1f}%" if abs(g) < 10 else f"{1 - g:.3g}x the prior's loss"
                           for g in (max(mm["fit_gain"]) for mm in r["members"]))
        g = min(((v, k) for mm in r["members"] for k, v in mm["grad_norm"].items()), key=lambda x: (np.nan_to_num(x[0], nan=-1)))
        w = min(((v, k) for mm in r["members"] for k, v in mm["weight_change"].items()), key=lambda x: (np.nan_to_num(x[0], nan=-1)))
        pos = max(mm["pos_to_content"] for mm in r["members"])
        auc = f"{r['holdout_mean_auc']:.3f}" if r["holdout_mean_auc"] is not None else "—"
        lines.append(f"| {r['case']} | **{r['verdict']}** | {fs} | {gains} | {g[0]:.2g} ({g[1]}) | {w[0]:.2g} ({w[1]}) | "
                     f"{pos:.3g} | {auc} | {r['train_seconds']} |")
    lines += ["", "Each finding's sentence, first member:", ""]
    for r in result["cases"]:
        for f in r["findings"]:
            if f["member"] == 0:
                lines.append(f"- {r['case']}: `{f['finding']}`: {f['text']}")
    lines += ["", "## 2. What recording costs (fit_bundle as a retrain, 2 members, 8 epochs)", "",
              f"- seconds per fit (mean over the fits): {s['seconds_per_fit']}",
              f"- overhead, recorded over unrecorded, per period {list(PERIODS)}: "
              f"{', '.join(f'{100 * x:+.1f}%' for x in s['overhead_by_period'])}; mean **{100 * s['overhead_mean']:+.1f}%** (goal: under 5%)",
              f"- recorded and unrecorded fits predict identically: {s['recorded_and_unrecorded_predict_the_same']}",
              f"- training verdicts of the recorded fits: {s['verdicts']}", "",
              "## 3. Output bias at the prior vs the layer's own init (both unrecorded)", "",
              f"- tuning (2012, 2016, 2020; 750 sessions), prior bias minus layer init, mean AUC: "
              f"{ci(s['prior_bias_vs_layer_init']['tuning'])}",
              f"- eval (2022-2024 fit through 2021; confirmation only): {ci(s['prior_bias_vs_layer_init']['eval'])}",
              f"- mean AUC by period: {json.dumps(s['mean_auc'])}", "",
              "Per fit:", "", "| period | variant | n fit | train s | mean AUC | verdict |", "|---|---|---|---|---|---|"]
    for r in result["fits"]:
        lines.append(f"| {r['period']} | {r['variant']} | {r['n_fit']} | {r['train_seconds']} | {r['mean_auc']:.4f} | "
                     f"{r['verdict'] or '—'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2, help="recorded/unrecorded fits per period")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "training_audit")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the recorded JSON")
    args = ap.parse_args()
    path = args.out.with_suffix(".json")
    if args.render:  # the summary recomputed from the recorded fits, then the markdown
        result = json.loads(path.read_text())
        result["summary"] = summarise(result["fits"])
        atomic_write_json(path, result)
        atomic_write_text(args.out.with_suffix(".md"), markdown(result))
        return
    table = build_table(read_bars_csv(DATA))
    result = {"command": "python bench/training_audit.py " + " ".join(sys.argv[1:]), "cases": [], "fits": []}
    for name, case in cases().items():
        result["cases"].append(run_case(table, name, case))
        print(json.dumps({k: result["cases"][-1][k] for k in ("case", "verdict", "train_seconds")}), flush=True)
    for rep in range(args.repeats):
        for period in PERIODS:
            order = ["audited", "unrecorded"] if rep % 2 == 0 else ["unrecorded", "audited"]
            if rep == 0:
                order.append("no_prior_bias")
            for variant in order:
                result["fits"].append(run_fit(table, period, variant))
                print(json.dumps({k: result["fits"][-1][k] for k in ("period", "variant", "train_seconds", "mean_auc")}),
                      flush=True)
    result["summary"] = summarise(result["fits"])
    result["machine"] = machine()
    atomic_write_json(path, json.loads(json.dumps(result, default=str)))
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
