"""Calibrate the sequential decay test (CUSUM on the champion's log-loss excess over the Random Forest).

What the nightly decay check sees is, per matured session t, d_t = mean over horizons of
log loss(champion) - log loss(Random Forest fitted on the champion's fit span). This bench builds
that series on real SPY history, out of time: a one-member PatchTST and a Random Forest are fitted
every two years (2004-12-31 .. 2022-12-30, the pipeline's fit recipe) and each scores the two years
that follow. Then, for a grid of allowances k and thresholds h of
S_t = max(0, S_{t-1} + d_t - k), alarm at S_t >= h (restart after an alarm and at each new model):

- false alarms per year in calm years (every year but 2008, 2009, 2020 and 2022, whose markets
  no two-year-old model was trained for), on the real series;
- the null run length: block-bootstrap resamples (blocks of 20 sessions) of d_t with its mean
  removed (a champion exactly as good as the forest on average), the share that alarm within 500
  sessions (two years);
- the detection delay of an injected decay: from a session on, the champion is replaced by a
  collapsed model that predicts its training prior for every day (what the original models did),
  at 40 injection points spread over the history; sessions until the alarm (median, 90th percentile).

The chosen (k, h) is the one with the shortest median delay among those with at most 0.5 calm
false alarms a year (one per two years), at most 50% null alarms within two years, and at least 90%
of the injected collapses detected before the model's two years ran out.

    .venv/bin/python bench/decay_calibration.py            # about 15 min on 2 cores (10 trainings)
    .venv/bin/python bench/decay_calibration.py --analyse  # re-analyse the recorded series only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.baselines import BaselineConfig, fit_baselines  # noqa: E402
from spywatch.bundle import FitSpec, fit_bundle  # noqa: E402
from spywatch.comparison import session_log_loss  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.decision import cusum  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.train import TrainConfig, predict_proba  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
FIT_ENDS = [f"{y}-12-31" for y in range(2004, 2023, 2)]
TURBULENT_YEARS = (2008, 2009, 2020, 2022)
ALLOWANCES = (0.0, 0.005, 0.01, 0.02, 0.03)
THRESHOLDS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
NULL_SESSIONS, NULL_RESAMPLES, NULL_BLOCK = 500, 400, 20
INJECTIONS = 40


def build_series(table, epochs: int) -> pd.DataFrame:
    """d_t and the injected-collapse d'_t per session, with the model segment each belongs to."""
    idx = table.index
    h = table.targets_config.max_horizon
    rows = []
    for i, end in enumerate(FIT_ENDS):
        end_ts = idx[idx.searchsorted(pd.Timestamp(end), side="right") - 1]
        t0 = time.perf_counter()
        bundle = fit_bundle(table, FitSpec(train_end=str(end_ts.date()), epochs=epochs), TrainConfig(seed=0))
        nxt = pd.Timestamp(FIT_ENDS[i + 1]) if i + 1 < len(FIT_ENDS) else idx[-1]
        lo = idx[idx.get_loc(end_ts) + h + 1]  # an embargo after the fit span
        w = bundle.windows(table, lo, nxt).labelled()
        fit = bundle.windows(table, *bundle.periods["fit"]).labelled()
        base = fit_baselines(fit.X[:, -1, :], fit.y, BaselineConfig(rf_trees=100), seed=0)
        rf = base.predict(w.X[:, -1, :])["random_forest"]
        model = predict_proba(bundle.model, w.X)
        prior = np.tile(fit.y.mean(axis=0), (len(w), 1))
        ll_rf = session_log_loss(w.y, rf).mean(axis=1)
        rows.append(pd.DataFrame({"segment": i, "d": session_log_loss(w.y, model).mean(axis=1) - ll_rf,
                                  "d_collapsed": session_log_loss(w.y, prior).mean(axis=1) - ll_rf}, index=w.dates))
        print(f"model fitted to {end_ts.date()}: {len(w)} sessions, mean d {rows[-1]['d'].mean():+.4f}, "
              f"collapsed {rows[-1]['d_collapsed'].mean():+.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return pd.concat(rows)


def alarms(d: np.ndarray, segments: np.ndarray, k: float, h: float) -> int:
    """Alarms over a series, restarting after each alarm and at each new model."""
    count, start = 0, 0
    for seg in np.unique(segments):
        part = d[segments == seg]
        start = 0
        while start < len(part):
            path = cusum(part[start:], k, h)
            if not path.alarm:
                break
            count += 1
            start += path.first_alarm + 1
    return count


def null_alarm_share(d: np.ndarray, k: float, h: float, rng: np.random.Generator) -> float:
    centred = d - d.mean()
    n_blocks = NULL_SESSIONS // NULL_BLOCK
    hits = 0
    for _ in range(NULL_RESAMPLES):
        starts = rng.integers(0, len(centred) - NULL_BLOCK, n_blocks)
        series = np.concatenate([centred[s:s + NULL_BLOCK] for s in starts])
        hits += cusum(series, k, h).alarm
    return hits / NULL_RESAMPLES


def delays(series: pd.DataFrame, k: float, h: float) -> list[float]:
    """Sessions from an injected collapse to the alarm (the CUSUM starts at the segment's start)."""
    out = []
    d, dc, seg = series["d"].to_numpy(), series["d_collapsed"].to_numpy(), series["segment"].to_numpy()
    points = np.linspace(60, len(series) - 300, INJECTIONS).astype(int)
    for p in points:
        s0 = int(np.flatnonzero(seg == seg[p])[0])  # the CUSUM of this model runs from its first session
        mixed = np.concatenate([d[s0:p], dc[p:]])
        path = cusum(mixed, k, h)
        before = cusum(d[s0:p], k, h)
        if before.alarm:  # a false alarm came first: not a detection delay
            continue
        out.append(float(path.first_alarm - (p - s0)) if path.alarm else float("inf"))
    return out


def analyse(series: pd.DataFrame) -> dict:
    rng = np.random.default_rng(0)
    calm = series[~series.index.year.isin(TURBULENT_YEARS)]
    calm_years = calm.index.year.nunique()
    grid = []
    for k in ALLOWANCES:
        for h in THRESHOLDS:
            dl = delays(series, k, h)
            finite = [x for x in dl if np.isfinite(x)]  # undetected within the model's span: inf
            grid.append({"allowance": k, "threshold": h,
                         "calm_alarms_per_year": alarms(calm["d"].to_numpy(), calm["segment"].to_numpy(), k, h) / calm_years,
                         "all_alarms_per_year": alarms(series["d"].to_numpy(), series["segment"].to_numpy(), k, h)
                         / series.index.year.nunique(),
                         "null_alarm_share_2y": null_alarm_share(series["d"].to_numpy(), k, h, rng),
                         "delay_median": float(np.median(finite)) if finite else None,
                         "delay_p90": float(np.quantile(finite, 0.9)) if finite else None,
                         "detected_share": len(finite) / len(dl) if dl else None, "injections": len(dl)})
    ok = [g for g in grid if g["calm_alarms_per_year"] <= 0.5 and g["null_alarm_share_2y"] <= 0.5
          and g["delay_median"] is not None and g["detected_share"] >= 0.9]
    chosen = min(ok, key=lambda g: (g["delay_median"], g["delay_p90"], -g["threshold"])) if ok else None
    years = series.groupby(series.index.year)["d"].agg(["mean", "std", "count"]).round(4)
    return {"grid": grid, "chosen": chosen, "calm_years": calm_years, "turbulent_years": list(TURBULENT_YEARS),
            "sessions": len(series), "span": [str(series.index[0].date()), str(series.index[-1].date())],
            "d_mean": float(series["d"].mean()), "d_std": float(series["d"].std()),
            "d_collapsed_mean": float(series["d_collapsed"].mean()),
            "by_year": {int(y): r.to_dict() for y, r in years.iterrows()}}


def markdown(result: dict) -> str:
    a = result["analysis"]
    c = a["chosen"]
    lines = ["# Decay test calibration: CUSUM of the champion's log-loss excess over the Random Forest", "",
             f"- ran: `{result['command']}`, {result['machine']['date']}, git {result['machine'].get('git')}",
             f"- machine: {result['machine']['cpu']}, {result['machine']['host_cores']} cores", "",
             f"Series: {a['sessions']} sessions {a['span'][0]}..{a['span'][1]}, one-member PatchTST and Random Forest "
             f"refitted every two years, each scoring the next two years out of time. Mean d = {a['d_mean']:+.4f} "
             f"nats/session (std {a['d_std']:.3f}); a collapsed model (training prior every day) would give "
             f"{a['d_collapsed_mean']:+.4f}.", "",
             f"Calm years: all but {', '.join(map(str, a['turbulent_years']))} ({a['calm_years']} years).", ""]
    if c:
        lines += [f"**Chosen: allowance k = {c['allowance']} nats/session, threshold h = {c['threshold']} nats.** "
                  f"Calm false alarms {c['calm_alarms_per_year']:.2f}/year (all years {c['all_alarms_per_year']:.2f}), "
                  f"null resamples alarming within two years {100 * c['null_alarm_share_2y']:.0f}%, injected collapse "
                  f"detected after a median {c['delay_median']:.0f} sessions (90th percentile {c['delay_p90']:.0f}), "
                  f"{100 * c['detected_share']:.0f}% of {c['injections']} injections detected.", ""]
    else:
        lines += ["**No (k, h) in the grid met both false-alarm limits.**", ""]
    lines += ["| k | h | calm alarms/yr | all alarms/yr | null alarm share (2 y) | delay median | delay p90 | detected |",
              "|---|---|---|---|---|---|---|---|"]
    n = lambda x: "—" if x is None else f"{x:.0f}"  # noqa: E731
    for g in a["grid"]:
        lines.append(f"| {g['allowance']} | {g['threshold']} | {g['calm_alarms_per_year']:.2f} | "
                     f"{g['all_alarms_per_year']:.2f} | {g['null_alarm_share_2y']:.2f} | {n(g['delay_median'])} | "
                     f"{n(g['delay_p90'])} | {g['detected_share']:.2f} |")
    lines += ["", "Mean d per year (positive: the champion trails the forest):", "",
              "| year | mean d | std | sessions |", "|---|---|---|---|"]
    lines += [f"| {y} | {r['mean']:+.4f} | {r['std']:.4f} | {int(r['count'])} |" for y, r in a["by_year"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--analyse", action="store_true", help="re-analyse the recorded series only")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "decay_calibration")
    args = ap.parse_args()
    path = args.out.with_suffix(".json")
    if args.analyse:
        result = json.loads(path.read_text())
        series = pd.DataFrame(result["series"])
        series.index = pd.to_datetime(series.pop("date"))
    else:
        series = build_series(build_table(read_bars_csv(DATA)), args.epochs)
        result = {"machine": machine(), "command": "python bench/decay_calibration.py " + " ".join(sys.argv[1:]),
                  "epochs": args.epochs,
                  "series": {"date": [str(d.date()) for d in series.index],
                             "segment": series["segment"].astype(int).tolist(),
                             "d": series["d"].round(6).tolist(), "d_collapsed": series["d_collapsed"].round(6).tolist()}}
    result["analysis"] = analyse(series)
    atomic_write_json(path, result)
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
