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

The dataset alarm is the training rule (at least k features drifted against the training reference)
OR the regime rule: the window's volatility family against the ``recent`` sessions just before it
(at least k_r of the family drifted). Every window gets its own recent past (the sessions before it
in the real history; after a fault that began 252 sessions earlier, the faulted ones). Everything is
chosen on the selection split: the training tests per alpha as before, then the recent-past length,
the regime tests (method per feature, per-feature false-flag rate), the family, k_r and k jointly, for
the best selection-split x2 alarm with at most MAX_SELECTION_ALARMS of selection windows alarmed.

Scores are computed here with numpy/scipy using Evidently's own formulas (normed Wasserstein,
two-sample K-S, pooled t-test, scipy's one-sided Mann-Whitney U) because ~10^6 tests through
Evidently would take hours; a sample of windows is then re-run through ``spywatch.drift`` (real
Evidently) and the verdicts compared.

    .venv/bin/python bench/drift_calibration.py
writes src/spywatch/drift_thresholds.json and bench/results/drift_calibration.{md,json}
(about 100 s on 2 shared cores). The report's timing lives in bench/drift_timing.py.
The grids live in bench/drift_calibration_settings.py, the markdown report and its notes in
bench/drift_calibration_report.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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

from drift_calibration_report import NOTES_METHOD, markdown, replay_note, shift_summary, vol_note  # noqa: E402
from drift_calibration_settings import (  # noqa: E402
    REF_START, REF_END, WINDOW, STRIDE, HISTORY, SHIFTS, ONSET_SESSIONS, ONSET_SHIFTS, VOL_FAULTS, METHODS, ALPHAS,
    MAX_SELECTION_ALARMS, MIN_X100, BASELINE_QUANTILE, REPLAY_START, REPLAY_END, PERSISTENCE_K, PREDICTION,
    RECENT_CHOICES, RECENT_MAX, REGIME_FEATURES, REGIME_METHODS, REGIME_ALLOWED, REGIME_FAMILIES, REGIME_ALPHAS,
)
from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.features import FEATURES, compute_features  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402

DATA = REPO / "data" / "spy_daily.csv"
THRESHOLDS = REPO / "src" / "spywatch" / "drift_thresholds.json"
RESULTS = HERE / "results" / "drift_calibration"


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


