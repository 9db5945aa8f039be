"""How fast the decay test and the lagging verdict see a champion that got worse, and how often they
fire when nothing happened (Step 12).

The series is built as bench/decay_calibration.py builds it, with the product's fit settings: every
two years (2004-12-31 .. 2022-12-30) a champion is fitted as a retrain fits it (``fit_bundle``, the
``full`` recipe, the policy's members) and a Random Forest (100 trees, as the nightly baselines) on
the same fit span; both score the two years that follow, out of time, after an embargo. Per
session: the labels, the champion's and the forest's probabilities.

Then, per trigger, on the real series and on injected decays (40 injection points spread over the
history, the champion's own segment running from its first session):

- ``cusum``: the decay test as the nightly runs it (``decision.cusum`` on the log-loss excess over
  the forest, the default policy's allowance and threshold);
- ``lagging``: the baseline verdict (``vs_baseline.judge`` on the trailing matured sessions of the
  segment, at most 250; checked every 5 sessions, 1,000 resamples), alarm when it says ``lagging``.

Injected decays, from the injection session on:
- ``collapse``: the champion predicts its training prior every day (what the original models did);
- ``partial``: the champion's probabilities mixed with noise, p' = (1 - a) p + a u with u drawn from
  the champion's own probabilities of the segment (same marginal), a chosen per injection so that the
  champion's mean AUC on the sessions after the injection drops by ``--drop`` (0.03).

Delay: sessions from the injection to the first alarm (undetected within the segment: inf); an
injection whose trigger fired before it is left out (a false alarm, counted apart). False alarms:
alarms per year on the real series, in calm years (all but 2008, 2009, 2020, 2022), restarting
after an alarm (the champion retrained).

    .venv/bin/python bench/trigger_delay.py              # about 10 min on 2 cores (10 trainings)
    .venv/bin/python bench/trigger_delay.py --analyse    # re-analyse the recorded series only
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

from decay_calibration import FIT_ENDS, INJECTIONS, TURBULENT_YEARS  # noqa: E402  (the same series and injections)
from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.baselines import BaselineConfig, fit_baselines  # noqa: E402
from spywatch.bundle import FitSpec, fit_bundle  # noqa: E402
from spywatch.comparison import session_log_loss  # noqa: E402
from spywatch.dataset import build_table  # noqa: E402
from spywatch.decision import RetrainPolicy, cusum  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402
from spywatch.policy import FitSettings  # noqa: E402
from spywatch.train import TrainConfig, predict_members  # noqa: E402
from spywatch.vs_baseline import MIN_SESSIONS, judge  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
NAMES = ["h1", "h3", "h5"]
CHECK_EVERY = 5  # sessions between two lagging checks (the nightly checks every session)
TRAILING = 250  # the nightly performance window


def build_series(table) -> pd.DataFrame:
    idx = table.index
    h = table.targets_config.max_horizon
    rows = []
    for i, end in enumerate(FIT_ENDS):
        end_ts = idx[idx.searchsorted(pd.Timestamp(end), side="right") - 1]
        t0 = time.perf_counter()
        bundle = fit_bundle(table, FitSpec(train_end=str(end_ts.date()), members=FitSettings().members),
                            TrainConfig(seed=0))
        nxt = pd.Timestamp(FIT_ENDS[i + 1]) if i + 1 < len(FIT_ENDS) else idx[-1]
        lo = idx[idx.get_loc(end_ts) + h + 1]  # an embargo after the fit span
        w = bundle.windows(table, lo, nxt).labelled()
        fit = bundle.windows(table, *bundle.periods["fit"]).labelled()
        base = fit_baselines(fit.X[:, -1, :], fit.y, BaselineConfig(rf_trees=100), seed=0)
        rf = base.predict(w.X[:, -1, :])["random_forest"]
        model = predict_members(bundle.model, w.X).mean(axis=0)
        frame = pd.DataFrame({"segment": i}, index=w.dates)
        for j, name in enumerate(NAMES):
            frame[f"y_{name}"], frame[f"p_{name}"], frame[f"rf_{name}"] = w.y[:, j], model[:, j], rf[:, j]
            frame[f"prior_{name}"] = fit.y[:, j].mean()
        rows.append(frame)
        print(f"champion fitted to {end_ts.date()}: {len(w)} sessions ({time.perf_counter() - t0:.0f} s)", flush=True)
    return pd.concat(rows)


def arrays(part: pd.DataFrame, prefix: str) -> np.ndarray:
    return part[[f"{prefix}_{n}" for n in NAMES]].to_numpy(dtype="float64")


def mean_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]))


def degrade(y: np.ndarray, p: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """p mixed with draws from its own marginal, the weight chosen so that the mean AUC drops by ``drop``."""
    u = p[rng.permutation(len(p))]
    target = mean_auc(y, p) - drop
    lo, hi = 0.0, 1.0
    for _ in range(25):
        a = (lo + hi) / 2
        if mean_auc(y, (1 - a) * p + a * u) > target:
            lo = a
        else:
            hi = a
    a = (lo + hi) / 2
    return (1 - a) * p + a * u


def cusum_alarm(y, p, rf, policy: RetrainPolicy) -> int | None:
    d = (session_log_loss(y, p) - session_log_loss(y, rf)).mean(axis=1)
    return cusum(d, policy.cusum_allowance, policy.cusum_threshold).first_alarm


def lagging_alarm(y, p, rf, start: int = 0) -> int | None:
    """First index t >= start at which the verdict on the trailing sessions up to t is lagging."""
    first = max(start, MIN_SESSIONS - 1)
    for t in range(first, len(y), CHECK_EVERY):
        lo = max(0, t + 1 - TRAILING)
        v = judge(y[lo:t + 1], p[lo:t + 1], {"random_forest": rf[lo:t + 1]}, NAMES, n_boot=1000)
        if v.verdict == "lagging":
            return t
    return None


def false_alarms(series: pd.DataFrame, trigger: str, policy: RetrainPolicy) -> dict:
    """Alarms on the real series per year (all, calm), restarting after each alarm (a retrain)."""
    alarm_dates = []
    for _, part in series.groupby("segment"):
        y, p, rf = arrays(part, "y"), arrays(part, "p"), arrays(part, "rf")
        start = 0
        while start < len(part) - MIN_SESSIONS:
            rel = (cusum_alarm(y[start:], p[start:], rf[start:], policy) if trigger == "cusum"
                   else lagging_alarm(y[start:], p[start:], rf[start:]))
            if rel is None:
                break
            alarm_dates.append(part.index[start + rel])
            start += rel + 1
    years = series.index.year
    calm_years = sorted(set(years) - set(TURBULENT_YEARS))
    calm = [d for d in alarm_dates if d.year not in TURBULENT_YEARS]
    return {"alarms": len(alarm_dates), "per_year": round(len(alarm_dates) / len(set(years)), 3),
            "calm_alarms": len(calm), "per_calm_year": round(len(calm) / len(calm_years), 3),
            "dates": [str(d.date()) for d in alarm_dates]}


def delays(series: pd.DataFrame, trigger: str, kind: str, drop: float, policy: RetrainPolicy) -> dict:
    rng = np.random.default_rng(0)
    seg = series["segment"].to_numpy()
    points = np.linspace(60, len(series) - 300, INJECTIONS).astype(int)
    out, pre = [], 0
    for pt in points:
        rows = np.flatnonzero(seg == seg[pt])
        s0, s1 = int(rows[0]), int(rows[-1]) + 1
        part = series.iloc[s0:s1]
        y, p, rf = arrays(part, "y"), arrays(part, "p").copy(), arrays(part, "rf")
        at = pt - s0
        if kind == "collapse":
            p[at:] = arrays(part, "prior")[at:]
        else:
            p[at:] = degrade(y[at:], p[at:], drop, rng)
        first = cusum_alarm(y, p, rf, policy) if trigger == "cusum" else lagging_alarm(y, p, rf)
        if first is not None and first < at:
            pre += 1  # fired before the injection: a false alarm, not a delay
            continue
        out.append(float(first - at) if first is not None else float("inf"))
    finite = [x for x in out if np.isfinite(x)]
    return {"injections": len(out), "fired_before": pre, "detected": len(finite),
            "detected_share": round(len(finite) / len(out), 3) if out else None,
            "delay_median": float(np.median(finite)) if finite else None,
            "delay_p90": float(np.quantile(finite, 0.9)) if finite else None}


def analyse(series: pd.DataFrame, drop: float) -> dict:
    policy = RetrainPolicy()
    out = {"sessions": len(series), "span": [str(series.index[0].date()), str(series.index[-1].date())],
           "policy": {"cusum_allowance": policy.cusum_allowance, "cusum_threshold": policy.cusum_threshold,
                      "lagging_cooldown_days": policy.lagging_cooldown_days},
           "drop": drop, "by_segment": {}, "triggers": {}}
    for s, part in series.groupby("segment"):
        y, p, rf = arrays(part, "y"), arrays(part, "p"), arrays(part, "rf")
        out["by_segment"][str(part.index[0].date())] = {"sessions": len(part), "champion": round(mean_auc(y, p), 4),
                                                        "random_forest": round(mean_auc(y, rf), 4)}
    for trigger in ("cusum", "lagging"):
        t0 = time.perf_counter()
        out["triggers"][trigger] = {"false_alarms": false_alarms(series, trigger, policy),
                                    "collapse": delays(series, trigger, "collapse", drop, policy),
                                    "partial": delays(series, trigger, "partial", drop, policy)}
        print(f"{trigger}: analysed in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def markdown(result: dict) -> str:
    a = result["analysis"]
    m = result["machine"]
    n = lambda x: "—" if x is None else ("inf" if x == float("inf") else f"{x:.0f}")  # noqa: E731
    lines = ["# How fast the decay test and the lagging verdict fire, and how often for nothing "
             "(bench/trigger_delay.py)", "",
             f"- ran: `{result['command']}`, {m['date']}, git {m.get('git')}; machine {m['cpu']}, {m['host_cores']} cores",
             f"- series: {a['sessions']} sessions {a['span'][0]}..{a['span'][1]}; a champion (the product's fit "
             f"settings) and a Random Forest (100 trees) fitted every two years, each scoring the next two years out "
             f"of time",
             f"- `cusum`: allowance {a['policy']['cusum_allowance']}, threshold {a['policy']['cusum_threshold']} "
             f"(the default policy); `lagging`: the baseline verdict on the trailing (at most {TRAILING}) matured "
             f"sessions of the champion's segment, checked every {CHECK_EVERY} sessions (delays are therefore "
             f"rounded up to {CHECK_EVERY}); the policy adds a {a['policy']['lagging_cooldown_days']:g}-day cooldown",
             f"- injected at {INJECTIONS} points: `collapse` (the training prior every day) and `partial` (mean AUC "
             f"lowered by {a['drop']} by mixing the champion's probabilities with draws from their own marginal)", "",
             "| trigger | alarms per year (all) | per calm year | collapse: detected, median delay, p90 | "
             "partial: detected, median delay, p90 | fired before the injection (collapse / partial) |",
             "|---|---|---|---|---|---|"]
    for t, r in a["triggers"].items():
        fa, c, p = r["false_alarms"], r["collapse"], r["partial"]
        lines.append(f"| `{t}` | {fa['per_year']:.2f} ({fa['alarms']}) | {fa['per_calm_year']:.2f} "
                     f"({fa['calm_alarms']}) | {c['detected']}/{c['injections']}, {n(c['delay_median'])}, "
                     f"{n(c['delay_p90'])} | {p['detected']}/{p['injections']}, {n(p['delay_median'])}, "
                     f"{n(p['delay_p90'])} | {c['fired_before']} / {p['fired_before']} |")
    lines += ["", "Alarm dates on the real series: " + "; ".join(
        f"`{t}` {', '.join(r['false_alarms']['dates']) or 'none'}" for t, r in a["triggers"].items()), "",
        "Champion and forest per two-year segment (mean AUC, out of time):", "",
        "| segment from | sessions | champion | RF |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['sessions']} | {v['champion']:.4f} | {v['random_forest']:.4f} |"
              for k, v in a["by_segment"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drop", type=float, default=0.03)
    ap.add_argument("--analyse", action="store_true", help="re-analyse the recorded series only")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "trigger_delay")
    args = ap.parse_args()
    path = args.out.with_suffix(".json")
    if args.analyse:
        result = json.loads(path.read_text())
        series = pd.DataFrame(result["series"])
        series.index = pd.to_datetime(series.pop("date"))
    else:
        series = build_series(build_table(read_bars_csv(DATA)))
        result = {"command": "python bench/trigger_delay.py " + " ".join(sys.argv[1:]),
                  "series": {"date": [str(d.date()) for d in series.index],
                             **{c: series[c].round(6).tolist() for c in series.columns}}}
        atomic_write_json(path, result)
    result["machine"] = machine()
    result["analysis"] = analyse(series, args.drop)
    atomic_write_json(path, result)
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
