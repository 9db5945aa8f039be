"""PatchTST against the Random Forest, variant by variant, out of time: what closes the gap (Step 12).

Every run trains what a retrain at T trains (``fit_bundle``, the ``full`` recipe, the policy's
members, a fit span ending an embargo before the gate's 250-session holdout) and scores the
ensemble on the 250 sessions after T. The Random Forest and the logistic regression
(``baselines.fit_baselines``, the report's settings) are fitted on the *same* fit span's
last-session features and scored on the same sessions, in the same run.

Tuning T: the ends of 2008, 2010, 2012, 2014, 2016, 2018 and 2020 (1,750 sessions; data to 2021
only): a variant is chosen there. ``eval`` (fit through 2021, scored on 2022-2024) is run for the
chosen variant and the default only, with ``--periods eval``, to confirm, never to choose.

Per variant: the ensemble's mean AUC minus the RF's on all tuning sessions together, paired
(block bootstrap over sessions, blocks of 10), the same against the default, and the AUC of both
by regime (the largest |z| of the window's last session under the fit span's standard scaling:
calm <= 2, 2-3, > 3), as the held-out 2025-26 analysis split them.

    .venv/bin/python bench/vs_rf.py --variants default,quantile [--seeds 0,1,2] [--periods ...]
    .venv/bin/python bench/vs_rf.py --render          # the markdown again from the JSON

Resumes from its JSON (runs are keyed by period, variant and seed).
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

import train_timing  # noqa: E402
from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.baselines import fit_baselines  # noqa: E402
from spywatch.bundle import FitSpec, fit_bundle  # noqa: E402
from spywatch.comparison import compare  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.evaluate import bootstrap_config  # noqa: E402
from spywatch.features import FEATURES, FeatureScaler  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, predict_members  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
PERIODS = {"2008": "2008-12-31", "2010": "2010-12-31", "2012": "2012-12-31", "2014": "2014-12-31",
           "2016": "2016-12-30", "2018": "2018-12-31", "2020": "2020-12-31", "eval": "2021-12-31"}
TUNING = ("2008", "2010", "2012", "2014", "2016", "2018", "2020")
NAMES = ["h1", "h3", "h5"]
# name -> (FitSpec overrides, TrainConfig overrides); every setting that differs from the default
# spelled out, so a row keeps its meaning when the defaults move.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({"scaling": "standard"}, {}),
    "quantile": ({"scaling": "quantile"}, {}),
    "members4": ({"scaling": "standard", "members": 4}, {}),
    "quantile_members4": ({"scaling": "quantile", "members": 4}, {}),
    "epochs16": ({"scaling": "standard", "epochs": 16}, {}),
    "quantile_epochs16": ({"scaling": "quantile", "epochs": 16}, {}),
    "head_light": ({"scaling": "standard", "model": {"head_dropout": 0.1, "dropout": 0.1}}, {}),
    "quantile_head_light": ({"scaling": "quantile", "model": {"head_dropout": 0.1, "dropout": 0.1}}, {}),
    "wide": ({"scaling": "standard", "model": {"d_model": 32, "d_ff": 64, "head_hidden": 128}}, {}),
    "lookback60": ({"scaling": "standard", "lookback": 60}, {}),
    "balance": ({"scaling": "standard"}, {"balance_horizons": True}),
    "quantile_balance": ({"scaling": "quantile"}, {"balance_horizons": True}),
}


def spans(table, period: str) -> tuple[pd.Timestamp, tuple[pd.Timestamp, pd.Timestamp]]:
    """(train_end, scored span): a retrain at T fits up to an embargo before the gate's holdout (the
    250 sessions up to an embargo before T) and is scored on the 250 sessions after T; ``eval`` fits
    through 2021 (an embargo before 2022) and is scored on 2022-2024 (``train_timing.spans``)."""
    return train_timing.spans(table, period, PERIODS)


def baselines_at(table, period: str) -> dict:
    """The RF and the logistic fitted on a retrain's fit span at T, scored on the sessions after T,
    and each scored session's regime (max |z| of its features under the fit span's standard scaling)."""
    train_end, scored = spans(table, period)
    spec = FitSpec(train_end=str(train_end.date()))
    from spywatch.bundle import fit_periods

    first_valid = table.features.dropna().index[0]
    fit = fit_periods(table.index, first_valid, spec, table.targets_config.max_horizon).fit
    feats = table.features.loc[:, list(FEATURES)]
    scaler = FeatureScaler.fit(feats.loc[fit[0]:fit[1]])
    z = scaler.transform(feats)
    y = table.targets
    fit_rows = z.loc[fit[0]:fit[1]].index
    fit_rows = fit_rows[y.loc[fit_rows].notna().all(axis=1)]
    rows = z.loc[scored[0]:scored[1]].index
    rows = rows[y.loc[rows].notna().all(axis=1)]
    t0 = time.perf_counter()
    base = fit_baselines(z.loc[fit_rows].to_numpy(), y.loc[fit_rows].to_numpy(), seed=0)
    pred = base.predict(z.loc[rows].to_numpy())
    return {"period": period, "fit": [str(fit[0].date()), str(fit[1].date())], "n_fit": len(fit_rows),
            "dates": [str(d.date()) for d in rows], "y": y.loc[rows].to_numpy().tolist(),
            "max_abs_z": np.round(z.loc[rows].abs().max(axis=1).to_numpy(), 3).tolist(),
            "random_forest": np.round(pred["random_forest"], 6).tolist(),
            "logistic": np.round(pred["logistic"], 6).tolist(), "seconds": round(time.perf_counter() - t0, 1)}


def run_one(table, period: str, variant: str, seed: int, device: str) -> dict:
    spec_over, train_over = VARIANTS[variant]
    spec_over = {"members": FitSettings().members, **spec_over}
    train_end, scored = spans(table, period)
    train = TrainConfig(device=device, seed=100 * seed, **train_over)
    t0 = time.perf_counter()
    bundle = fit_bundle(table, FitSpec(train_end=str(train_end.date()), **spec_over), train)
    wall = time.perf_counter() - t0
    w = bundle.windows(table, *scored).labelled()
    member_proba = predict_members(bundle.model, w.X)
    ens = member_proba.mean(axis=0)
    return {"period": period, "variant": variant, "seed": seed, "fit": bundle.periods["fit"],
            "n_fit": bundle.metrics["samples"]["fit"], "train_seconds": round(bundle.metrics["train_seconds"], 1),
            "wall_seconds": round(wall, 1), "training": bundle.metrics["training"].get("verdict"),
            "dates": [str(d.date()) for d in w.dates], "proba": np.round(ens, 6).tolist()}


# ----------------------------------------------------------------------------- summary


def _pick(rows: list[dict], key: str) -> np.ndarray:
    return np.concatenate([np.asarray(r[key], dtype="float64") for r in rows])


def paired(y, a, b, dates, name_a: str, name_b: str) -> dict:
    c = compare(y, a, b, NAMES, pd.to_datetime(dates), "mean_auc", bootstrap_config(5, 2000), a=name_a, b=name_b)
    return {"estimate": round(c.estimate, 4), "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
            "p_better": round(c.p_a_better, 3), "n_sessions": c.n_sessions, "a": round(c.a_value, 4),
            "b": round(c.b_value, 4)}


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]))


def summarise(doc: dict, periods: tuple[str, ...]) -> dict:
    """Per (variant, seed) with every period run: the pooled paired comparisons and the regime split."""
    base = {b["period"]: b for b in doc["baselines"]}
    if not all(p in base for p in periods):
        return {}
    runs = {(r["variant"], r["seed"], r["period"]): r for r in doc["runs"]}
    y = _pick([base[p] for p in periods], "y")
    rf = _pick([base[p] for p in periods], "random_forest")
    lr = _pick([base[p] for p in periods], "logistic")
    z = _pick([base[p] for p in periods], "max_abs_z")
    dates = [d for p in periods for d in base[p]["dates"]]
    out: dict = {"baselines": {"random_forest": round(_auc(y, rf), 4), "logistic": round(_auc(y, lr), 4)},
                 "variants": {}}
    ens_by_variant: dict[str, list[np.ndarray]] = {}
    for variant in VARIANTS:
        seeds = sorted({s for (v, s, p) in runs if v == variant and all((v, s, q) in runs for q in periods)})
        for seed in seeds:
            rows = [runs[(variant, seed, p)] for p in periods]
            if [d for r in rows for d in r["dates"]] != dates:
                raise ValueError(f"{variant} seed {seed} was scored on other sessions than the baselines")
            ens_by_variant.setdefault(variant, []).append(_pick(rows, "proba"))
    for variant, probas in ens_by_variant.items():
        p = np.mean(probas, axis=0)  # the seeds' ensembles averaged (one seed: that ensemble)
        regimes = {}
        for name, mask in (("calm", z <= 2), ("2-3", (z > 2) & (z <= 3)), ("extreme", z > 3)):
            regimes[name] = {"n": int(mask.sum()), "patchtst": round(_auc(y[mask], p[mask]), 4),
                             "random_forest": round(_auc(y[mask], rf[mask]), 4)}
        seed_auc = [round(_auc(y, q), 4) for q in probas]
        # within each period (the AUC of one year's sessions, free of the level differences between years)
        cuts = np.cumsum([0] + [len(base[q]["dates"]) for q in periods])
        per_period = {q: round(_auc(y[a:b], p[a:b]) - _auc(y[a:b], rf[a:b]), 4)
                      for q, a, b in zip(periods, cuts[:-1], cuts[1:])}
        entry = {"seeds": len(probas), "mean_auc": round(_auc(y, p), 4), "seed_mean_auc": seed_auc,
                 "vs_rf": paired(y, p, rf, dates, variant, "random_forest"),
                 "vs_rf_per_seed": [paired(y, q, rf, dates, variant, "random_forest")["estimate"] for q in probas],
                 "vs_logistic": paired(y, p, lr, dates, variant, "logistic"), "regimes": regimes,
                 "vs_rf_by_period": per_period,
                 "vs_rf_within_periods": round(float(np.mean(list(per_period.values()))), 4),
                 "train_seconds": round(statistics.mean(
                     sum(runs[(variant, s, q)]["train_seconds"] for q in periods)
                     for s in sorted({s for (v, s, _) in runs if v == variant})
                     if all((variant, s, q) in runs for q in periods)), 1),
                 "training_verdicts": sorted({runs[(variant, s, q)]["training"] for s in
                                              range(len(probas)) for q in periods if (variant, s, q) in runs})}
        if variant != "default" and "default" in ens_by_variant:
            n = min(len(probas), len(ens_by_variant["default"]))
            entry["vs_default"] = paired(y, np.mean(probas[:n], axis=0),
                                         np.mean(ens_by_variant["default"][:n], axis=0), dates, variant, "default")
        out["variants"][variant] = entry
    return out


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = ["# PatchTST against the Random Forest, variant by variant (bench/vs_rf.py)", "",
             f"- ran: `{doc['command']}`, started {doc['started']}, written {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, torch {m.get('torch')}",
             "- each run: what a retrain at T trains (`fit_bundle`, `full` recipe, fit span an embargo before the "
             "gate's 250-session holdout), scored on the 250 sessions after T; the RF (300 trees, min leaf 25) and "
             "the logistic fitted on the same fit span's last-session features and scored on the same sessions",
             "- mean AUC: over h1/h3/h5 on all sessions of the periods together; vs RF / vs default: paired 90% "
             "block bootstrap (blocks of 10 sessions, 2,000 resamples), positive favours the variant; with several "
             "seeds, the seeds' ensembles averaged (per-seed differences listed)",
             "- regimes: the largest |z| of the window's last session under the fit span's standard scaling",
             "- within periods: each period's mean AUC difference to the RF on its own 250 sessions, averaged (the "
             "pooled AUC also credits ranking one year's sessions against another's)", ""]
    for label, key in (("Tuning periods (2008, 2010, ..., 2020: chosen here)", "tuning"),
                       ("Confirmation, fit through 2021, scored on 2022-2024 (never chosen on)", "eval")):
        s = doc.get("summary", {}).get(key) or {}
        if not s.get("variants"):
            continue
        b = s["baselines"]
        lines += [f"## {label}", "", f"RF mean AUC {b['random_forest']:.4f}, logistic {b['logistic']:.4f}.", "",
                  "| variant | seeds | mean AUC | vs RF [90% CI] | P(better) | per seed vs RF | vs RF within periods "
                  "(mean of the periods' differences) | vs default [90% CI] | "
                  "calm (n) PatchTST / RF | 2-3 | > 3 | train s | training |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        ci = lambda c: f"{c['estimate']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]" if c else "—"  # noqa: E731
        order = sorted(s["variants"].items(), key=lambda kv: -kv[1]["vs_rf"]["estimate"])
        for name, e in order:
            r = e["regimes"]
            reg = lambda k: f"{r[k]['patchtst']:.3f} / {r[k]['random_forest']:.3f} ({r[k]['n']})"  # noqa: E731
            lines.append(f"| `{name}` | {e['seeds']} | {e['mean_auc']:.4f} | {ci(e['vs_rf'])} | "
                         f"{e['vs_rf']['p_better']:.2f} | {', '.join(f'{x:+.4f}' for x in e['vs_rf_per_seed'])} | "
                         f"{e['vs_rf_within_periods']:+.4f} ({', '.join(f'{k} {v:+.3f}' for k, v in e['vs_rf_by_period'].items())}) | "
                         f"{ci(e.get('vs_default'))} | {reg('calm')} | {reg('2-3')} | {reg('extreme')} | "
                         f"{e['train_seconds']} | {', '.join(e['training_verdicts'])} |")
        lines.append("")
    lines += ["## Variants", "", "| variant | FitSpec | TrainConfig |", "|---|---|---|"]
    for name, (spec, train) in VARIANTS.items():
        lines.append(f"| `{name}` | `{json.dumps(spec)}` | `{json.dumps(train)}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="default,quantile")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--periods", default=",".join(TUNING))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "vs_rf")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the recorded JSON")
    args = ap.parse_args()
    path = args.out.with_suffix(".json")
    doc = json.loads(path.read_text()) if path.exists() else {}
    if args.render:
        doc["summary"] = {"tuning": summarise(doc, TUNING), "eval": summarise(doc, ("eval",))}
        atomic_write_json(path, doc)
        atomic_write_text(args.out.with_suffix(".md"), markdown(doc))
        return
    doc.setdefault("started", pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"))
    doc.setdefault("runs", [])
    doc.setdefault("baselines", [])
    doc["command"] = "python bench/vs_rf.py " + " ".join(sys.argv[1:])
    table = build_table(read_bars_csv(DATA))
    periods = args.periods.split(",")
    done = {(r["period"], r["variant"], r["seed"]) for r in doc["runs"]}

    def save() -> None:
        doc["machine"] = machine()
        doc["summary"] = {"tuning": summarise(doc, TUNING), "eval": summarise(doc, ("eval",))}
        atomic_write_json(path, json.loads(json.dumps(doc, default=str)))
        atomic_write_text(args.out.with_suffix(".md"), markdown(doc))

    for period in periods:
        if period not in {b["period"] for b in doc["baselines"]}:
            doc["baselines"].append(baselines_at(table, period))
            print(f"{period}: baselines fitted in {doc['baselines'][-1]['seconds']} s", flush=True)
            save()
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in args.variants.split(","):
            if variant not in VARIANTS:
                raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
            for period in periods:
                if (period, variant, seed) in done:
                    continue
                run = run_one(table, period, variant, seed, args.device)
                doc["runs"].append(run)
                print(json.dumps({k: v for k, v in run.items() if k not in ("dates", "proba", "fit")}), flush=True)
                save()
    print(markdown(doc))


if __name__ == "__main__":
    main()
