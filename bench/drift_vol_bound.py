"""How well can *any* volatility-ratio statistic catch "volatility doubled" on real SPY windows?

The drift calibration (bench/drift_calibration.py) reaches a 54.8% alarm on the x2 fault against
a >= 90% target while staying quiet on in-distribution windows. This bench asks whether a better
statistic exists, reading the one thing the fault changes: the window's volatility relative to a
forecast made from the sessions before it. For each forecast (flat past year, EWMA, HAR blend,
GARCH(1,1), high-low range), the statistic is log(realised / forecast) over the 60-session window;
its threshold is the 95th percentile on selection windows (the whole 5% false-alarm budget, more
than the shipped rule spends), and detection of the x1.5 / x2 / x3 faults (log moves scaled from
the window start) is read on the report windows. Windows and splits are the calibration's: each
year of 1994-2016, 60 sessions, stride 10; even years select, odd years report.

    .venv/bin/python bench/drift_vol_bound.py     # seconds; bench/results/drift_vol_bound.{md,json}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
OUT = HERE / "results" / "drift_vol_bound"
WINDOW, STRIDE, PAST = 60, 10, 250
FAULTS = (1.5, 2.0, 3.0)
BUDGET = 0.95  # threshold quantile on selection windows


def garch_fit(r: np.ndarray) -> tuple[float, float, float]:
    """GARCH(1,1) by Gaussian quasi-likelihood on the reference returns (omega, alpha, beta)."""
    r = r - r.mean()

    def nll(theta: np.ndarray) -> float:
        omega, alpha, beta = np.exp(theta[0]), 1 / (1 + np.exp(-theta[1])), 1 / (1 + np.exp(-theta[2]))
        if alpha + beta >= 0.999:
            return 1e10
        h = np.empty_like(r)
        h[0] = r.var()
        for t in range(1, len(r)):
            h[t] = omega + alpha * r[t - 1] ** 2 + beta * h[t - 1]
        return 0.5 * np.sum(np.log(h) + r ** 2 / h)

    res = optimize.minimize(nll, x0=np.array([np.log(r.var() * 0.02), -2.0, 2.0]), method="Nelder-Mead",
                            options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-6})
    t = res.x
    return float(np.exp(t[0])), float(1 / (1 + np.exp(-t[1]))), float(1 / (1 + np.exp(-t[2])))


def forecasts(r: np.ndarray, rng: np.ndarray, p: int, garch: tuple[float, float, float], h: np.ndarray) -> dict:
    """Volatility forecasts for the window starting at position ``p``, from the sessions before it."""
    past, past_rng = r[p - PAST:p], rng[p - PAST:p]
    out = {"flat past year (sd)": past.std(), "past 60 sessions (sd)": past[-60:].std()}
    for lam in (0.94, 0.97, 0.99):
        w = lam ** np.arange(PAST)[::-1]
        out[f"EWMA {lam}"] = np.sqrt((w * past ** 2).sum() / w.sum())
    rv = {k: np.sqrt((past[-k:] ** 2).mean()) for k in (5, 20, 60, 250)}
    out["HAR blend 5/20/60/250"] = 0.1 * rv[5] + 0.3 * rv[20] + 0.3 * rv[60] + 0.3 * rv[250]
    omega, alpha, beta = garch
    persistence, long_run = alpha + beta, omega / (1 - alpha - beta)
    h_next = omega + alpha * r[p - 1] ** 2 + beta * h[p - 1]
    steps = persistence ** np.arange(WINDOW)
    out["GARCH(1,1) 60-session forecast"] = np.sqrt(long_run + (h_next - long_run) * steps.mean())
    w = 0.97 ** np.arange(PAST)[::-1]
    out["high-low range vs its EWMA 0.97"] = (w * past_rng).sum() / w.sum()
    return out


def realised(r: np.ndarray, rng: np.ndarray, p: int, m: float) -> tuple[float, float]:
    cur = r[p:p + WINDOW] * m
    return float(np.sqrt((cur ** 2).mean())), float((rng[p:p + WINDOW] * m).mean())


def main() -> int:
    t0 = time.perf_counter()
    bars = pd.read_csv(DATA, parse_dates=["Date"], index_col="Date")
    r_all = np.log(bars["Close"]).diff()
    rng_all = np.log(bars["High"] / bars["Low"])
    r, rng, idx = r_all.to_numpy()[1:], rng_all.to_numpy()[1:], bars.index[1:]
    ref = (idx >= "1994-01-01") & (idx <= "2016-12-31")
    garch = garch_fit(r[ref])
    omega, alpha, beta = garch
    h = np.empty_like(r)
    h[0] = r[ref].var()
    for t in range(1, len(r)):
        h[t] = omega + alpha * (r[t - 1] - r[ref].mean()) ** 2 + beta * h[t - 1]

    rows = []
    for year in range(1994, 2017):
        pos = np.where(idx.year == year)[0]
        for p in pos[:len(pos) - WINDOW + 1:STRIDE]:
            if p < PAST:
                continue
            f = forecasts(r, rng, p, garch, h)
            for m in (1.0, *FAULTS):
                vol, hl = realised(r, rng, p, m)
                stat = {k: np.log((hl if k.startswith("high-low") else vol) / v) for k, v in f.items()}
                rows.append({"year": year, "start": idx[p].date().isoformat(), "m": m, **stat})
    frame = pd.DataFrame(rows)
    names = [c for c in frame.columns if c not in ("year", "start", "m")]
    sel, rep = frame[frame.year % 2 == 0], frame[frame.year % 2 == 1]
    table = []
    for name in names:
        thr = sel.loc[sel.m == 1.0, name].quantile(BUDGET)
        row = {"statistic": name, "threshold (ratio)": round(float(np.exp(thr)), 3),
               "null log-ratio sd (report)": round(float(rep.loc[rep.m == 1.0, name].std()), 3),
               "false alarms (report)": round(float((rep.loc[rep.m == 1.0, name] > thr).mean()), 3)}
        for m in FAULTS:
            row[f"x{m:g} caught (report)"] = round(float((rep.loc[rep.m == m, name] > thr).mean()), 3)
        table.append(row)
    table.sort(key=lambda t: -t["x2 caught (report)"])
    null = rep[rep.m == 1.0]
    over = {q: round(float((np.exp(null["flat past year (sd)"]) >= q).mean()), 3) for q in (1.5, 1.75, 2.0)}
    wall = time.perf_counter() - t0
    info = machine()
    n_sel, n_rep = int((sel.m == 1.0).sum()), int((rep.m == 1.0).sum())
    result = {"machine": info, "wall_seconds": round(wall, 1), "garch": {"omega": omega, "alpha": alpha, "beta": beta},
              "windows": {"selection": n_sel, "report": n_rep}, "report_null_ratio_at_least": over, "table": table}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    cols = list(table[0])
    md = ["# The ceiling for catching \"volatility doubled\" on real SPY windows", "",
          f"- ran: `python bench/drift_vol_bound.py`, {info['date']}, {wall:.0f} s; machine: {info['cpu']}, "
          f"{info['host_cores']} cores; git {info.get('git')}",
          f"- windows: the drift calibration's (each year of 1994-2016, {WINDOW} sessions, stride {STRIDE}); "
          f"selection = even years ({n_sel} windows), report = odd years ({n_rep}); the fault scales the "
          "window's log moves (returns and high-low range) by x1.5 / x2 / x3 from its first session",
          f"- each statistic is log(realised volatility of the window / a forecast from the sessions before it); "
          f"threshold = its {BUDGET:.0%} quantile on selection windows (the whole 5% false-alarm budget)",
          f"- GARCH(1,1) fitted once on 1994-2016 returns (it has seen the windows: an advantage to the detector): "
          f"omega {omega:.3g}, alpha {alpha:.3f}, beta {beta:.3f}", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(t[c]) for c in cols) + " |" for t in table]
    md += ["", "Report windows already at least 1.5x / 1.75x / 2x as volatile as their past year (real history, "
           f"no fault): {over[1.5]:.1%} / {over[1.75]:.1%} / {over[2.0]:.1%}.", "",
           "Reading: real SPY volatility moves against any forecast from its own past with a log-ratio spread of "
           "about 0.3 (news arrives unannounced), while doubling is a log shift of 0.69, about 2.3 spreads; so a "
           "threshold that stays quiet on 95% of real windows catches a doubled one in at most about two thirds "
           "of them, whichever of the standard forecasts it reads. A >= 90% catch of x2 at <= 5% false alarms "
           "would need a forecast error spread under about 0.24, which no forecast here reaches; tripling "
           "(a shift of 1.10) is caught in 90% or more by the better ones, as the shipped rule does (93.6%).", ""]
    OUT.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
