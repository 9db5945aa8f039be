"""Which data a challenger learns from: the fit recipe, its epoch count, the ensemble size.

A challenger trained at session T is judged on the holdout (the 250 sessions whose labels matured
by T) and then serves the sessions after T. So each recipe here trains as the pipeline would at T
(fit ends an embargo before the holdout) and is scored on the 250 sessions after T, out of time:

- ``legacy``: early stopping on the last 20% of the history (before Step 6);
- ``recent_val``: early stopping on the last 250 sessions before the holdout;
- ``full_E``: every labelled session up to the embargo before the holdout, E epochs, no validation;
- ``refit_E``: ``full_E`` refitted after the gate on the holdout too (fit up to T - h).

Tuning periods only (T = end of 2012, 2016, 2020); 2022-2024 stays untouched for the evaluation.
``full_8`` gets 5 seeds, so the ensemble size k = 1..5 can be read off the same run (members
averaged in seed order). A Random Forest on the same fit span is the reference.

    .venv/bin/python bench/fit_window.py            # ~30 min on 2 cores; resumes from its JSON
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.baselines import BaselineConfig, fit_baselines  # noqa: E402
from spywatch.bundle import FitSpec, fit_bundle  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.train import TrainConfig, predict_members  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
SESSIONS_T = ("2012-12-31", "2016-12-30", "2020-12-31")
HOLDOUT = 250
# name -> (FitSpec overrides, seeds, fitted up to the holdout too, periods (None: all)). full_16 and
# refit_12 ran on the first period only: full_16 trailed full_8 there by 0.045 and cost twice as much,
# so the time went to five seeds of full_8 (the ensemble-size question) instead.
RECIPES = {
    "legacy": ({"recipe": "legacy"}, 2, False, None),
    "recent_val": ({"recipe": "recent_val"}, 2, False, None),
    "full_8": ({"recipe": "full", "epochs": 8}, 5, False, None),
    "full_12": ({"recipe": "full", "epochs": 12}, 2, False, None),
    "full_16": ({"recipe": "full", "epochs": 16}, 2, False, ("2012-12-31",)),
    "refit_8": ({"recipe": "full", "epochs": 8}, 2, True, None),
    "refit_12": ({"recipe": "full", "epochs": 12}, 2, True, ("2012-12-31",)),
}
ENSEMBLE_RECIPE = "full_8"  # averaged in seed order for k = 1..5


def spans(table, session: str):
    idx = table.index
    h = table.targets_config.max_horizon
    pos_t = int(idx.get_loc(pd.Timestamp(session)))
    hold_end = pos_t - h
    hold_start = hold_end - HOLDOUT + 1
    return {"train_end_gated": idx[hold_start - h - 1], "train_end_refit": idx[hold_end],
            "holdout": (idx[hold_start], idx[hold_end]), "test": (idx[pos_t + 1], idx[min(len(idx) - 1, pos_t + HOLDOUT)])}


def run_one(table, session: str, name: str, seed: int) -> dict:
    overrides, _, refit, _ = RECIPES[name]
    sp = spans(table, session)
    end = sp["train_end_refit"] if refit else sp["train_end_gated"]
    spec = FitSpec(train_end=str(end.date()), members=1, **overrides)
    t0 = time.perf_counter()
    bundle = fit_bundle(table, spec, TrainConfig(seed=seed))
    seconds = time.perf_counter() - t0
    w = bundle.windows(table, *sp["test"]).labelled()
    proba = predict_members(bundle.model, w.X)[0]
    names = table.targets_config.names
    m = metrics_by_horizon(w.y, proba, names)
    return {"session": session, "recipe": name, "seed": seed, "seconds": round(seconds, 1),
            "epochs": bundle.metrics["epochs"], "best_epoch": bundle.metrics["best_epoch"],
            "periods": bundle.metrics["periods"], "test": [str(x.date()) for x in sp["test"]],
            "auc": {h: m[h]["auc"] for h in names}, "brier": {h: m[h]["brier"] for h in names},
            "log_loss": {h: m[h]["log_loss"] for h in names},
            "proba": np.round(proba, 5).tolist(), "y": w.y.tolist()}


def rf_reference(table, session: str) -> dict:
    sp = spans(table, session)
    names = table.targets_config.names
    bundle_inputs = None
    out = {}
    for label, end in (("gated", sp["train_end_gated"]), ("refit", sp["train_end_refit"])):
        from spywatch.features import FEATURES, FeatureScaler

        feats = table.features.loc[:, list(FEATURES)]
        scaler = FeatureScaler.fit(feats.dropna().loc[:end])
        bundle_inputs = scaler.transform(feats)
        fit = bundle_inputs.loc[:end]
        y = table.targets.loc[fit.index].to_numpy("float64")
        keep = fit.notna().all(axis=1).to_numpy() & ~np.isnan(y).any(axis=1)
        base = fit_baselines(fit.to_numpy()[keep], y[keep], BaselineConfig(), seed=0)
        test = bundle_inputs.loc[sp["test"][0]:sp["test"][1]]
        yt = table.targets.loc[test.index].to_numpy("float64")
        m = metrics_by_horizon(yt, base.predict(test.to_numpy())["random_forest"], names)
        out[label] = {"auc": {h: m[h]["auc"] for h in names}, "brier": {h: m[h]["brier"] for h in names}}
    return out


def summarise(runs: list[dict], rf: dict, names: list[str]) -> dict:
    out: dict = {"recipes": {}, "ensemble_k": {}, "rf": rf}
    frame = pd.DataFrame(runs)
    for name in RECIPES:
        rows = frame[frame.recipe == name]
        if rows.empty:
            continue
        per_t = {}
        for session, g in rows.groupby("session"):
            y = np.array(g.iloc[0]["y"])
            ens = np.mean([np.array(p) for p in g["proba"]], axis=0)
            m = metrics_by_horizon(y, ens, names)
            per_t[session] = {"member_auc": float(np.mean([np.mean(list(a.values())) for a in g["auc"]])),
                              "ensemble_auc": float(np.mean([m[h]["auc"] for h in names])),
                              "ensemble_brier": float(np.mean([m[h]["brier"] for h in names])),
                              "seconds": float(g["seconds"].mean()), "epochs": float(g["epochs"].mean())}
        out["recipes"][name] = {"by_session": per_t,
                                "member_auc": float(np.mean([v["member_auc"] for v in per_t.values()])),
                                "ensemble_auc": float(np.mean([v["ensemble_auc"] for v in per_t.values()])),
                                "ensemble_brier": float(np.mean([v["ensemble_brier"] for v in per_t.values()])),
                                "seconds_per_member": float(np.mean([v["seconds"] for v in per_t.values()])),
                                "n_seeds": int(rows.groupby("session").size().min())}
    rows = frame[frame.recipe == ENSEMBLE_RECIPE]
    for k in range(1, 6):
        aucs, briers, lls = [], [], []
        for session, g in rows.groupby("session"):
            g = g.sort_values("seed")
            if len(g) < k:
                continue
            y = np.array(g.iloc[0]["y"])
            ens = np.mean([np.array(p) for p in g["proba"].iloc[:k]], axis=0)
            m = metrics_by_horizon(y, ens, names)
            aucs.append(np.mean([m[h]["auc"] for h in names]))
            briers.append(np.mean([m[h]["brier"] for h in names]))
            lls.append(np.mean([m[h]["log_loss"] for h in names]))
        if aucs:
            out["ensemble_k"][k] = {"auc": float(np.mean(aucs)), "brier": float(np.mean(briers)),
                                    "log_loss": float(np.mean(lls)), "periods": len(aucs),
                                    "seconds": round(k * float(rows["seconds"].mean()), 1)}
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = ["# Fit window: what a challenger learns from", "",
             f"- ran: `{result['command']}`, {result['machine']['date']}, git {result['machine'].get('git')}",
             f"- machine: {result['machine']['cpu']}, {result['machine']['host_cores']} cores, torch "
             f"{result['machine'].get('torch')}", "",
             "Each recipe trains as the pipeline would at session T (fit ends an embargo before the 250-session "
             "holdout; `refit_E` also fits the holdout) and is scored on the 250 sessions after T. Tuning "
             f"periods T = {', '.join(SESSIONS_T)}; mean AUC over h1/h3/h5, then over the three periods. "
             "Seconds are wall time per member; during the first period the two cores were shared with tests "
             "(full_8 took 22-27 s alone, up to 224 s shared), so compare costs by epochs, not seconds.", "",
             "| recipe | seeds | mean member AUC | ensemble AUC | ensemble Brier | s per member | "
             + " | ".join(f"AUC after {t[:4]}" for t in SESSIONS_T) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(SESSIONS_T)]
    for name, r in s["recipes"].items():
        per = " | ".join(f"{r['by_session'][t]['ensemble_auc']:.3f}" if t in r["by_session"] else "—"
                         for t in SESSIONS_T)
        lines.append(f"| {name} | {r['n_seeds']} | {r['member_auc']:.4f} | {r['ensemble_auc']:.4f} | "
                     f"{r['ensemble_brier']:.4f} | {r['seconds_per_member']:.0f} | {per} |")
    rf = s["rf"]
    for label in ("gated", "refit"):
        vals = [np.mean(list(rf[t][label]["auc"].values())) for t in SESSIONS_T if t in rf]
        if vals:
            lines.append(f"| Random Forest ({label} span) | — | — | {np.mean(vals):.4f} | — | — | "
                         + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += ["", f"## Ensemble size ({ENSEMBLE_RECIPE}, members averaged in seed order)", "",
              "| k | mean AUC | Brier | log loss | training s |", "|---|---|---|---|---|"]
    for k, r in s["ensemble_k"].items():
        lines.append(f"| {k} | {r['auc']:.4f} | {r['brier']:.4f} | {r['log_loss']:.4f} | {r['seconds']:.0f} |")
    from spywatch.bundle import FULL_EPOCHS
    from spywatch.policy import FitSettings

    lines += ["", f"What the pipeline uses: the `full` recipe with {FULL_EPOCHS} epochs and "
              f"{FitSettings().members} members; no refit on the holdout after the gate."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fit_window")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the recorded JSON")
    args = ap.parse_args()
    if args.render:
        import json

        atomic_write_text(args.out.with_suffix(".md"), markdown(json.loads(args.out.with_suffix(".json").read_text())))
        return
    table = build_table(read_bars_csv(DATA))
    names = table.targets_config.names
    path = args.out.with_suffix(".json")
    import json

    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    done = {(r["session"], r["recipe"], r["seed"]) for r in runs}
    rf = {t: rf_reference(table, t) for t in SESSIONS_T}
    result = {"machine": machine(), "command": "python bench/fit_window.py " + " ".join(sys.argv[1:]), "runs": runs}
    for session in SESSIONS_T:
        for name, (_, seeds, _, periods) in RECIPES.items():
            if periods is not None and session not in periods:
                continue
            for seed in range(seeds):
                if (session, name, seed) in done:
                    continue
                runs.append(run_one(table, session, name, seed))
                r = runs[-1]
                print(f"{session} {name} seed {seed}: AUC {np.mean(list(r['auc'].values())):.4f} "
                      f"({r['seconds']:.0f} s, {r['epochs']} epochs)", flush=True)
                result["summary"] = summarise(runs, rf, names)
                atomic_write_json(path, result)
    result["summary"] = summarise(runs, rf, names)
    atomic_write_json(path, result)
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