def _ecdf_distances(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row by row (last axis): W1 = integral of |F_ref - F_cur| (what scipy's wasserstein_distance computes)
    and the K-S statistic max |F_ref - F_cur|, for a different reference in every row."""
    n, m = ref.shape[-1], cur.shape[-1]
    both = np.concatenate([ref, cur], axis=-1)
    order = np.argsort(both, axis=-1, kind="stable")
    v = np.take_along_axis(both, order, axis=-1)
    from_ref = order < n
    gap = np.cumsum(from_ref, axis=-1) / n - np.cumsum(~from_ref, axis=-1) / m
    w1 = (np.abs(gap[..., :-1]) * np.diff(v, axis=-1)).sum(axis=-1)
    # the ECDFs are only compared after the last of tied values
    last = np.concatenate([v[..., 1:] != v[..., :-1], np.ones(v.shape[:-1] + (1,), dtype=bool)], axis=-1)
    return w1, np.where(last, np.abs(gap), 0.0).max(axis=-1)


def regime_severity(method: str, ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Severity of each window (rows of ``cur``, (W, T)) against its own recent past (same row of ``ref``,
    (W, L)), as Evidently scores it: -log10 p for mannw (scipy's one-sided U test, current larger) and
    t_test (two-sided), the normed Wasserstein distance, the K-S statistic D."""
    if method == "mannw":
        p = stats.mannwhitneyu(ref, cur, alternative="less", axis=-1).pvalue
        return -np.log10(np.maximum(p, 1e-300))
    if method == "t_test":
        n, m = ref.shape[-1], cur.shape[-1]
        t = stats.ttest_ind(ref, cur, axis=-1).statistic
        return -(np.log(2.0) + stats.t.logsf(np.abs(t), n + m - 2)) / np.log(10.0)
    w1, d = _ecdf_distances(ref, cur)
    if method == "wasserstein":
        return w1 / np.maximum(ref.std(axis=-1), 0.001)
    if method == "ks":
        return d
    raise ValueError(f"no regime severity for method {method!r}")


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


def faulted_features(bars: pd.DataFrame, start: int, k: float, lead: int, recent: int = 0) -> np.ndarray:
    """Features of the window at ``start`` after a volatility fault, with the ``recent`` sessions before
    it (as the fault left them; NaN where history is too short); (recent + WINDOW, F)."""
    lo = max(0, start - HISTORY - recent)
    window_bars = bars.iloc[lo:start + WINDOW]
    fault_at = start - lo - lead
    out = compute_features(scale_moves(window_bars, fault_at, k)).to_numpy()[-(recent + WINDOW):]
    if len(out) < recent + WINDOW:
        out = np.concatenate([np.full((recent + WINDOW - len(out), out.shape[1]), np.nan), out])
    return out


# ----------------------------------------------------------------------------- scoring (a) and (b)


def score_held_out(features: pd.DataFrame, bars: pd.DataFrame, years: list[HeldOutYear]) -> dict:
    """Severities for every window, method and fault. Shapes: null/x100/vol (W, F, M); shift/onset (W, F, S, M);
    against the recent past ``regime[kind][L]`` (W, len(REGIME_FEATURES), len(REGIME_METHODS)) for the null
    and the volatility faults, NaN where a method does not apply or the window has fewer than L complete
    sessions before it (``has_recent[L]``)."""
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
    regime: dict[str, dict[int, list]] = {kind: {n: [] for n in RECENT_CHOICES} for kind in ("null", *VOL_FAULTS)}
    for held in years:
        ref_rows = in_ref & (idx.year != held.year)
        refs = [SortedReference(values[ref_rows, j]) for j in range(len(FEATURES))]
        win = np.stack([values[s:s + WINDOW] for s in held.starts])  # (W, T, F)
        # (W, RECENT_MAX, F): the sessions before each window (NaN before the first complete row)
        before = np.stack([np.concatenate([np.full((max(0, RECENT_MAX - s), values.shape[1]), np.nan),
                                           values[max(0, s - RECENT_MAX):s]]) for s in held.starts])
        with_recent = {name: np.stack([faulted_features(bars, s, k, lead, RECENT_MAX) for s in held.starts])
                       for name, (k, lead) in VOL_FAULTS.items()}  # (W, RECENT_MAX + T, F)
        vol = {name: v[:, -WINDOW:] for name, v in with_recent.items()}
        pairs = {"null": (before, win)} | {name: (v[:, :-WINDOW], v[:, -WINDOW:]) for name, v in with_recent.items()}
        for kind, (rec, cur) in pairs.items():
            for n in RECENT_CHOICES:
                regime[kind][n].append(score_regime(rec[:, -n:], cur))
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
    arrays["regime"] = {kind: {n: np.concatenate(v) for n, v in by_n.items()} for kind, by_n in regime.items()}
    arrays["has_recent"] = {n: np.isfinite(arrays["regime"]["null"][n]).any(axis=(1, 2)) for n in RECENT_CHOICES}
    arrays["selection"] = arrays["year"] % 2 == 0
    arrays["ref_size"] = {h.year: int((in_ref & (idx.year != h.year)).sum()) for h in years}
    return arrays


def score_regime(recent: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(W, L, F) recent pasts and (W, T, F) windows -> (W, len(REGIME_FEATURES), len(REGIME_METHODS)) severities;
    NaN for a method a feature does not use and for windows whose recent past is incomplete."""
    out = np.full((len(current), len(REGIME_FEATURES), len(REGIME_METHODS)), np.nan)
    ok = np.isfinite(recent).all(axis=(1, 2)) & np.isfinite(current).all(axis=(1, 2))
    if not ok.any():
        return out
    for i, name in enumerate(REGIME_FEATURES):
        j = FEATURES.index(name)
        for k, method in enumerate(REGIME_METHODS):
            if method in REGIME_ALLOWED[name]:
                out[ok, i, k] = regime_severity(method, recent[ok, :, j], current[ok, :, j])
    return out


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
    if method in ("t_test", "mannw"):
        return float(f"{10.0 ** -severity:.6g}")  # drifted when p < threshold
    return float(f"{ks_p_value(severity, ref_size, WINDOW):.6g}")  # ks: drifted when p <= threshold


def from_evidently(method: str, threshold: float, ref_size: int) -> float:
    if method == "wasserstein":
        return threshold
    if method in ("t_test", "mannw"):
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
class RegimeCalibration:
    """The regime check: recent-past length, the family's tests, how many of them must drift."""

    recent: int
    alpha: float
    family: str
    choices: list[Choice]  # the family's features, in REGIME_FEATURES order
    min_drifted: int


@dataclass(frozen=True)
class Calibration:
    alpha: float
    choices: list[Choice]
    min_features: int
    selection: dict  # the selection-split figures that chose it
    regime: RegimeCalibration | None = None


def regime_choices(scores: dict, recent: int, alpha: float) -> list[Choice]:
    """Per regime feature: the method that flags the x2 regime change most often on selection windows at a
    false-flag rate ``alpha`` against the recent past (selection windows that have ``recent`` sessions)."""
    sel = scores["selection"] & scores["has_recent"][recent]
    null, x2 = scores["regime"]["null"][recent], scores["regime"]["vol_x2_at_start"][recent]
    out = []
    for i, name in enumerate(REGIME_FEATURES):
        best = None
        for k, method in enumerate(REGIME_METHODS):
            if method not in REGIME_ALLOWED[name]:
                continue
            tau = severity_threshold(null[sel, i, k], alpha)
            power = float((x2[sel, i, k] >= tau).mean())
            if best is None or power > best[0] + 1e-9:
                best = (power, method, tau)
        _, method, tau = best
        evidently = to_evidently(method, tau, recent)
        out.append(Choice(name, method, from_evidently(method, evidently, recent), evidently))
    return out


def regime_flags(scores: dict, key: str, regime: RegimeCalibration) -> np.ndarray:
    """(W, family) flags against the recent past; False where a window has no full recent past."""
    sev = scores["regime"][key][regime.recent]
    cols = []
    for c in regime.choices:
        i, k = REGIME_FEATURES.index(c.feature), REGIME_METHODS.index(c.method)
        cols.append(np.nan_to_num(sev[:, i, k], nan=-np.inf) >= c.severity_threshold)
    return np.stack(cols, 1)


def regime_alarm(scores: dict, key: str, regime: RegimeCalibration | None) -> np.ndarray:
    if regime is None:
        return np.zeros(len(scores["year"]), dtype=bool)
    return regime_flags(scores, key, regime).sum(1) >= regime.min_drifted


def dataset_alarm(scores: dict, key: str, cal: Calibration) -> np.ndarray:
    """The dataset alarm per window: training rule OR regime rule."""
    return (flags(scores, key, cal.choices).sum(1) >= cal.min_features) | regime_alarm(scores, key, cal.regime)


def _union_rates(train_null: np.ndarray, train_x2: np.ndarray, regime_null: np.ndarray, regime_x2: np.ndarray,
                 train_k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union (training OR regime) alarm rates on null and x2 windows for every training k in ``train_k`` and
    regime k in 1..family; inputs are per-window drifted counts (training) and flags (regime, (W, family)).
    Returns two (len(train_k), family) arrays."""
    kt = train_k[:, None, None]
    kr = np.arange(1, regime_null.shape[1] + 1)[None, :, None]
    null = ((train_null[None, None, :] >= kt) | (regime_null.sum(1)[None, None, :] >= kr)).mean(-1)
    x2 = ((train_x2[None, None, :] >= kt) | (regime_x2.sum(1)[None, None, :] >= kr)).mean(-1)
    return null, x2


def calibrate(scores: dict, ref_size: int) -> tuple[Calibration, list[dict], list[dict], dict]:
    """Two steps, both on the selection split only.

    1. The training tests and rule, as before the regime check existed: per alpha, the method per feature
       (``choose``) and the fewest drifted features keeping selection alarms <= MAX_SELECTION_ALARMS; the
       alpha with the best mean of three detection rates (x2 regime change by this rule, whole-window
       shifts, onsets). The training rule stays what it was: the "inputs left the training range" alarm.
    2. The regime check added to it: over recent-past lengths, regime alphas (method per feature by
       ``regime_choices``), families and k_r, the best x2 alarm of the union (training OR regime) with the
       union still alarming <= MAX_SELECTION_ALARMS of selection windows.

    Also returns the ceiling: the best union x2 alarm any option (training alpha and k free too) reaches
    with <= 5% of selection windows alarmed."""
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
    train_null = flags(scores, "null", best.choices)[sel].sum(1)
    train_x2 = flags(scores, "vol_x2_at_start", best.choices)[sel].sum(1)
    options = [(n, a, regime_choices(scores, n, a)) for n in RECENT_CHOICES for a in REGIME_ALPHAS]
    regime_tried, chosen = [], None
    for n, a, rchoices in options:
        for family, cols in REGIME_FAMILIES.items():
            regime = RegimeCalibration(n, a, family, [c for c in rchoices if c.feature in cols], 1)
            rn = regime_flags(scores, "null", regime)[sel]
            rx = regime_flags(scores, "vol_x2_at_start", regime)[sel]
            null, x2 = _union_rates(train_null, train_x2, rn, rx, np.array([best.min_features]))
            ok = np.flatnonzero(null[0] <= MAX_SELECTION_ALARMS)
            if not len(ok):
                continue
            j = ok[np.argmax(x2[0, ok] - 1e-6 * null[0, ok])]  # ties: the quieter rule
            row = {"recent": n, "regime_alpha": a, "family": family, "regime_min_drifted": int(j + 1),
                   "methods": {c.feature: c.method for c in regime.choices},
                   "null_alarm": float(null[0, j]), "vol_x2_alarm": float(x2[0, j])}
            regime_tried.append(row)
            if chosen is None or row["vol_x2_alarm"] > chosen[0]["vol_x2_alarm"] + 1e-9:
                chosen = (row, RegimeCalibration(n, a, family, regime.choices, int(j + 1)))
    row, regime = chosen
    selection = best.selection | {"union_null_alarm": row["null_alarm"], "union_vol_x2_alarm": row["vol_x2_alarm"]}
    cal = Calibration(best.alpha, best.choices, best.min_features, selection, regime)
    return cal, tried, regime_tried, union_ceiling(scores, ref_size, options)


def union_ceiling(scores: dict, ref_size: int, options: list, limit: float = 0.05) -> dict:
    """The best union x2 alarm on selection windows over every training alpha and k, every regime option,
    with at most ``limit`` of selection windows alarmed: how far this family of rules goes on the fault."""
    sel = scores["selection"]
    best = {"vol_x2_alarm": 0.0}
    kt = np.arange(1, len(FEATURES) + 1)
    for alpha in ALPHAS:
        choices = choose(scores, alpha, ref_size)
        tn = flags(scores, "null", choices)[sel].sum(1)
        tx = flags(scores, "vol_x2_at_start", choices)[sel].sum(1)
        for n, a, rchoices in options:
            for family, cols in REGIME_FAMILIES.items():
                regime = RegimeCalibration(n, a, family, [c for c in rchoices if c.feature in cols], 1)
                null, x2 = _union_rates(tn, tx, regime_flags(scores, "null", regime)[sel],
                                        regime_flags(scores, "vol_x2_at_start", regime)[sel], kt)
                score = np.where(null <= limit, x2, -1.0)
                i, j = np.unravel_index(np.argmax(score), score.shape)
                if score[i, j] > best["vol_x2_alarm"]:
                    best = {"vol_x2_alarm": float(x2[i, j]), "null_alarm": float(null[i, j]), "alpha": alpha,
                            "min_features": int(kt[i]), "recent": n, "regime_alpha": a, "family": family,
                            "regime_min_drifted": int(j + 1)}
    return best


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


def _fault_figures(scores: dict, choices: list[Choice], split: np.ndarray, m: int,
                   regime: RegimeCalibration | None = None) -> dict:
    null = flags(scores, "null", choices)[split]
    x100 = flags(scores, "x100", choices)[split]
    counts = null.sum(1)
    regime_null = regime_alarm(scores, "null", regime)[split]
    out = {"dataset_alarm": float(((counts >= m) | regime_null).mean()),
           "training_alarm": float((counts >= m).mean()),
           "regime_alarm": float(regime_null.mean()),
           "feature_flag_rate": float(null.mean()),
           "feature_flag_rate_by_feature": dict(zip(FEATURES, null.mean(0).round(4).tolist())),
           "x100_flagged_by_feature": dict(zip(FEATURES, x100.mean(0).round(4).tolist())),
           "x100_flagged_all": float(x100.mean()),
           # the other features as they were, the scaled one as flagged under x100
           "x100_dataset_alarm": float((((counts[:, None] - null + x100) >= m) | regime_null[:, None]).mean()),
           "shift_power": float(flags(scores, "shift", choices)[split].mean()),
           "onset_power": float(flags(scores, "onset", choices)[split].mean()),
           "shift_curve": _curves(flags(scores, "shift", choices)[split], SHIFTS),
           "onset_curve": _curves(flags(scores, "onset", choices)[split], ONSET_SHIFTS, len(ONSET_SESSIONS)),
           "vol_faults": {}}
    for name in VOL_FAULTS:
        f = flags(scores, name, choices)[split]
        r = regime_alarm(scores, name, regime)[split]
        out["vol_faults"][name] = {"dataset_alarm": float(((f.sum(1) >= m) | r).mean()),
                                   "training_alarm": float((f.sum(1) >= m).mean()),
                                   "regime_alarm": float(r.mean()),
                                   "mean_features_flagged": float(f.sum(1).mean()),
                                   "flag_rate_by_feature": dict(zip(FEATURES, f.mean(0).round(3).tolist()))}
    if regime is not None:
        has = scores["has_recent"][regime.recent][split]
        rnull = regime_flags(scores, "null", regime)[split][has]
        out["regime_tests"] = {
            "windows_with_recent_past": int(has.sum()),
            "feature_flag_rate": float(rnull.mean()),
            "feature_flag_rate_by_feature": dict(zip((c.feature for c in regime.choices), rnull.mean(0).round(4).tolist())),
            "x2_flag_rate_by_feature": dict(zip((c.feature for c in regime.choices),
                                                regime_flags(scores, "vol_x2_at_start", regime)[split][has]
                                                .mean(0).round(4).tolist()))}
    return out


def evaluate(scores: dict, cal: Calibration, baselines: dict[str, list[Choice]], split: np.ndarray) -> dict:
    """Every figure of the report on the windows of ``split``, for the calibration and each baseline
    (baselines get the dataset rule that keeps their own selection-split alarms <= MAX_SELECTION_ALARMS)."""
    out = _fault_figures(scores, cal.choices, split, cal.min_features, cal.regime)
    out |= {"windows": int(split.sum()), "years": sorted({int(y) for y in scores["year"][split]})}
    out["baselines"] = {}
    for name, choices in baselines.items():
        m = min_drifted(flags(scores, "null", choices)[scores["selection"]].sum(1), MAX_SELECTION_ALARMS)
        out["baselines"][name] = _fault_figures(scores, choices, split, m) | {"min_features": m}
    return out


def alarm_by_vol_tercile(scores: dict, cal: Calibration, split: np.ndarray, window_vol: np.ndarray) -> dict:
    """The x2 regime change's alarm rate by the window's own volatility before the fault (terciles)."""
    f = dataset_alarm(scores, "vol_x2_at_start", cal)[split]
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
    retrained on all history) or that many years earlier (a rolling training period). The regime check of
    each night tests its window against the ``cal.regime.recent`` complete sessions before it.
    Returns per-year alarms (either rule, and each rule alone) and the monthly detail."""
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
        starts = np.searchsorted(pos_complete, ends) - WINDOW + 1  # window start, as an index into pos_complete
        for j, c in enumerate(cal.choices):
            ref = SortedReference(values[ref_rows, j])
            win = np.stack([values[pos_complete[s]:e + 1, j] for s, e in zip(starts, ends)])
            f = ref.severity(c.method, win) >= c.severity_threshold
            counts += f
            per_feature[j] = f[-1]
        training = counts >= cal.min_features
        regime = np.zeros(len(ends), dtype=bool)
        regime_month_end: list[str] = []
        regime_counts = np.zeros(len(ends), dtype=int)
        if cal.regime is not None:
            n = cal.regime.recent
            for c in cal.regime.choices:
                j = FEATURES.index(c.feature)
                win = np.stack([values[pos_complete[s:s + WINDOW], j] for s in starts])
                rec = np.stack([values[pos_complete[s - n:s], j] for s in starts])
                f = regime_severity(c.method, rec, win) >= c.severity_threshold
                regime_counts += f
                if f[-1]:
                    regime_month_end.append(c.feature)
            regime = regime_counts >= cal.regime.min_drifted
        alarms = training | regime
        nightly.extend(zip(idx[ends], alarms, counts, training, regime, regime_counts))
        monthly.append({"month": str(month), "alarm_month_end": bool(alarms[-1]),
                        "nights": int(len(alarms)), "nights_alarmed": int(alarms.sum()),
                        "nights_training_alarm": int(training.sum()), "nights_regime_alarm": int(regime.sum()),
                        "drifted_month_end": [n for n, f in zip(FEATURES, per_feature) if f],
                        "regime_drifted_month_end": regime_month_end,
                        "reference_end": idx[ref_rows][-1].date().isoformat()})
    nights = pd.Series([r[1] for r in nightly], index=[r[0] for r in nightly])
    drifted = pd.Series([r[2] for r in nightly], index=nights.index)
    training_nights = pd.Series([r[3] for r in nightly], index=nights.index)
    regime_nights = pd.Series([r[4] for r in nightly], index=nights.index)
    regime_drifted = pd.Series([r[5] for r in nightly], index=nights.index)
    persistent = nights.astype(int).rolling(PERSISTENCE_K).sum() >= PERSISTENCE_K
    per_year = {}
    for year in range(pd.Timestamp(REPLAY_START).year, pd.Timestamp(REPLAY_END).year + 1):
        rows = [m for m in monthly if m["month"].startswith(str(year))]
        in_year = nights.index.year == year
        per_year[year] = {"months_alarmed": sum(m["alarm_month_end"] for m in rows),
                          "nights_alarmed_share": float(nights[in_year].mean()),
                          "training_nights_share": float(training_nights[in_year].mean()),
                          "regime_nights_share": float(regime_nights[in_year].mean()),
                          "mean_drifted_features": float(drifted[in_year].mean()),
                          "mean_regime_drifted_features": float(regime_drifted[in_year].mean()),
                          "months_with_persistent_alarm": int(
                              persistent[in_year].groupby(nights.index[in_year].month).any().sum())}
    return {"per_year": per_year, "monthly": monthly}


def vol_ceiling(scores: dict, ref_size: int, limit: float = 0.05) -> dict:
    """The training rule alone: the best x2-regime-change alarm rate any (alpha, min features) reaches on
    selection windows while keeping selection alarms <= ``limit`` (how far tests against the training
    reference alone go on this fault)."""
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
                  "drifted when the normed distance >= threshold; ks / t_test / mannw: drifted when the p-value "
                  "is below threshold (mannw is one-sided: current larger than reference). regime: the same "
                  "window against the recent_sessions sessions just before it; the dataset drifts when the "
                  "training rule or the regime rule fires."),
        "window": WINDOW,
        "calibrated_reference": {"start": REF_START, "end": REF_END, "rows_typical": ref_size},
        "per_feature_false_flag_rate": cal.alpha,
        "dataset_rule": {"min_drifted_features": cal.min_features,
                         "drift_share": round((cal.min_features - 0.5) / len(FEATURES), 4),
                         "persistence_k": PERSISTENCE_K},
        "features": {c.feature: {"method": c.method, "threshold": c.evidently_threshold} for c in cal.choices},
        "prediction": dict(PREDICTION),
        "regime": None if cal.regime is None else {
            "recent_sessions": cal.regime.recent,
            "family": cal.regime.family,
            "per_feature_false_flag_rate": cal.regime.alpha,
            "dataset_rule": {"min_drifted_features": cal.regime.min_drifted,
                             "drift_share": round((cal.regime.min_drifted - 0.5) / len(cal.regime.choices), 4)},
            "features": {c.feature: {"method": c.method, "threshold": c.evidently_threshold}
                         for c in cal.regime.choices}},
        "selection_split": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in cal.selection.items()},
    }


def _evidently_score(method: str, severity: float, ref_size: int) -> float:
    if method == "wasserstein":
        return severity
    if method in ("t_test", "mannw"):
        return 10.0 ** -severity
    return ks_p_value(severity, ref_size, WINDOW)


def evidently_agreement(features: pd.DataFrame, bars: pd.DataFrame, scores: dict, cal: Calibration,
                        config_path: Path, n_windows: int) -> dict:
    """Re-run a sample of report windows (clean, one feature x100, one feature +1 std, x2 regime change)
    through spywatch.drift with real Evidently, with their recent past; compare per-feature verdicts and
    scores of both comparisons, and the dataset verdicts."""
    from spywatch.drift import detect_drift
    from spywatch.drift_config import DriftConfig

    config = DriftConfig.load(config_path)
    idx = features.index
    complete = features.notna().all(axis=1).to_numpy()
    has = scores["has_recent"][cal.regime.recent] if cal.regime is not None else np.ones(len(scores["year"]), bool)
    report = np.flatnonzero(~scores["selection"] & has)
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
        n_recent = cal.regime.recent if cal.regime is not None else 0
        recent = features.iloc[start - n_recent:start][list(FEATURES)]
        faulted = faulted_features(bars, start, 2.0, 0, n_recent)
        regime = pd.DataFrame(faulted[-WINDOW:], index=clean.index, columns=list(FEATURES))
        regime_recent = pd.DataFrame(faulted[:-WINDOW], index=recent.index, columns=list(FEATURES))
        for kind, current, before in (("clean", clean, recent), ("x100", wrong_scale, recent),
                                      ("shift+1std", shifted, recent), ("vol_x2", regime, regime_recent)):
            result = detect_drift(reference, current, config, recent=before if cal.regime is not None else None)
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
            fast_regime = 0
            for c in (cal.regime.choices if cal.regime is not None else []):
                sev = float(regime_severity(c.method, before[c.feature].to_numpy()[None, :],
                                            current[c.feature].to_numpy()[None, :])[0])
                fast = bool(sev >= c.severity_threshold)
                fast_regime += fast
                ev = result.regime.per_feature[c.feature]
                agree += int(fast == ev.drifted)
                total += 1
                expected = _evidently_score(c.method, sev, len(before))
                if expected > 0:
                    worst_rel = max(worst_rel, abs(ev.score - expected) / expected)
            fast_alarm = fast_count >= cal.min_features or (cal.regime is not None
                                                            and fast_regime >= cal.regime.min_drifted)
            dataset_agree += int(fast_alarm == result.dataset_drift)
            cases.append({"held_out_year": year, "window_start": idx[start].date().isoformat(), "fault": kind,
                          "feature": name if kind in ("x100", "shift+1std") else None,
                          "evidently_n_drifted": result.n_drifted, "fast_n_drifted": fast_count,
                          "evidently_regime_n_drifted": result.regime.n_drifted if result.regime else None,
                          "fast_regime_n_drifted": fast_regime,
                          "evidently_dataset_drift": result.dataset_drift, "fast_dataset_drift": fast_alarm})
    return {"feature_verdicts_compared": total, "agreeing": agree, "agreement": agree / total,
            "dataset_verdicts_compared": len(cases), "dataset_agreeing": dataset_agree,
            "worst_relative_score_difference": worst_rel, "cases": cases}


def natural_vol_ratio(features: pd.DataFrame, scores: dict, split: np.ndarray, recent: int = 250) -> dict:
    """How often real windows change their volatility as much as the x2 fault: the ratio of ret_1's standard
    deviation in the window to that of the ``recent`` sessions before it, over the windows of ``split``. The x2
    fault multiplies each window's ratio by exactly 2, so a rule that alarms on at most q of real windows can only
    catch the doubled ones whose own ratio exceeded half the real windows' (1 - q) quantile."""
    r1 = features["ret_1"].to_numpy()
    ok = scores["has_recent"][recent][split]
    starts, years = scores["start"][split][ok].astype(int), scores["year"][split][ok]
    ratio = np.array([r1[s:s + WINDOW].std() / r1[s - recent:s].std() for s in starts])
    q97 = float(np.quantile(ratio, 1 - MAX_SELECTION_ALARMS))
    return {"recent": recent, "windows": len(ratio),
            "quantiles": {f"q{q:g}": float(np.quantile(ratio, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95, 0.97, 0.99)},
            "share_at_least_1.75": float((ratio >= 1.75).mean()), "share_at_least_2": float((ratio >= 2.0).mean()),
            "years_at_least_1.75": sorted({int(y) for y, r in zip(years, ratio) if r >= 1.75}),
            "doubled_beyond_real_q97": float((2 * ratio > q97).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--thresholds", type=Path, default=THRESHOLDS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--agreement-windows", type=int, default=6)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    bars = read_bars_csv(args.data)
    features = compute_features(bars)
    years = held_out_years(features)
    print(f"scoring {sum(len(y.starts) for y in years)} windows ...", flush=True)
    scores = score_held_out(features, bars, years)
    ref_size = int(np.median(list(scores["ref_size"].values())))
    print(f"scored in {time.perf_counter() - t0:.0f} s; calibrating", flush=True)
    cal, tried, regime_tried, union_ceiling_ = calibrate(scores, ref_size)
    thresholds = thresholds_document(cal, ref_size)
    # not atomic_write_json: it sorts keys, and the features should read in FEATURES order
    atomic_write_text(args.thresholds, json.dumps(thresholds, indent=2) + "\n")
    sel = scores["selection"]
    baselines = {"issue_w95": baseline(scores), "wasserstein_same_alpha": baseline(scores, cal.alpha)}
    report = evaluate(scores, cal, baselines, ~sel)
    window_vol = np.array([features["vol_20"].iloc[s:s + WINDOW].mean() for s in scores["start"]])
    tercile = alarm_by_vol_tercile(scores, cal, ~sel, window_vol)
    ratio = natural_vol_ratio(features, scores, ~sel)
    print("replaying 2005-2024 ...", flush=True)
    replays = {"expanding": replay(features, cal), "rolling_10y": replay(features, cal, reference_years=10)}
    print("Evidently agreement ...", flush=True)
    agreement = evidently_agreement(features, bars, scores, cal, args.thresholds, args.agreement_windows)
    doc = {"machine": machine(), "command": "python bench/drift_calibration.py " + " ".join(sys.argv[1:]),
           "thresholds": thresholds, "alphas_tried": tried, "regime_options_tried": regime_tried,
           "selection_split": evaluate(scores, cal, baselines, sel),
           "report_split": report, "vol_x2_by_tercile": tercile, "vol_ceiling": vol_ceiling(scores, ref_size),
           "union_ceiling": union_ceiling_, "natural_vol_ratio": ratio,
           "shift_summary": shift_summary(report), "replay": replays, "evidently_agreement": agreement,
           "notes": {"vol": vol_note(report, tercile, union_ceiling_, ratio), "method": NOTES_METHOD,
                     "replay": replay_note(replays)}}
    doc["elapsed_s"] = time.perf_counter() - t0
    doc["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    atomic_write_json(args.out.with_suffix(".json"), doc)
    atomic_write_text(args.out.with_suffix(".md"), markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
