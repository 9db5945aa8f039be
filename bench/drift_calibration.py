"""Calibrate drift detection on real SPY history: per-feature methods and thresholds, the dataset rule.

Slow features (vol_60, dist_sma_200, drawdown_252) wander far inside any 60-session window, so a
threshold that suits ret_1 alarms on them all the time and one that suits them misses everything
fast. This bench measures the null (how far genuinely in-distribution windows score) per feature
and per method, chooses on a selection split, and reports on a disjoint report split:

  (a) in-distribution: each calendar year of 1994-2016 is held out of the 1994-2016 reference in
      turn; 60-session windows inside it (stride 10) are scored against the rest. Even years are the
      selection split (methods, thresholds and the rule are chosen there), odd years the report split.
  (b) the same windows with faults: log moves x1.5 / x2 / x3 from the window start (a regime change),
      x2 from 252 sessions before it (a settled regime), each feature x100 in turn, each feature
      shifted by +-0.5 .. 3 training std.
  (c) 2005-2024 replayed night by night, each month against an expanding reference (1994 on) that
      ends before the month's first current window; alarms per year.

Scores are computed here with numpy/scipy using Evidently's own formulas (normed Wasserstein,
two-sample K-S, pooled t-test) because ~10^6 tests through Evidently would take hours; a sample of
windows is then re-run through ``spywatch.drift`` (real Evidently) and the verdicts compared.

    .venv/bin/python bench/drift_calibration.py
writes src/spywatch/drift_thresholds.json and bench/results/drift_calibration.{md,json}
(about 90 s on 2 cores). The report's timing lives in bench/drift_timing.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.features import FEATURES, compute_features  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "spy_daily.csv"
THRESHOLDS = REPO / "src" / "spywatch" / "drift_thresholds.json"
RESULTS = HERE / "results" / "drift_calibration"

REF_START, REF_END = "1994-01-01", "2016-12-31"
WINDOW = 60
STRIDE = 10
HISTORY = 320  # bars before a window used to rebuild its features (>= 252 warm-up + EWM settling)
SHIFTS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # training std, the whole window
# A change that has only begun: the last 15 or 30 sessions of the window shifted. A nightly monitor
# sees every change this way first; a method that needs the whole window to move detects late.
ONSET_SESSIONS = (15, 30)
ONSET_SHIFTS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # training std
VOL_FAULTS = {"vol_x1.5_at_start": (1.5, 0), "vol_x2_at_start": (2.0, 0), "vol_x3_at_start": (3.0, 0),
              "vol_x2_settled": (2.0, 252)}  # name -> (multiplier, sessions before the window it starts)
METHODS = ("wasserstein", "ks", "t_test")
ALPHAS = (0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05)  # per-feature false-flag rates tried (<= the baseline's 5%)
MAX_SELECTION_ALARMS = 0.03  # dataset alarms allowed on selection windows (target 5% on report)
MIN_X100 = 0.99  # a method must flag the x100 fault this often on selection windows to be eligible
BASELINE_QUANTILE = 0.95  # the baseline: normed Wasserstein at the 95th pct of in-reference windows
REPLAY_START, REPLAY_END = "2005-01-01", "2024-12-31"
PERSISTENCE_K = 3
PREDICTION = {"method": "wasserstein", "threshold": 0.5}


# ----------------------------------------------------------------------------- fast scores


class SortedReference:
    """One reference column, sorted once, scored against many windows at a time.

    Each method returns a *severity* (larger = more drifted): the normed Wasserstein distance,
    the K-S statistic D, or -log10 of the t-test p-value (log space so slow features' p-values of
    1e-40 stay comparable instead of underflowing).
    """

    def __init__(self, values: np.ndarray) -> None:
        self.r = np.sort(np.asarray(values, dtype="float64"))
        self.n = len(self.r)
        self.prefix = np.concatenate([[0.0], np.cumsum(self.r)])
        self.norm = max(float(np.std(self.r)), 0.001)  # Evidently's normalisation (ddof=0, floor 0.001)
        self.mean = float(self.r.mean())
        self.var = float(self.r.var(ddof=1))
        self.std = float(np.sqrt(self.var))  # training std, as FeatureScaler (ddof=1)

    def _integral(self, u: np.ndarray) -> np.ndarray:
        # integral over [0, u] of the reference quantile function (a step function)
        k = np.minimum(np.floor(u * self.n).astype(np.int64), self.n - 1)
        return (self.prefix[k] + (u * self.n - k) * self.r[k]) / self.n

    def wasserstein(self, windows: np.ndarray) -> np.ndarray:
        """Normed W1 between the reference and each window (last axis), as Evidently computes it."""
        v = np.sort(windows, axis=-1)
        m = v.shape[-1]
        a = np.arange(m) / m
        b = np.arange(1, m + 1) / m
        u = np.clip(np.searchsorted(self.r, v, side="right") / self.n, a, b)
        ga, gb, gu = self._integral(a), self._integral(b), self._integral(u)
        return (v * (u - a) - (gu - ga) + (gb - gu) - v * (b - u)).sum(axis=-1) / self.norm

    def ks(self, windows: np.ndarray) -> np.ndarray:
        v = np.sort(windows, axis=-1)
        m = v.shape[-1]
        j = np.arange(1, m + 1)
        right = np.searchsorted(self.r, v, side="right") / self.n
        left = np.searchsorted(self.r, v, side="left") / self.n
        return np.maximum(np.abs(right - j / m), np.abs(left - (j - 1) / m)).max(axis=-1)

    def t_test(self, windows: np.ndarray) -> np.ndarray:
        m = windows.shape[-1]
        n = self.n
        pooled = ((n - 1) * self.var + (m - 1) * windows.var(axis=-1, ddof=1)) / (n + m - 2)
        t = (self.mean - windows.mean(axis=-1)) / np.sqrt(pooled * (1 / n + 1 / m))
        return -(np.log(2.0) + stats.t.logsf(np.abs(t), n + m - 2)) / np.log(10.0)

    def severity(self, method: str, windows: np.ndarray) -> np.ndarray:
        return getattr(self, method)(windows)


def ks_p_value(d: float, n: int, m: int) -> float:
    """scipy's two-sample K-S p-value (what Evidently reports) for a statistic D and sizes n, m.

    Calls the routine ``ks_2samp`` itself uses (exact for n, m <= 10000, else Smirnov's asymptotic
    formula), so no samples with that D have to be constructed. Private scipy API: bench only.
    """
    from scipy.stats._stats_py import _attempt_exact_2kssamp

    if max(n, m) <= 10000:
        ok, _, p = _attempt_exact_2kssamp(n, m, math.gcd(n, m), d, "two-sided")
        if ok:
            return float(np.clip(p, 0.0, 1.0))
    return float(stats.kstwo.sf(d, round(n * m / (n + m))))


# ----------------------------------------------------------------------------- windows and faults


@dataclass(frozen=True)
class HeldOutYear:
    year: int
    split: str  # "selection" | "report"
    starts: np.ndarray  # window start positions in the feature index


def held_out_years(features: pd.DataFrame) -> list[HeldOutYear]:
    idx = features.index
    complete = features.notna().all(axis=1).to_numpy()
    out = []
    for year in range(pd.Timestamp(REF_START).year, pd.Timestamp(REF_END).year + 1):
        pos = np.flatnonzero(complete & (idx.year == year))
        starts = np.arange(pos[0], pos[-1] - WINDOW + 2, STRIDE)
        out.append(HeldOutYear(year, "selection" if year % 2 == 0 else "report", starts))
    return out


def scale_moves(bars: pd.DataFrame, start: int, k: float) -> pd.DataFrame:
    """Bars whose log moves from the previous close (open, high, low, close) are multiplied by ``k``
    from position ``start`` on: a volatility regime change that keeps every bar consistent."""
    close = bars["close"].to_numpy()
    prev = np.concatenate([[np.nan], close[:-1]])
    moves = {c: np.log(bars[c].to_numpy() / prev) for c in ("open", "high", "low", "close")}
    new_close = close.copy()
    new_close[start:] = close[start - 1] * np.exp(k * np.cumsum(moves["close"][start:]))
    new_prev = np.concatenate([[np.nan], new_close[:-1]])
    out = bars.copy()
    for col in ("open", "high", "low"):
        values = out[col].to_numpy().copy()
        values[start:] = new_prev[start:] * np.exp(k * moves[col][start:])
        out[col] = values
    out["close"] = new_close
    out["adj_close"] = new_close
    return out


def faulted_features(bars: pd.DataFrame, start: int, k: float, lead: int) -> np.ndarray:
    """Features of the window at ``start`` after a volatility fault; (WINDOW, F)."""
    lo = max(0, start - HISTORY)
    window_bars = bars.iloc[lo:start + WINDOW]
    fault_at = start - lo - lead
    return compute_features(scale_moves(window_bars, fault_at, k)).iloc[-WINDOW:].to_numpy()


# ----------------------------------------------------------------------------- scoring (a) and (b)


def score_held_out(features: pd.DataFrame, bars: pd.DataFrame, years: list[HeldOutYear]) -> dict:
    """Severities for every window, method and fault. Shapes: null/x100/vol (W, F, M); shift/onset (W, F, S, M)."""
    idx = features.index
    complete = features.notna().all(axis=1).to_numpy()
    in_ref = complete & (idx >= REF_START) & (idx <= REF_END)
    values = features.to_numpy()
    signed = np.array([s * d for d in SHIFTS for s in (1.0, -1.0)])
    onset_signed = np.array([s * d for d in ONSET_SHIFTS for s in (1.0, -1.0)])
    # (L * S, T) offsets in training std: for each onset length, each signed shift on the last L sessions
    onset_offsets = np.concatenate([np.outer(onset_signed, np.arange(WINDOW) >= WINDOW - n)
                                    for n in ONSET_SESSIONS])
    out: dict[str, list] = {"null": [], "x100": [], "shift": [], "onset": [], "year": [], "start": [],
                            "ref_std": [], **{k: [] for k in VOL_FAULTS}}
    for held in years:
        ref_rows = in_ref & (idx.year != held.year)
        refs = [SortedReference(values[ref_rows, j]) for j in range(len(FEATURES))]
        win = np.stack([values[s:s + WINDOW] for s in held.starts])  # (W, T, F)
        vol = {name: np.stack([faulted_features(bars, s, k, lead) for s in held.starts])
               for name, (k, lead) in VOL_FAULTS.items()}
        null, x100, shift, onset = [], [], [], []
        faults = {name: [] for name in VOL_FAULTS}
        for j, ref in enumerate(refs):
            col = win[:, :, j]  # (W, T)
            moved = col[:, None, :] + (signed * ref.std)[None, :, None]  # (W, S, T)
            begun = col[:, None, :] + onset_offsets[None] * ref.std  # (W, L * S, T)
            null.append(np.stack([ref.severity(m, col) for m in METHODS], -1))
            x100.append(np.stack([ref.severity(m, col * 100.0) for m in METHODS], -1))
            shift.append(np.stack([ref.severity(m, moved) for m in METHODS], -1))
            onset.append(np.stack([ref.severity(m, begun) for m in METHODS], -1))
            for name in VOL_FAULTS:
                faults[name].append(np.stack([ref.severity(m, vol[name][:, :, j]) for m in METHODS], -1))
        out["null"].append(np.stack(null, 1))
        out["x100"].append(np.stack(x100, 1))
        out["shift"].append(np.stack(shift, 1))
        out["onset"].append(np.stack(onset, 1))
        for name in VOL_FAULTS:
            out[name].append(np.stack(faults[name], 1))
        out["year"].append(np.full(len(held.starts), held.year))
        out["start"].append(held.starts)
        out["ref_std"].append(np.tile([r.std for r in refs], (len(held.starts), 1)))
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    arrays["selection"] = arrays["year"] % 2 == 0
    arrays["ref_size"] = {h.year: int((in_ref & (idx.year != h.year)).sum()) for h in years}
    return arrays


# ----------------------------------------------------------------------------- choosing


@dataclass(frozen=True)
class Choice:
    """One feature's test: Evidently method, its severity threshold, and Evidently's threshold."""

    feature: str
    method: str
    severity_threshold: float
    evidently_threshold: float


def severity_threshold(null: np.ndarray, alpha: float) -> float:
    """Smallest severity that flags at most ``alpha`` of the null windows."""
    return float(np.quantile(null, 1.0 - alpha, method="higher")) + 1e-12


def to_evidently(method: str, severity: float, ref_size: int) -> float:
    """The threshold Evidently compares its score with, rounded; the bench then uses it as stored."""
    if method == "wasserstein":
        return float(f"{severity:.6g}")  # drifted when W >= threshold
    if method == "t_test":
        return float(f"{10.0 ** -severity:.6g}")  # drifted when p < threshold
    return float(f"{ks_p_value(severity, ref_size, WINDOW):.6g}")  # ks: drifted when p <= threshold


def from_evidently(method: str, threshold: float, ref_size: int) -> float:
    if method == "wasserstein":
        return threshold
    if method == "t_test":
        return -np.log10(threshold)
    # smallest D whose p-value is <= threshold (p falls as D grows); D lives on a lattice of step
    # 1/lcm(n, m) (~3e-5 here), so backing off 1e-9 keeps float noise in D from flipping a verdict
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if ks_p_value(mid, ref_size, WINDOW) <= threshold:
            hi = mid
        else:
            lo = mid
    return hi - 1e-9


def choose(scores: dict, alpha: float, ref_size: int) -> list[Choice]:
    """Per feature: the method with the best mean detection over the whole-window and onset shift grids
    at false-flag rate ``alpha`` on selection windows, among methods that flag x100 in >= MIN_X100 of them."""
    sel = scores["selection"]
    out = []
    for j, name in enumerate(FEATURES):
        best = None
        for k, method in enumerate(METHODS):
            tau = severity_threshold(scores["null"][sel, j, k], alpha)
            x100 = float((scores["x100"][sel, j, k] >= tau).mean())
            # a change that fills the window and one that has only begun count alike
            power = float(((scores["shift"][sel, j, :, k] >= tau).mean()
                           + (scores["onset"][sel, j, :, k] >= tau).mean()) / 2)
            if x100 < MIN_X100:
                continue
            # ties go to the earlier method in METHODS (Wasserstein: one scale for every feature)
            if best is None or power > best[0] + 1e-9:
                best = (power, method, tau)
        if best is None:
            raise RuntimeError(f"no method flags {name} x100 in {MIN_X100:.0%} of selection windows")
        _, method, tau = best
        evidently = to_evidently(method, tau, ref_size)
        out.append(Choice(name, method, from_evidently(method, evidently, ref_size), evidently))
    return out


def flags(scores: dict, key: str, choices: list[Choice]) -> np.ndarray:
    """Boolean flags (W, F[, S]) for one score array under the chosen methods/thresholds."""
    cols = []
    for j, c in enumerate(choices):
        k = METHODS.index(c.method)
        cols.append(scores[key][:, j, ..., k] >= c.severity_threshold)
    return np.stack(cols, 1)


def min_drifted(null_counts: np.ndarray, limit: float) -> int:
    """Fewest drifted features that raise the dataset alarm in at most ``limit`` of null windows."""
    for m in range(1, len(FEATURES) + 1):
        if (null_counts >= m).mean() <= limit:
            return m
    return len(FEATURES)


@dataclass(frozen=True)
class Calibration:
    alpha: float
    choices: list[Choice]
    min_features: int
    selection: dict  # the selection-split figures that chose it


def calibrate(scores: dict, ref_size: int) -> tuple[Calibration, list[dict]]:
    """Try each per-feature alpha (method per feature by ``choose``, then the fewest drifted features that
    keep selection-split dataset alarms <= MAX_SELECTION_ALARMS); keep the alpha with the best mean of
    three selection-split detection rates: x2 regime change (dataset alarm), whole-window shifts and
    onset shifts (feature flags). One figure per kind of fault, so neither the dataset rule nor the
    per-feature power is sacrificed for the other."""
    sel = scores["selection"]
    tried, best = [], None
    for alpha in ALPHAS:
        choices = choose(scores, alpha, ref_size)
        null_counts = flags(scores, "null", choices)[sel].sum(1)
        m = min_drifted(null_counts, MAX_SELECTION_ALARMS)
        row = {"alpha": alpha, "min_features": m, "null_alarm": float((null_counts >= m).mean()),
               "feature_flag_rate": float(flags(scores, "null", choices)[sel].mean()),
               "vol_x2_alarm": float((flags(scores, "vol_x2_at_start", choices)[sel].sum(1) >= m).mean()),
               "shift_power": float(flags(scores, "shift", choices)[sel].mean()),
               "onset_power": float(flags(scores, "onset", choices)[sel].mean())}
        row["objective"] = (row["vol_x2_alarm"] + row["shift_power"] + row["onset_power"]) / 3
        tried.append(row)
        if best is None or row["objective"] > best.selection["objective"] + 1e-9:
            best = Calibration(alpha, choices, m, row)
    return best, tried


def baseline(scores: dict, alpha: float = 1.0 - BASELINE_QUANTILE) -> list[Choice]:
    """Normed Wasserstein for every feature at the (1 - alpha) quantile of selection-split null windows."""
    sel = scores["selection"]
    k = METHODS.index("wasserstein")
    out = []
    for j, name in enumerate(FEATURES):
        tau = severity_threshold(scores["null"][sel, j, k], alpha)
        out.append(Choice(name, "wasserstein", tau, tau))
    return out


def _curves(flagged: np.ndarray, steps: tuple[float, ...], lengths: int = 1) -> dict:
    """(W, F, lengths * steps * 2 signs) flags -> {feature: {[length:]step: rate}} (mean over windows and signs)."""
    rates = flagged.reshape(flagged.shape[0], flagged.shape[1], lengths, len(steps), 2).mean(axis=(0, 4))
    out = {}
    for j, name in enumerate(FEATURES):
        if lengths == 1:
            out[name] = {f"{s:g}": round(float(r), 4) for s, r in zip(steps, rates[j, 0])}
        else:
            out[name] = {f"{n}:{s:g}": round(float(r), 4) for i, n in enumerate(ONSET_SESSIONS)
                         for s, r in zip(steps, rates[j, i])}
    return out


def _fault_figures(scores: dict, choices: list[Choice], split: np.ndarray, m: int) -> dict:
    null = flags(scores, "null", choices)[split]
    x100 = flags(scores, "x100", choices)[split]
    counts = null.sum(1)
    out = {"dataset_alarm": float((counts >= m).mean()),
           "feature_flag_rate": float(null.mean()),
           "feature_flag_rate_by_feature": dict(zip(FEATURES, null.mean(0).round(4).tolist())),
           "x100_flagged_by_feature": dict(zip(FEATURES, x100.mean(0).round(4).tolist())),
           "x100_flagged_all": float(x100.mean()),
           # the other features as they were, the scaled one as flagged under x100
           "x100_dataset_alarm": float(((counts[:, None] - null + x100) >= m).mean()),
           "shift_power": float(flags(scores, "shift", choices)[split].mean()),
           "onset_power": float(flags(scores, "onset", choices)[split].mean()),
           "shift_curve": _curves(flags(scores, "shift", choices)[split], SHIFTS),
           "onset_curve": _curves(flags(scores, "onset", choices)[split], ONSET_SHIFTS, len(ONSET_SESSIONS)),
           "vol_faults": {}}
    for name in VOL_FAULTS:
        f = flags(scores, name, choices)[split]
        out["vol_faults"][name] = {"dataset_alarm": float((f.sum(1) >= m).mean()),
                                   "mean_features_flagged": float(f.sum(1).mean()),
                                   "flag_rate_by_feature": dict(zip(FEATURES, f.mean(0).round(3).tolist()))}
    return out


def evaluate(scores: dict, cal: Calibration, baselines: dict[str, list[Choice]], split: np.ndarray) -> dict:
    """Every figure of the report on the windows of ``split``, for the calibration and each baseline
    (baselines get the dataset rule that keeps their own selection-split alarms <= MAX_SELECTION_ALARMS)."""
    out = _fault_figures(scores, cal.choices, split, cal.min_features)
    out |= {"windows": int(split.sum()), "years": sorted({int(y) for y in scores["year"][split]})}
    out["baselines"] = {}
    for name, choices in baselines.items():
        m = min_drifted(flags(scores, "null", choices)[scores["selection"]].sum(1), MAX_SELECTION_ALARMS)
        out["baselines"][name] = _fault_figures(scores, choices, split, m) | {"min_features": m}
    return out


def alarm_by_vol_tercile(scores: dict, cal: Calibration, split: np.ndarray, window_vol: np.ndarray) -> dict:
    """The x2 regime change's alarm rate by the window's own volatility before the fault (terciles)."""
    f = flags(scores, "vol_x2_at_start", cal.choices)[split].sum(1) >= cal.min_features
    v = window_vol[split]
    edges = np.quantile(v, [1 / 3, 2 / 3])
    groups = np.digitize(v, edges)
    return {label: {"windows": int((groups == g).sum()), "mean_vol_20": float(v[groups == g].mean()),
                    "dataset_alarm": float(f[groups == g].mean())}
            for g, label in enumerate(("calm", "middle", "turbulent"))}


# ----------------------------------------------------------------------------- (c) replay


def replay(features: pd.DataFrame, cal: Calibration, reference_years: int | None = None) -> dict:
    """Night by night 2005-2024; each month's runs against complete rows that end before the month's
    first current window and start in 1994 (``reference_years=None``: an expanding reference, a champion
    retrained on all history) or that many years earlier (a rolling training period).
    Returns per-year alarms and the monthly detail."""
    idx = features.index
    values = features.to_numpy()
    complete = features.notna().all(axis=1).to_numpy()
    pos_complete = np.flatnonzero(complete)
    months = pd.period_range(REPLAY_START, REPLAY_END, freq="M")
    nightly, monthly = [], []
    for month in months:
        runs = np.flatnonzero((idx.to_period("M") == month) & complete)
        ends = runs[np.searchsorted(pos_complete, runs) >= WINDOW - 1]
        first_start = pos_complete[np.searchsorted(pos_complete, ends[0]) - WINDOW + 1]
        ref_start = (pd.Timestamp(REF_START) if reference_years is None
                     else idx[first_start] - pd.DateOffset(years=reference_years))
        ref_rows = complete & (idx >= ref_start) & (np.arange(len(idx)) < first_start)
        counts = np.zeros(len(ends), dtype=int)  # drifted features per nightly run
        per_feature = np.zeros(len(FEATURES), dtype=int)
        for j, c in enumerate(cal.choices):
            ref = SortedReference(values[ref_rows, j])
            win = np.stack([values[pos_complete[np.searchsorted(pos_complete, e) - WINDOW + 1]:e + 1, j]
                            for e in ends])
            f = ref.severity(c.method, win) >= c.severity_threshold
            counts += f
            per_feature[j] = f[-1]
        alarms = counts >= cal.min_features
        nightly.extend(zip(idx[ends], alarms, counts))
        monthly.append({"month": str(month), "alarm_month_end": bool(alarms[-1]),
                        "nights": int(len(alarms)), "nights_alarmed": int(alarms.sum()),
                        "drifted_month_end": [n for n, f in zip(FEATURES, per_feature) if f],
                        "reference_end": idx[ref_rows][-1].date().isoformat()})
    nights = pd.Series([a for _, a, _ in nightly], index=[d for d, _, _ in nightly])
    drifted = pd.Series([c for _, _, c in nightly], index=nights.index)
    persistent = nights.astype(int).rolling(PERSISTENCE_K).sum() >= PERSISTENCE_K
    per_year = {}
    for year in range(pd.Timestamp(REPLAY_START).year, pd.Timestamp(REPLAY_END).year + 1):
        rows = [m for m in monthly if m["month"].startswith(str(year))]
        in_year = nights.index.year == year
        per_year[year] = {"months_alarmed": sum(m["alarm_month_end"] for m in rows),
                          "nights_alarmed_share": float(nights[in_year].mean()),
                          "mean_drifted_features": float(drifted[in_year].mean()),
                          "months_with_persistent_alarm": int(
                              persistent[in_year].groupby(nights.index[in_year].month).any().sum())}
    return {"per_year": per_year, "monthly": monthly}


def vol_ceiling(scores: dict, ref_size: int, limit: float = 0.05) -> dict:
    """The best x2-regime-change alarm rate any (alpha, min features) reaches on selection windows while
    keeping selection alarms <= ``limit``: how far per-feature marginal tests can go on this fault."""
    sel = scores["selection"]
    best = {"vol_x2_alarm": 0.0}
    for alpha in (0.01, 0.015, *ALPHAS, 0.06, 0.08, 0.1):
        try:
            choices = choose(scores, alpha, ref_size)
        except RuntimeError:  # no method flags some x100 at this alpha
            continue
        null = flags(scores, "null", choices)[sel].sum(1)
        vol = flags(scores, "vol_x2_at_start", choices)[sel].sum(1)
        for m in range(1, len(FEATURES) + 1):
            if (null >= m).mean() <= limit and (vol >= m).mean() > best["vol_x2_alarm"]:
                best = {"vol_x2_alarm": float((vol >= m).mean()), "alpha": alpha, "min_features": m,
                        "null_alarm": float((null >= m).mean())}
    return best


# ----------------------------------------------------------------------------- the thresholds file, Evidently


def thresholds_document(cal: Calibration, ref_size: int) -> dict:
    return {
        "about": ("Per-feature Evidently drift methods and thresholds for spywatch.drift, chosen by "
                  "bench/drift_calibration.py on real SPY 1994-2016 (selection split: even held-out years) "
                  "and reported on the odd years (bench/results/drift_calibration.md). Valid for "
                  f"{WINDOW}-session current windows against a multi-year training reference. wasserstein: "
                  "drifted when the normed distance >= threshold; ks / t_test: drifted when the p-value is "
                  "below threshold."),
        "window": WINDOW,
        "calibrated_reference": {"start": REF_START, "end": REF_END, "rows_typical": ref_size},
        "per_feature_false_flag_rate": cal.alpha,
        "dataset_rule": {"min_drifted_features": cal.min_features,
                         "drift_share": round((cal.min_features - 0.5) / len(FEATURES), 4),
                         "persistence_k": PERSISTENCE_K},
        "features": {c.feature: {"method": c.method, "threshold": c.evidently_threshold} for c in cal.choices},
        "prediction": dict(PREDICTION),
        "selection_split": {k: round(v, 4) for k, v in cal.selection.items()},
    }


def _evidently_score(method: str, severity: float, ref_size: int) -> float:
    if method == "wasserstein":
        return severity
    if method == "t_test":
        return 10.0 ** -severity
    return ks_p_value(severity, ref_size, WINDOW)


def evidently_agreement(features: pd.DataFrame, bars: pd.DataFrame, scores: dict, cal: Calibration,
                        config_path: Path, n_windows: int) -> dict:
    """Re-run a sample of report windows (clean, one feature x100, one feature +1 std, x2 regime change)
    through spywatch.drift with real Evidently; compare per-feature verdicts and scores."""
    from spywatch.drift import DriftConfig, detect_drift

    config = DriftConfig.load(config_path)
    idx = features.index
    complete = features.notna().all(axis=1).to_numpy()
    report = np.flatnonzero(~scores["selection"])
    pick = report[np.linspace(0, len(report) - 1, n_windows).round().astype(int)]
    rng = np.random.default_rng(0)
    agree = total = dataset_agree = 0
    worst_rel = 0.0
    cases = []
    for i in pick:
        year, start = int(scores["year"][i]), int(scores["start"][i])
        reference = features.loc[complete & (idx >= REF_START) & (idx <= REF_END) & (idx.year != year), list(FEATURES)]
        clean = features.iloc[start:start + WINDOW][list(FEATURES)]
        name = FEATURES[int(rng.integers(len(FEATURES)))]
        wrong_scale, shifted = clean.copy(), clean.copy()
        wrong_scale[name] *= 100.0
        shifted[name] += reference[name].std()
        regime = pd.DataFrame(faulted_features(bars, start, 2.0, 0), index=clean.index, columns=list(FEATURES))
        for kind, current in (("clean", clean), ("x100", wrong_scale), ("shift+1std", shifted), ("vol_x2", regime)):
            result = detect_drift(reference, current, config)
            fast_count = 0
            for c in cal.choices:
                ref = SortedReference(reference[c.feature].to_numpy())
                sev = float(ref.severity(c.method, current[c.feature].to_numpy()[None, :])[0])
                fast = bool(sev >= c.severity_threshold)
                fast_count += fast
                ev = result.per_feature[c.feature]
                agree += int(fast == ev.drifted)
                total += 1
                expected = _evidently_score(c.method, sev, len(reference))
                if expected > 0:
                    worst_rel = max(worst_rel, abs(ev.score - expected) / expected)
            dataset_agree += int((fast_count >= cal.min_features) == result.dataset_drift)
            cases.append({"held_out_year": year, "window_start": idx[start].date().isoformat(), "fault": kind,
                          "feature": name if kind in ("x100", "shift+1std") else None,
                          "evidently_n_drifted": result.n_drifted, "fast_n_drifted": fast_count,
                          "evidently_dataset_drift": result.dataset_drift})
    return {"feature_verdicts_compared": total, "agreeing": agree, "agreement": agree / total,
            "dataset_verdicts_compared": len(cases), "dataset_agreeing": dataset_agree,
            "worst_relative_score_difference": worst_rel, "cases": cases}


# ----------------------------------------------------------------------------- report


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def markdown(doc: dict) -> str:
    rep, th = doc["report_split"], doc["thresholds"]
    base = rep["baselines"]["issue_w95"]
    rule = th["dataset_rule"]
    vol = rep["vol_faults"]
    worst_x100 = min(rep["x100_flagged_by_feature"].values())
    lines = [
        "# Drift calibration on real SPY history (Evidently methods, per-feature thresholds)\n",
        f"- ran: `{doc['command']}`, {doc['machine']['date']}, {doc['elapsed_s']:.0f} s wall",
        f"- machine: {doc['machine']['cpu']}, {doc['machine']['host_cores']} cores, CPU only (shared with other work)",
        "- data: `shared/data/spy_daily.csv` read in place (real SPY 1993-2024); features from `spywatch.features`",
        f"- (a) in-distribution: each year of {REF_START[:4]}-{REF_END[:4]} is held out of the {REF_START[:4]}-{REF_END[:4]} "
        f"reference in turn and its {WINDOW}-session windows (stride {STRIDE}) are tested against the rest. "
        f"Selection split = even years ({doc['selection_split']['windows']} windows), report split = odd years "
        f"({rep['windows']} windows). All figures below are on the report split unless they say otherwise.",
        "- (b) faults on the same windows: log moves x1.5/x2/x3 from the window start (bars rebuilt, features "
        "recomputed), x2 settled (from 252 sessions before), each feature x100 in turn, each feature shifted by "
        f"+-{SHIFTS[0]:g}..{SHIFTS[-1]:g} training std over the whole window, and by +-{ONSET_SHIFTS[0]:g}..{ONSET_SHIFTS[-1]:g} "
        f"std over only the last {' or '.join(map(str, ONSET_SESSIONS))} sessions (a change that has just begun).",
        f"- chosen on the selection split only: per-feature false-flag rate alpha = {th['per_feature_false_flag_rate']} "
        f"(tried {', '.join(map(str, ALPHAS))}); per feature the method with the best mean detection over whole-window "
        f"and onset shifts among methods flagging x100 in >= {MIN_X100:.0%} of windows; dataset rule = the fewest "
        f"drifted features keeping selection alarms <= {MAX_SELECTION_ALARMS:.0%}: **at least {rule['min_drifted_features']} "
        f"of {len(FEATURES)}** (Evidently `drift_share` {rule['drift_share']}); alpha maximises the mean of three "
        "selection detection rates (x2 regime alarm, whole-window shifts, onsets). A retrain additionally needs "
        f"{rule['persistence_k']} consecutive drifted nightly runs (`persistence_k`).",
        f"- baseline (the issue's): normed Wasserstein for every feature at the 95th percentile of selection null "
        f"windows; its own dataset rule chosen the same way (>= {base['min_features']} features).",
        "",
        "## Targets (report split)\n",
        "| target | required | measured | met |", "|---|---|---|---|",
        f"| (a) windows raising the dataset alarm | <= 5% | {pct(rep['dataset_alarm'])} | {_yes(rep['dataset_alarm'] <= 0.05)} |",
        f"| (a) feature tests flagging | <= 10% | {pct(rep['feature_flag_rate'])} | {_yes(rep['feature_flag_rate'] <= 0.10)} |",
        f"| (b) volatility x2 from the window start raises the dataset alarm | >= 90% | "
        f"{pct(vol['vol_x2_at_start']['dataset_alarm'])} | {_yes(vol['vol_x2_at_start']['dataset_alarm'] >= 0.9)} |",
        f"| (b) the x100 feature is flagged (each feature in turn) | >= 90% each | all {pct(rep['x100_flagged_all'])}, "
        f"worst feature {pct(worst_x100)} | {_yes(worst_x100 >= 0.9)} |",
        "",
        doc["notes"]["vol"], "",
        "## Chosen tests (`src/spywatch/drift_thresholds.json`)\n",
        "| feature | method | Evidently threshold | false flags (a) | x100 flagged | +1 std flagged (baseline) |",
        "|---|---|---|---|---|---|",
    ]
    for name in FEATURES:
        f = th["features"][name]
        lines.append(f"| {name} | {f['method']} | {f['threshold']:.4g} | {pct(rep['feature_flag_rate_by_feature'][name])} | "
                     f"{pct(rep['x100_flagged_by_feature'][name])} | {rep['shift_curve'][name]['1']:.2f} "
                     f"({base['shift_curve'][name]['1']:.2f}) |")
    lines += ["", "## (b) volatility faults (report split)\n",
              "| fault | dataset alarm | mean features flagged | baseline dataset alarm |", "|---|---|---|---|"]
    for name, v in vol.items():
        lines.append(f"| {name} | {pct(v['dataset_alarm'])} | {v['mean_features_flagged']:.1f} | "
                     f"{pct(base['vol_faults'][name]['dataset_alarm'])} |")
    lines += ["", "x2 from the window start, by the window's own volatility before the fault (terciles of mean vol_20):", "",
              "| window | windows | mean vol_20 | dataset alarm |", "|---|---|---|---|"]
    for label, v in doc["vol_x2_by_tercile"].items():
        lines.append(f"| {label} | {v['windows']} | {v['mean_vol_20']:.4f} | {pct(v['dataset_alarm'])} |")
    c = doc["vol_ceiling"]
    lines += ["", f"Ceiling: over every alpha and rule tried, the best x2 alarm rate with <= 5% selection alarms is "
              f"{pct(c['vol_x2_alarm'])} (alpha {c.get('alpha')}, >= {c.get('min_features')} features, selection alarms "
              f"{pct(c.get('null_alarm', 0))}).", "",
              "## (b) whole-window mean shift: detection curve per feature\n",
              "Share of report windows in which the shifted feature is flagged (mean of +shift and -shift), "
              "`ours / baseline`.", "",
              "| feature | " + " | ".join(f"{s:g} std" for s in SHIFTS) + " |", "|---|" + "---|" * len(SHIFTS)]
    for name in FEATURES:
        cur, b = rep["shift_curve"][name], base["shift_curve"][name]
        lines.append(f"| {name} | " + " | ".join(f"{cur[f'{s:g}']:.2f} / {b[f'{s:g}']:.2f}" for s in SHIFTS) + " |")
    lines += ["", doc["shift_summary"]["text"], "",
              "## (b) onset: only the last sessions shifted\n",
              "Mean detection over shifts of " + ", ".join(f"{s:g}" for s in ONSET_SHIFTS) + " std (both signs), "
              "`ours / baseline`.", "",
              "| feature | " + " | ".join(f"last {n} sessions" for n in ONSET_SESSIONS) + " |",
              "|---|" + "---|" * len(ONSET_SESSIONS)]
    for name in FEATURES:
        cells = []
        for n in ONSET_SESSIONS:
            o = np.mean([rep["onset_curve"][name][f"{n}:{s:g}"] for s in ONSET_SHIFTS])
            b = np.mean([base["onset_curve"][name][f"{n}:{s:g}"] for s in ONSET_SHIFTS])
            cells.append(f"{o:.2f} / {b:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"All features: whole-window shifts {pct(rep['shift_power'])} vs {pct(base['shift_power'])}, "
              f"onsets {pct(rep['onset_power'])} vs {pct(base['onset_power'])} (ours vs baseline, at false-flag rates "
              f"{pct(rep['feature_flag_rate'])} vs {pct(base['feature_flag_rate'])}).", "",
              "## (c) replay 2005-2024, night by night\n",
              "Each month's nightly runs (the last 60 sessions) against a reference that ends before the month's "
              "first window: *expanding* = all rows since 1994 (a champion retrained on all history), *rolling* = the "
              f"previous 10 years. Months alarmed = the month's last run raises the dataset alarm; nights = share of "
              f"nightly runs alarmed; features = mean drifted features per night (of {len(FEATURES)}); persistent = "
              f"months in which {PERSISTENCE_K} consecutive nights alarmed.", "",
              "| year | expanding: months / nights / features / persistent | rolling 10y: months / nights / features / persistent |",
              "|---|---|---|"]
    exp, rol = doc["replay"]["expanding"]["per_year"], doc["replay"]["rolling_10y"]["per_year"]
    cell = lambda v: (f"{v['months_alarmed']} / {pct(v['nights_alarmed_share'])} / {v['mean_drifted_features']:.1f} / "  # noqa: E731
                      f"{v['months_with_persistent_alarm']}")
    for year in exp:
        lines.append(f"| {year} | {cell(exp[year])} | {cell(rol[year])} |")
    ag = doc["evidently_agreement"]
    lines += ["", doc["notes"]["replay"], "",
              "## Evidently agrees with the fast computation\n",
              f"{ag['dataset_verdicts_compared']} report windows x faults (clean, x100, +1 std, x2 regime change) re-run "
              "through `spywatch.drift.detect_drift` (an Evidently 0.7 `Report` of `DriftedColumnsCount` plus one "
              "`ValueDrift` per column, the metrics `DataDriftPreset` generates, with the JSON's per-column methods "
              f"and thresholds): {ag['agreeing']} of {ag['feature_verdicts_compared']} per-feature "
              f"verdicts agree ({pct(ag['agreement'])}), {ag['dataset_agreeing']} of {ag['dataset_verdicts_compared']} "
              f"dataset verdicts; worst relative score difference {ag['worst_relative_score_difference']:.1e}.", "",
              "Timing of one report with its HTML: `bench/results/drift_timing.md`.", "",
              "## Selection split: the alphas tried\n",
              "| alpha | rule (>= features) | selection alarms | feature flags | x2 regime alarm | whole-window | onset | objective |",
              "|---|---|---|---|---|---|---|---|"]
    for row in doc["alphas_tried"]:
        lines.append(f"| {row['alpha']} | {row['min_features']} | {pct(row['null_alarm'])} | {pct(row['feature_flag_rate'])} | "
                     f"{pct(row['vol_x2_alarm'])} | {pct(row['shift_power'])} | {pct(row['onset_power'])} | "
                     f"{row['objective']:.3f} |")
    lines += ["", "## Notes\n", doc["notes"]["method"], ""]
    return "\n".join(lines)


def shift_summary(rep: dict) -> dict:
    base = rep["baselines"]["issue_w95"]
    ours1 = {n: rep["shift_curve"][n]["1"] for n in FEATURES}
    base1 = {n: base["shift_curve"][n]["1"] for n in FEATURES}
    n90, b90 = [n for n, v in ours1.items() if v >= 0.9], [n for n, v in base1.items() if v >= 0.9]
    better = [n for n in FEATURES if ours1[n] > base1[n] + 0.02]
    worse = [n for n in FEATURES if ours1[n] < base1[n] - 0.02]
    text = (f"A 1-std shift is caught in >= 90% of report windows for {len(n90)} of {len(FEATURES)} features with the "
            f"chosen tests ({', '.join(n90) or 'none'}) and {len(b90)} with the baseline ({', '.join(b90) or 'none'}). "
            f"At 1 std the chosen tests do better on {', '.join(f'{n} ({ours1[n]:.2f} vs {base1[n]:.2f})' for n in better) or 'no feature'}"
            f" and worse on {', '.join(f'{n} ({ours1[n]:.2f} vs {base1[n]:.2f})' for n in worse) or 'no feature'}. "
            "Slow features stay hard for any method: their in-distribution windows already sit 1-2 std from the "
            "reference mean, so a 1-std shift hides inside the null.")
    return {"ours_90": n90, "baseline_90": b90, "better_at_1std": better, "worse_at_1std": worse, "text": text}


NOTES_METHOD = (
    "Methods considered: Evidently's normed Wasserstein (`wasserstein`), two-sample K-S (`ks`, p-value) and the "
    "pooled two-sample t-test (`t_test`, p-value); scores here reproduce Evidently's formulas exactly (Wasserstein "
    "normed by the reference's population std, floor 0.001; scipy's exact K-S p-value; pooled t). K-S wins many "
    "whole-window shifts (it is rank-based, so a skewed feature's compressed side counts as much as its long tail) "
    "but is bounded: once a window sits beyond the reference it scores no higher however far out it goes, so it "
    "catches onsets late and x100 only where values are far from zero; the onset grid and the x100 constraint "
    "keep it where it earns its place. t-test thresholds are p-values far below 0.05 (and K-S ones for slow "
    "features too) because in-distribution windows of slow features sit many standard errors from the reference "
    "mean; that is the calibration working. Left out: `anderson` (scipy caps its p-value at 0.001, which the slow "
    "features' null reaches), binned methods (`psi`, `jensenshannon`, `kl_div`, `hellinger`: bins depend on the "
    "current window), `mannw` (one-sided in Evidently), `empirical_mmd` (a permutation test, slow). The x2 "
    "regime-change target is not met and cannot be with per-feature marginal tests on this reference (see "
    "the ceiling above); the dataset rule is therefore a crisis detector (2008, 2020), and gradual regime "
    "changes show first as per-feature flags. The prediction-drift threshold (Wasserstein 0.5 per horizon) is "
    "not calibrated here (no champion predictions exist in this bench): a constant predictor scores about 0.8 "
    "(mean absolute deviation over std), a healthy spread one well below 0.5 in the unit tests.")


def vol_note(rep: dict, tercile: dict) -> str:
    v = rep["vol_faults"]
    return (
        "**Why doubling volatility is mostly not caught.** The reference (22 years) contains 1998, 2000-2002 and "
        "2008-2009, so a calm window with its moves doubled lands inside the range the model was trained on: a "
        "per-feature marginal test cannot tell it from an ordinary window, and thresholds low enough to catch it "
        "would alarm on the genuinely turbulent in-distribution windows, which (a) must leave quiet. Doubling a "
        f"turbulent window raises the alarm in {pct(tercile['turbulent']['dataset_alarm'])} of windows, a middle one "
        f"in {pct(tercile['middle']['dataset_alarm'])}, a calm one in {pct(tercile['calm']['dataset_alarm'])}; tripling "
        f"in {pct(v['vol_x3_at_start']['dataset_alarm'])} overall. What would catch it: a test on the joint "
        "distribution (e.g. a domain classifier) or a reference that excludes crisis years; neither is a per-feature "
        "Evidently test, so both are left as follow-ups.")


def replay_note(replays: dict) -> str:
    def alarmed(per_year: dict) -> str:
        years = [y for y, v in per_year.items() if v["nights_alarmed_share"] > 0]
        return ", ".join(f"{y} ({pct(per_year[y]['nights_alarmed_share'])} of nights)" for y in years) or "none"

    def busiest(per_year: dict) -> str:
        years = sorted(per_year, key=lambda y: -per_year[y]["mean_drifted_features"])[:4]
        return ", ".join(f"{y} ({per_year[y]['mean_drifted_features']:.1f})" for y in years)

    exp, rol = replays["expanding"]["per_year"], replays["rolling_10y"]["per_year"]
    return (f"Years with dataset alarms: expanding reference {alarmed(exp)}; rolling 10-year reference "
            f"{alarmed(rol)}. Most drifted features per night: expanding {busiest(exp)}; rolling {busiest(rol)}. "
            "2022 (a slow bear market with moderate volatility) shows in the per-feature flags (dist_sma_200, "
            "drawdown_252) against the rolling reference but stays under the dataset rule; against a reference "
            "that contains 2000-2002 and 2008 it is not out of distribution.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--thresholds", type=Path, default=THRESHOLDS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--agreement-windows", type=int, default=6)
    args = ap.parse_args()
    t0 = time.perf_counter()
    bars = read_bars_csv(args.data)
    features = compute_features(bars)
    years = held_out_years(features)
    print(f"scoring {sum(len(y.starts) for y in years)} windows ...", flush=True)
    scores = score_held_out(features, bars, years)
    ref_size = int(np.median(list(scores["ref_size"].values())))
    print(f"scored in {time.perf_counter() - t0:.0f} s; calibrating", flush=True)
    cal, tried = calibrate(scores, ref_size)
    thresholds = thresholds_document(cal, ref_size)
    # not atomic_write_json: it sorts keys, and the features should read in FEATURES order
    atomic_write_text(args.thresholds, json.dumps(thresholds, indent=2) + "\n")
    sel = scores["selection"]
    baselines = {"issue_w95": baseline(scores), "wasserstein_same_alpha": baseline(scores, cal.alpha)}
    report = evaluate(scores, cal, baselines, ~sel)
    window_vol = np.array([features["vol_20"].iloc[s:s + WINDOW].mean() for s in scores["start"]])
    tercile = alarm_by_vol_tercile(scores, cal, ~sel, window_vol)
    print("replaying 2005-2024 ...", flush=True)
    replays = {"expanding": replay(features, cal), "rolling_10y": replay(features, cal, reference_years=10)}
    print("Evidently agreement ...", flush=True)
    agreement = evidently_agreement(features, bars, scores, cal, args.thresholds, args.agreement_windows)
    doc = {"machine": machine(), "command": "python bench/drift_calibration.py " + " ".join(sys.argv[1:]),
           "thresholds": thresholds, "alphas_tried": tried, "selection_split": evaluate(scores, cal, baselines, sel),
           "report_split": report, "vol_x2_by_tercile": tercile, "vol_ceiling": vol_ceiling(scores, ref_size),
           "shift_summary": shift_summary(report), "replay": replays, "evidently_agreement": agreement,
           "notes": {"vol": vol_note(report, tercile), "method": NOTES_METHOD, "replay": replay_note(replays)}}
    doc["elapsed_s"] = time.perf_counter() - t0
    atomic_write_json(args.out.with_suffix(".json"), doc)
    atomic_write_text(args.out.with_suffix(".md"), markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
