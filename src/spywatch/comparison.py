"""Paired comparisons of two forecasters on the same sessions, with their uncertainty.

Every number that decides something (a promotion, "better than the Random Forest") is a
difference between two models scored on the *same* sessions. Labels overlap in time (y_h at t
reads closes up to t+h) and market regimes cluster, so sessions are not independent: the
interval comes from a circular block bootstrap over sessions, with blocks at least as long as
the longest horizon. Both models are re-scored on each resample (paired), so what they share
(an easy or a hard stretch of market) cancels out of the difference.

The AUC of every resample is computed from one sort of the predictions and per-session weights
(the resample's multiplicities), so 2,000 resamples of 250 sessions x 3 horizons x 2 models take
a few hundredths of a second.

Besides ``compare`` (a typed verdict, for the gate and the evaluation), one model's AUC or Brier
score with its interval and the paired differences as plain records (``auc_interval``,
``brier_interval``, ``paired_auc``, ``paired_brier``), for the backfill's tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

METRICS = ("mean_auc", "log_loss")


@dataclass(frozen=True)
class BootstrapConfig:
    """How the interval is drawn."""

    n_boot: int = 2000
    block: int = 10  # sessions per block; at least the longest horizon (labels overlap that long)
    level: float = 0.90  # two-sided; its lower bound is a one-sided (1 + level) / 2 bound
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 100:
            raise ValueError(f"n_boot must be >= 100 for a usable interval, got {self.n_boot}")
        if self.block < 1:
            raise ValueError(f"block must be >= 1 session, got {self.block}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level}")

    def enough(self, n: int) -> bool:
        """``n`` sessions hold two blocks: fewer give no usable interval."""
        return n >= 2 * self.block

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """``a`` minus ``b`` on the same sessions: the estimate, its interval and P(a better).

    For ``mean_auc`` higher is better and the difference is AUC(a) - AUC(b), averaged over the
    horizons that have both classes. For ``log_loss`` lower is better and the difference is
    reported as log loss(b) - log loss(a), so that for both metrics a positive estimate favours a.
    """

    metric: str
    a: str  # e.g. "challenger"
    b: str  # e.g. "champion"
    estimate: float  # on all sessions
    ci_low: float
    ci_high: float
    p_a_better: float  # share of resamples in which a is better
    a_value: float
    b_value: float
    by_horizon: dict[str, dict[str, float]]  # horizon -> {"a", "b", "diff"}
    n_sessions: int
    span: list[str]  # [first, last] session (ISO dates)
    bootstrap: BootstrapConfig
    skipped_horizons: list[str] = field(default_factory=list)  # one class only: no AUC
    resamples: int | None = None  # resamples behind the interval: n_boot less those with no horizon of both classes

    @property
    def significant(self) -> bool:
        """a is better at the interval's level (its lower bound is above zero)."""
        return self.ci_low > 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["significant"] = self.significant
        return out

    def describe(self) -> str:
        pct = round(100 * self.bootstrap.level)
        what = "mean AUC" if self.metric == "mean_auc" else "log loss (b - a)"
        return (f"{self.a} - {self.b} {what} {self.estimate:+.4f} [{pct}% CI {self.ci_low:+.4f}, "
                f"{self.ci_high:+.4f}], P({self.a} better) {self.p_a_better:.2f}, {self.n_sessions} sessions "
                f"{self.span[0]}..{self.span[1]}, blocks of {self.bootstrap.block}")


# ----------------------------------------------------------------------------- resampling


