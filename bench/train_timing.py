"""Training time of the champion retrain, and what each way of cutting it costs in AUC, in one run.

Every row trains what a retrain trains (``fit_bundle``: the ``full`` recipe, ``FULL_EPOCHS`` epochs
on every labelled session up to an embargo before the holdout, ``FitSettings().members`` members)
and scores the ensemble on the 250 sessions after T, out of time:

- ``reference``: the model before this bench (stride 2, two encoder layers), the members one after
  the other with ``PatchTSTClassifier`` (explicit attention), the implementation before the stacked
  path (``TrainConfig(stacked=False)``);
- ``stacked``: the same model, the members trained as one ``PatchTSTStack`` (fused attention);
- ``stacked`` with architecture changes that cut the work per window: ``stride4`` (non-overlapping
  patches: 6 tokens instead of 10), ``layers1`` (one encoder layer), ``stride4_layers1``.

T = the tuning periods of ``bench/fit_window.py`` (end of 2012, 2016, 2020), where a change is
judged; ``eval`` (fit through 2021, scored on 2022-2024) is recorded beside them for confirmation,
never to choose. Runs alternate by period so machine noise spreads evenly. Resumes from its JSON.

    .venv/bin/python bench/train_timing.py [--device auto|cpu|cuda] [--variants a,b]   # ~12 min on 2 cores
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

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.audit import metrics_by_horizon  # noqa: E402
from spywatch.bundle import FULL_EPOCHS, FitSpec, fit_bundle  # noqa: E402
from spywatch.comparison import compare  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.evaluate import bootstrap_config  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, predict_members  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
PERIODS = {"2012": "2012-12-31", "2016": "2016-12-30", "2020": "2020-12-31", "eval": "2021-12-31"}
TUNING = ("2012", "2016", "2020")
HOLDOUT = 250
# name -> (stacked, PatchTSTConfig overrides): every architecture spelled out, so that the rows do not
# move with the model's defaults (stride4_layers1 is the default since this bench chose it)
VARIANTS = {
    "reference": (False, {"stride": 2, "n_layers": 2}),
    "stacked": (True, {"stride": 2, "n_layers": 2}),
    "stride4": (True, {"stride": 4, "n_layers": 2}),
    "layers1": (True, {"stride": 2, "n_layers": 1}),
    "stride4_layers1": (True, {"stride": 4, "n_layers": 1}),
}


def spans(table, period: str, periods: dict[str, str] = PERIODS) -> tuple[pd.Timestamp, tuple[pd.Timestamp, pd.Timestamp]]:
    """(train_end, scored span) for a retrain at T = ``periods[period]``: as bench/fit_window.py
    (gated recipe); ``eval`` fits through 2021 (an embargo before 2022) and is scored on 2022-2024."""
    idx, h = table.index, table.targets_config.max_horizon
    if period == "eval":
        first = int(idx.searchsorted(pd.Timestamp("2022-01-01")))
        return idx[first - h - 1], (idx[first], idx[int(idx.searchsorted(pd.Timestamp("2024-12-31"), "right")) - 1])
    pos_t = int(idx.get_loc(pd.Timestamp(periods[period])))
    hold_start = pos_t - h - HOLDOUT + 1
    return idx[hold_start - h - 1], (idx[pos_t + 1], idx[min(len(idx) - 1, pos_t + HOLDOUT)])


def retrain_at(table, period: str, train: TrainConfig, **spec):
    """What a retrain at T = ``period`` trains (``fit_bundle``, the full recipe, ``FitSettings().members``
    members; ``spec``: other FitSpec fields), and the labelled windows of the span it is scored on:
    (bundle, windows, scored span, fit_bundle's wall seconds)."""
    train_end, scored = spans(table, period)
    t0 = time.perf_counter()
    bundle = fit_bundle(table, FitSpec(train_end=str(train_end.date()), members=FitSettings().members, **spec), train)
    wall = time.perf_counter() - t0
    return bundle, bundle.windows(table, *scored).labelled(), scored, wall


def run_one(table, period: str, variant: str, device: str) -> dict:
    stacked, overrides = VARIANTS[variant]
    members = FitSettings().members
    # as these rows were recorded: before the output bias started at the prior and before the
    # training audit (bench/training_audit.py measures both against this)
    bundle, w, scored, wall = retrain_at(table, period, TrainConfig(stacked=stacked, device=device, prior_bias=False,
                                                                    record=False), model=overrides)
    t1 = time.perf_counter()
    member_proba = predict_members(bundle.model, w.X)
    predict_s = time.perf_counter() - t1
    names = table.targets_config.names
    ens = metrics_by_horizon(w.y, member_proba.mean(axis=0), names)
    per_member = [metrics_by_horizon(w.y, p, names) for p in member_proba]
    train_s = bundle.metrics["train_seconds"]
    return {"period": period, "variant": variant, "device": bundle.metrics["device"], "members": members,
            "epochs": FULL_EPOCHS, "fit": bundle.periods["fit"], "scored": [str(d.date()) for d in scored],
            "n_fit": bundle.metrics["samples"]["fit"], "n_scored": len(w),
            "train_seconds": round(train_s, 2), "seconds_per_epoch": round(train_s / FULL_EPOCHS, 3),
            "fit_bundle_wall_seconds": round(wall, 2), "predict_seconds": round(predict_s, 3),
            "peak_rss_mb": round(bundle.metrics["peak_rss_mb"]), "peak_gpu_mb": bundle.metrics["peak_gpu_mb"],
            "auc": {h: round(ens[h]["auc"], 4) for h in names},
            "mean_auc": round(statistics.mean(ens[h]["auc"] for h in names), 4),
            "brier": round(statistics.mean(ens[h]["brier"] for h in names), 4),
            "ece": round(statistics.mean(ens[h]["ece"] for h in names), 4),
            "member_mean_auc": [round(statistics.mean(m[h]["auc"] for h in names), 4) for m in per_member],
            # the scored sessions and the ensemble's probabilities: the paired comparison with the reference
            "dates": [str(d.date()) for d in w.dates], "y": w.y.tolist(),
            "proba": np.round(member_proba.mean(axis=0), 6).tolist()}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for variant in VARIANTS:
        rows = {r["period"]: r for r in runs if r["variant"] == variant}
        tuning = [rows[p] for p in TUNING if p in rows]
        if not tuning:
            continue
        member = [a for r in tuning for a in r["member_mean_auc"]]
        out[variant] = {
            "periods": sorted(rows), "train_seconds_tuning": round(sum(r["train_seconds"] for r in tuning), 1),
            "seconds_per_epoch_per_1000_windows": round(statistics.mean(
                r["seconds_per_epoch"] / r["n_fit"] * 1000 for r in rows.values()), 3),
            "mean_auc_tuning": round(statistics.mean(r["mean_auc"] for r in tuning), 4),
            "brier_tuning": round(statistics.mean(r["brier"] for r in tuning), 4),
            "ece_tuning": round(statistics.mean(r["ece"] for r in tuning), 4),
            # seed spread: how far apart single members of one recipe land, period by period
            "member_spread_tuning": round(statistics.mean(max(r["member_mean_auc"]) - min(r["member_mean_auc"])
                                                          for r in tuning), 4),
            "member_mean_auc_tuning": round(statistics.mean(member), 4),
            "eval": rows.get("eval") and {k: rows["eval"][k] for k in ("train_seconds", "mean_auc", "auc", "brier",
                                                                         "ece", "member_mean_auc")},
        }
    ref = out.get("reference")
    for variant, s in out.items():
        if ref and s["periods"] == ref["periods"]:
            s["speedup_vs_reference"] = round(ref["train_seconds_tuning"] / s["train_seconds_tuning"], 2)
            s["auc_vs_reference"] = round(s["mean_auc_tuning"] - ref["mean_auc_tuning"], 4)
            if variant != "reference":
                s["paired_vs_reference"] = {name: paired(runs, variant, periods)
                                            for name, periods in (("tuning", TUNING), ("eval", ("eval",)))}
    return out


def paired(runs: list[dict], variant: str, periods: tuple[str, ...], b: str = "reference") -> dict | None:
    """Variant minus ``b``, mean AUC over h1/h3/h5, on the same scored sessions: a paired block
    bootstrap (blocks of 10 sessions; the tuning periods' sessions are concatenated in time order).
    Rows carry "variant", "period", "dates", "y" and the ensemble's "proba"."""
    rows = {(r["variant"], r["period"]): r for r in runs}
    if not all((v, p) in rows for v in (variant, b) for p in periods):
        return None
    pick = lambda v, key: np.concatenate([np.asarray(rows[(v, p)][key], dtype="float64") for p in periods])  # noqa: E731
    dates = [d for p in periods for d in rows[(b, p)]["dates"]]
    if list(dates) != [d for p in periods for d in rows[(variant, p)]["dates"]]:
        raise ValueError(f"{variant} and {b} were scored on different sessions")
    c = compare(pick(b, "y"), pick(variant, "proba"), pick(b, "proba"), ["h1", "h3", "h5"],
                pd.to_datetime(dates), "mean_auc", bootstrap_config(5, 2000), a=variant, b=b)
    return {"estimate": round(c.estimate, 4), "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
            "p_better": round(c.p_a_better, 3), "n_sessions": c.n_sessions}


def markdown(result: dict) -> str:
    m = result["machine"]
    runs = result["runs"]
    lines = ["# Training time of a retrain, and what cutting it costs (bench/train_timing.py)", "",
             f"- ran: `{result['command']}`, started {result['started']}, written {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, torch {m.get('torch')}, device {runs[0]['device']}",
             f"- each row: what a retrain trains (`fit_bundle`, the `full` recipe, {FULL_EPOCHS} epochs, "
             f"{runs[0]['members']} members) at T, scored on the {HOLDOUT} sessions after T; "
             "tuning T = 2012, 2016, 2020 (judged there); `eval` = fit through 2021, scored on 2022-2024 "
             "(confirmation only)",
             "- AUC, Brier, ECE: of the ensemble, mean over h1/h3/h5; member spread: max - min of the members' "
             "mean AUC within one run (the seed noise a change has to stay inside)",
             "- vs reference: variant minus reference mean AUC on the same sessions, paired 90% block bootstrap "
             "(blocks of 10 sessions, 2,000 resamples; the three tuning periods' 750 sessions together)", "",
             "| variant | train s (3 tuning periods) | s/epoch per 1000 windows | speed-up | mean AUC (tuning) | "
             "vs reference, tuning [90% CI] | member spread | Brier | ECE | eval s | eval mean AUC | "
             "vs reference, eval [90% CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        ev = s.get("eval") or {}
        pairs = s.get("paired_vs_reference") or {}
        ci = lambda c: f"{c['estimate']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]" if c else "—"  # noqa: E731
        lines.append(f"| `{name}` | {s['train_seconds_tuning']} | {s['seconds_per_epoch_per_1000_windows']} | "
                     f"{s.get('speedup_vs_reference', '—')}x | {s['mean_auc_tuning']:.4f} | "
                     f"{ci(pairs.get('tuning'))} | {s['member_spread_tuning']:.4f} | "
                     f"{s['brier_tuning']:.4f} | {s['ece_tuning']:.4f} | {ev.get('train_seconds', '—')} | "
                     f"{ev.get('mean_auc', float('nan')):.4f} | {ci(pairs.get('eval'))} |")
    lines += ["", "Per run:", "", "| period | variant | n fit | train s | s/epoch | predict s | mean AUC | members |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["period"], list(VARIANTS).index(r["variant"]))):
        lines.append(f"| {r['period']} | `{r['variant']}` | {r['n_fit']} | {r['train_seconds']} | "
                     f"{r['seconds_per_epoch']} | {r['predict_seconds']} | {r['mean_auc']:.4f} | "
                     f"{', '.join(f'{a:.4f}' for a in r['member_mean_auc'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--periods", default=",".join(PERIODS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_timing")
    ap.add_argument("--render", action="store_true", help="rewrite the markdown from the recorded JSON")
    args = ap.parse_args()
    path = args.out.with_suffix(".json")
    previous = json.loads(path.read_text()) if path.exists() else {}
    if args.render:
        atomic_write_text(args.out.with_suffix(".md"), markdown(previous))
        return
    command = "python bench/train_timing.py " + " ".join(sys.argv[1:])
    same = previous.get("command") == command and previous.get("runs")
    runs = previous["runs"] if same else []
    started = previous["started"] if same else pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    table = build_table(read_bars_csv(DATA))
    done = {(r["period"], r["variant"]) for r in runs}
    for period in args.periods.split(","):
        for variant in args.variants.split(","):
            if (period, variant) in done:
                continue
            runs.append(run_one(table, period, variant, args.device))
            print(json.dumps({k: v for k, v in runs[-1].items() if k not in ("fit", "scored", "dates", "y", "proba")}),
                  flush=True)
            result = {"command": command, "started": started, "machine": machine(), "runs": runs,
                      "summary": summarise(runs), "variants": {k: {"stacked": s, "model": o}
                                                               for k, (s, o) in VARIANTS.items()}}
            atomic_write_json(path, json.loads(json.dumps(result, default=str)))
            atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
