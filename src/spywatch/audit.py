"""The audit: per-horizon metrics, and the collapse check with its evidence and probable cause.

The collapse check looks for what the original failure showed: the same probability for every
day (spread below a floor, mean at the class prior, AUC ~0.5), uniform attention, zero
variance of the representation between samples, and inputs far outside the training range.
When it finds collapse it names the probable cause in the order the original audit reached
it: feature shift, positional encoding dominating, degenerate attention, class imbalance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

HEALTHY, COLLAPSED, OUT_OF_RANGE = "healthy", "collapsed", "inputs_out_of_range"


# ----------------------------------------------------------------------------- metrics


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def horizon_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, PR-AUC, Brier, log loss, ECE, base rate, mean and std of predictions for one horizon."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), 1e-6, 1 - 1e-6)
    if not np.isfinite(p).all():  # a diverged model: nothing to score, and nothing raised here
        nan = float("nan")
        return {"n": int(len(y)), "base_rate": float(y.mean()) if len(y) else nan, "auc": nan, "pr_auc": nan,
                "brier": nan, "log_loss": nan, "ece": nan, "pred_mean": nan, "pred_std": nan}
    both = 0 < y.sum() < len(y)
    return {
        "n": int(len(y)),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, p) if len(y) else float("nan"),
        "pred_mean": float(p.mean()) if len(p) else float("nan"),
        "pred_std": float(p.std()) if len(p) else float("nan"),
    }


def metrics_by_horizon(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """y, p: (N, H); labels that have not matured (NaN) are left out per horizon."""
    out = {}
    for j, name in enumerate(names):
        ok = ~np.isnan(y[:, j])
        out[name] = horizon_metrics(y[ok, j], p[ok, j])
    return out


# ----------------------------------------------------------------------------- collapse check


@dataclass(frozen=True)
class CollapsePolicy:
    min_pred_std: float = 0.005  # probabilities spread less than this are "the same for every day"
    prior_tolerance: float = 0.03  # |mean prediction - training prior| for "sits at the prior"
    chance_auc_band: float = 0.03  # |AUC - 0.5| below this is chance
    min_representation_std: float = 1e-3  # pooled vectors that no longer differ between samples
    max_attention_entropy_ratio: float = 0.995  # 1.0 = perfectly uniform attention
    max_pos_to_content_ratio: float = 1.0  # position louder than the content it is added to
    max_feature_shift_std: float = 3.0  # mean of a feature over the window, in training std
    imbalance_rate: float = 0.2  # a horizon with positives below this rate invites prior collapse


@dataclass(frozen=True)
class CollapseEvidence:
    """Everything the check looked at; numbers only, JSON-ready."""

    pred_std: dict[str, float]
    pred_mean: dict[str, float]
    prior: dict[str, float]
    auc: dict[str, float | None]
    attention_entropy_ratio: float | None = None
    representation_std: float | None = None
    pos_to_content_ratio: float | None = None
    feature_shift_std: dict[str, float] = field(default_factory=dict)
    auc_sessions: dict[str, int] = field(default_factory=dict)  # the matured sessions each AUC is on


@dataclass(frozen=True)
class CollapseVerdict:
    verdict: str  # healthy | collapsed | inputs_out_of_range
    collapsed: bool
    collapsed_horizons: list[str]
    cause: str | None  # the first probable cause, in the order of the original audit
    causes: list[str]
    findings: list[str]  # one sentence per signal that fired, with its numbers
    evidence: CollapseEvidence

    @property
    def healthy(self) -> bool:
        return self.verdict == HEALTHY

    def to_dict(self) -> dict:
        return asdict(self)


def check_collapse(proba: np.ndarray, horizons: list[str], prior: np.ndarray, y: np.ndarray | None = None,
                   attention_entropy_ratio: float | None = None, representation_std: float | None = None,
                   pos_to_content_ratio: float | None = None, feature_shift_std: dict[str, float] | None = None,
                   policy: CollapsePolicy = CollapsePolicy()) -> CollapseVerdict:
    """Verdict on a model's predictions over a window.

    Args:
        proba: (N, H) predicted probabilities.
        horizons: H names, e.g. ["h1", "h3", "h5"].
        prior: (H,) training positive rates (the class prior a collapsed model sits at).
        y: (N, H) labels where matured (NaN otherwise), or None when none have matured.
        feature_shift_std: mean of each input over the window in training-std units.
    """
    if proba.ndim != 2 or proba.shape[1] != len(horizons) or len(prior) != len(horizons):
        raise ValueError(f"proba {proba.shape}, horizons {horizons}, prior {np.shape(prior)} disagree")
    if len(proba) < 2:
        raise ValueError(f"need at least 2 predictions to judge their spread, got {len(proba)}")
    shift = dict(feature_shift_std or {})
    std = {h: float(proba[:, j].std()) for j, h in enumerate(horizons)}
    mean = {h: float(proba[:, j].mean()) for j, h in enumerate(horizons)}
    pri = {h: float(prior[j]) for j, h in enumerate(horizons)}
    auc: dict[str, float | None] = {h: None for h in horizons}
    auc_sessions: dict[str, int] = {}
    if y is not None:
        for j, h in enumerate(horizons):
            ok = ~np.isnan(y[:, j])
            if ok.sum() > 10 and 0 < y[ok, j].sum() < ok.sum():
                auc[h] = horizon_metrics(y[ok, j], proba[ok, j])["auc"]
                auc_sessions[h] = int(ok.sum())
    evidence = CollapseEvidence(std, mean, pri, auc, attention_entropy_ratio, representation_std,
                                pos_to_content_ratio, shift, auc_sessions)

    findings: list[str] = []
    collapsed_h = []
    for h in horizons:
        flat = std[h] < policy.min_pred_std
        at_prior = abs(mean[h] - pri[h]) < policy.prior_tolerance
        chance = auc[h] is not None and abs(auc[h] - 0.5) < policy.chance_auc_band
        if flat or (at_prior and chance and std[h] < 2 * policy.min_pred_std):
            collapsed_h.append(h)
            findings.append(f"{h}: prediction std {std[h]:.4f} < floor {policy.min_pred_std}"
                            f"{f', mean {mean[h]:.3f} at prior {pri[h]:.3f}' if at_prior else ''}"
                            f"{f', AUC {auc[h]:.3f} ~ chance' if chance else ''}")
    rep_dead = representation_std is not None and representation_std < policy.min_representation_std
    if rep_dead:
        findings.append(f"representation std across samples {representation_std:.2e} < {policy.min_representation_std}")
    collapsed = bool(collapsed_h) or rep_dead

    out_of_range = {k: v for k, v in shift.items() if abs(v) > policy.max_feature_shift_std}
    if out_of_range:
        worst = sorted(out_of_range.items(), key=lambda kv: -abs(kv[1]))
        findings.append("inputs outside the training range: " +
                        ", ".join(f"{k} {v:+.1f} std" for k, v in worst))
    pos_dominates = pos_to_content_ratio is not None and pos_to_content_ratio > policy.max_pos_to_content_ratio
    uniform_attention = (attention_entropy_ratio is not None
                         and attention_entropy_ratio > policy.max_attention_entropy_ratio)
    imbalanced = [h for h in collapsed_h if min(pri[h], 1 - pri[h]) < policy.imbalance_rate]

    causes: list[str] = []
    if out_of_range:
        causes.append("feature_shift")
    if collapsed or out_of_range:
        if pos_dominates:
            causes.append("positional_encoding_dominates")
            findings.append(f"positional encoding / patch embedding norm ratio {pos_to_content_ratio:.2f} "
                            f"> {policy.max_pos_to_content_ratio}")
        if uniform_attention:
            causes.append("degenerate_attention")
            findings.append(f"attention entropy ratio {attention_entropy_ratio:.4f} "
                            f"> {policy.max_attention_entropy_ratio} (uniform attention)")
        if imbalanced:
            causes.append("class_imbalance")
            findings.append(f"collapsed horizon(s) {imbalanced} have positive rates below {policy.imbalance_rate}")
    if collapsed and not causes:
        causes.append("unknown")
    verdict = COLLAPSED if collapsed else OUT_OF_RANGE if out_of_range else HEALTHY
    return CollapseVerdict(verdict=verdict, collapsed=collapsed, collapsed_horizons=collapsed_h,
                           cause=causes[0] if causes else None, causes=causes, findings=findings,
                           evidence=evidence)