def block_weights(n: int, config: BootstrapConfig) -> np.ndarray:
    """(n_boot, n) multiplicities of each session in circular block-bootstrap resamples of length n."""
    if n < 2:
        raise ValueError(f"need at least 2 sessions to resample, got {n}")
    rng = np.random.default_rng(config.seed)
    block = min(config.block, n)
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(config.n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(config.n_boot, -1)[:, :n] % n
    weights = np.zeros((config.n_boot, n))
    np.add.at(weights, (np.arange(config.n_boot)[:, None], idx), 1.0)
    return weights


def resampled_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean of per-session ``values`` (n,) in each resample of ``weights`` (B, n) -> (B,)."""
    return weights @ values / weights.sum(axis=1)


def complete_rows(*arrays: np.ndarray) -> np.ndarray:
    """(n,) True for the sessions where none of ``arrays`` ((n,) or (n, H)) has a NaN."""
    return ~np.logical_or.reduce([np.isnan(a) if a.ndim == 1 else np.isnan(a).any(axis=1) for a in arrays])


def weighted_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``p`` for labels ``y`` (n,) under each row of ``weights`` (B, n); ties count one half.

    NaN where a row has no positive or no negative weight.
    """
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    order = np.argsort(p, kind="mergesort")
    p_sorted, y_sorted, w = p[order], y[order], np.atleast_2d(weights)[:, order]
    starts = np.flatnonzero(np.r_[True, np.diff(p_sorted) != 0])  # tie groups are contiguous after the sort
    neg = np.add.reduceat(w * (y_sorted == 0), starts, axis=1)  # (B, G)
    pos = np.add.reduceat(w * (y_sorted == 1), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def session_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-session binary log loss, (n, H) -> (n, H); NaN where the label is missing."""
    p = np.clip(np.asarray(p, dtype="float64"), 1e-6, 1 - 1e-6)
    y = np.asarray(y, dtype="float64")
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


# ----------------------------------------------------------------------------- the comparison


def compare(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, horizons: list[str], dates=None,
            metric: str = "mean_auc", config: BootstrapConfig = BootstrapConfig(), a: str = "a",
            b: str = "b") -> PairedComparison:
    """Paired block-bootstrap comparison of two models' probabilities on the same sessions.

    Args:
        y: (n, H) labels (0/1; NaN rows are dropped: every horizon must have matured).
        p_a, p_b: (n, H) probabilities of the two models for the same sessions.
        horizons: H names.
        dates: n session dates (for the recorded span), or None.
        metric: "mean_auc" or "log_loss".
    Raises:
        ValueError: shapes disagree, too few sessions, or no horizon has both classes.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {METRICS}")
    y, p_a, p_b = (np.asarray(v, dtype="float64") for v in (y, p_a, p_b))
    if y.ndim != 2 or y.shape != p_a.shape or y.shape != p_b.shape or y.shape[1] != len(horizons):
        raise ValueError(f"y {y.shape}, p_a {p_a.shape}, p_b {p_b.shape} and horizons {horizons} disagree")
    keep = complete_rows(y, p_a, p_b)
    y, p_a, p_b = y[keep], p_a[keep], p_b[keep]
    n = len(y)
    if not config.enough(n):
        raise ValueError(f"{n} labelled sessions are too few for blocks of {config.block} sessions")
    span = ["", ""]
    if dates is not None:
        kept = np.asarray(dates)[keep]
        span = [_iso(kept[0]), _iso(kept[-1])]
    weights = block_weights(n, config)
    full = np.ones((1, n))
    usable = [j for j in range(len(horizons)) if 0 < y[:, j].sum() < n]
    skipped = [horizons[j] for j in range(len(horizons)) if j not in usable]
    if not usable:
        raise ValueError(f"no horizon has both classes in the {n} sessions: nothing to compare")
    by_h: dict[str, dict[str, float]] = {}
    diffs, a_vals, b_vals = [], [], []
    for j in usable:
        if metric == "mean_auc":
            fa, fb = weighted_auc(y[:, j], p_a[:, j], full)[0], weighted_auc(y[:, j], p_b[:, j], full)[0]
            da = weighted_auc(y[:, j], p_a[:, j], weights) - weighted_auc(y[:, j], p_b[:, j], weights)
            d_full = fa - fb
        else:
            la, lb = session_log_loss(y[:, j], p_a[:, j]), session_log_loss(y[:, j], p_b[:, j])
            fa, fb = float(la.mean()), float(lb.mean())
            da = resampled_mean(lb - la, weights)
            d_full = fb - fa
        by_h[horizons[j]] = {"a": float(fa), "b": float(fb), "diff": float(d_full)}
        diffs.append(da)
        a_vals.append(fa)
        b_vals.append(fb)
    # Mean over the horizons with both classes in each resample; a resample in which no horizon
    # has both classes (short spans, rare positives) has no difference and is left out, counted.
    stack = np.vstack(diffs)
    finite = np.isfinite(stack)
    counts = finite.sum(axis=0)
    boot = np.where(finite, stack, 0.0).sum(axis=0)[counts > 0] / counts[counts > 0]
    low, high = interval(boot, config.level)
    return PairedComparison(metric=metric, a=a, b=b, estimate=float(np.mean([v["diff"] for v in by_h.values()])),
                            ci_low=float(low), ci_high=float(high), p_a_better=float((boot > 0).mean()),
                            a_value=float(np.mean(a_vals)), b_value=float(np.mean(b_vals)), by_horizon=by_h,
                            n_sessions=n, span=span, bootstrap=config, skipped_horizons=skipped,
                            resamples=int(len(boot)))


def paired_auc(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, horizons: list[str], dates,
               config: BootstrapConfig) -> dict | None:
    """``compare`` of a - b mean AUC as a record, or None where it has too few labelled sessions or
    no horizon with both classes to say anything. ``y``, ``p_a``, ``p_b``: (n,) or (n, H)."""
    y, p_a, p_b = (np.asarray(v, dtype="float64").reshape(len(v), -1) for v in (y, p_a, p_b))
    ok = complete_rows(y, p_a, p_b)
    n = int(ok.sum())
    if not config.enough(n) or not any(0 < y[ok, j].sum() < n for j in range(y.shape[1])):
        return None
    c = compare(y, p_a, p_b, horizons, dates, "mean_auc", config)
    return {"estimate": c.estimate, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_a_better": c.p_a_better,
            "a": c.a_value, "b": c.b_value, "n": c.n_sessions, "span": c.span}


def paired_brier(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, config: BootstrapConfig) -> dict | None:
    """Brier(b) - Brier(a) on the same sessions of one horizon (positive favours a), its interval
    and P(a better); None with fewer than two blocks of labelled sessions."""
    y, p_a, p_b = (np.asarray(v, dtype="float64") for v in (y, p_a, p_b))
    ok = complete_rows(y, p_a, p_b)
    diff = (y[ok] - p_b[ok]) ** 2 - (y[ok] - p_a[ok]) ** 2
    if not config.enough(len(diff)):
        return None
    boot = resampled_mean(diff, block_weights(len(diff), config))
    low, high = interval(boot, config.level)
    return {"estimate": float(diff.mean()), "ci_low": low, "ci_high": high, "p_a_better": float((boot > 0).mean()),
            "n": int(len(diff))}


# ----------------------------------------------------------------------------- one model


def auc_interval(y: np.ndarray, p: np.ndarray, config: BootstrapConfig = BootstrapConfig()) -> dict:
    """One model's AUC on one horizon with its block-bootstrap interval (NaN labels dropped)."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    ok = complete_rows(y, p)
    y, p = y[ok], p[ok]
    if not config.enough(len(y)) or not 0 < y.sum() < len(y):
        return {"auc": None, "ci": None, "n": int(len(y))}
    low, high = interval(weighted_auc(y, p, block_weights(len(y), config)), config.level)
    return {"auc": float(weighted_auc(y, p, np.ones((1, len(y))))[0]), "ci": [low, high],
            "n": int(len(y))}


def brier_interval(y: np.ndarray, p: np.ndarray, config: BootstrapConfig = BootstrapConfig()) -> dict:
    """One model's Brier score on one horizon with its block-bootstrap interval (NaN labels dropped)."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    ok = complete_rows(y, p)
    loss = (y[ok] - p[ok]) ** 2
    if not config.enough(len(loss)):
        return {"brier": None, "ci": None, "n": int(len(loss))}
    low, high = interval(resampled_mean(loss, block_weights(len(loss), config)), config.level)
    return {"brier": float(loss.mean()), "ci": [low, high], "n": int(len(loss))}


def labelled_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """One model's AUC on the sessions with a label (``audit.horizon_metrics``), to 4 places; None
    with fewer than 10 labels or one class only. No interval: for short, published series."""
    from spywatch.audit import horizon_metrics

    ok = ~np.isnan(y)
    if ok.sum() < 10 or not 0 < y[ok].sum() < ok.sum():
        return None
    return round(horizon_metrics(y[ok], p[ok])["auc"], 4)


# ----------------------------------------------------------------------------- reading an interval


def side_of_zero(ci_low: float, ci_high: float) -> str:
    """Where a difference's interval lies against 0: "above", "below" or "holds" (0 inside it)."""
    if ci_low > 0:
        return "above"
    if ci_high < 0:
        return "below"
    return "holds"


def interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    """The two-sided percentile interval at ``level`` of the finite bootstrap values."""
    alpha = (1 - level) / 2
    low, high = np.quantile(boot[np.isfinite(boot)], [alpha, 1 - alpha])
    return float(low), float(high)


def _iso(value) -> str:
    import pandas as pd

    return pd.Timestamp(value).date().isoformat()
