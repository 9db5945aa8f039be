"""The nightly retrain decision: a pure function of the night's signals and a policy.

``decide`` does no I/O and reads no clock, so the same inputs always give the same verdict and
the flow can record exactly why it retrained (or did not). Each check that fires adds a
``Reason`` with its numbers; checks that passed or could not run are kept as ``notes`` so a
quiet night is just as auditable as a retrain.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ReasonCode(enum.StrEnum):
    NO_CHAMPION = "no_champion"
    COLLAPSE = "collapse"
    DRIFT = "drift"
    DECAY_FLOOR = "decay_floor"
    DECAY_BASELINE = "decay_baseline"
    MAX_AGE = "max_age"
    # notes only: a check that passed or was skipped
    OK = "ok"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Reason:
    """One finding: a machine code, a sentence with the numbers, and the numbers themselves."""

    code: ReasonCode
    message: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, "values": dict(self.values)}


# --------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class DriftSignal:
    """Tonight's drift verdict and how many consecutive runs (tonight included) have drifted."""

    dataset_drift: bool
    share: float  # share of drifted features, 0..1
    consecutive_runs: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.share) and 0.0 <= self.share <= 1.0):
            raise ValueError(f"drift share must be in [0, 1], got {self.share}")
        if self.consecutive_runs < 0:
            raise ValueError(f"consecutive_runs must be >= 0, got {self.consecutive_runs}")
        if self.dataset_drift != (self.consecutive_runs > 0):
            raise ValueError(f"dataset_drift={self.dataset_drift} contradicts "
                             f"consecutive_runs={self.consecutive_runs} (tonight counts when drifted)")


@dataclass(frozen=True)
class CollapseSignal:
    """The collapse check on the champion's recent predictions."""

    collapsed: bool
    verdict: str
    cause: str | None = None


@dataclass(frozen=True)
class PerformanceSignal:
    """Champion and Random Forest AUC per horizon on labels matured in a recent window."""

    auc_by_horizon: Mapping[str, float]
    rf_auc_by_horizon: Mapping[str, float]
    n_matured: int

    def __post_init__(self) -> None:
        if self.n_matured < 0:
            raise ValueError(f"n_matured must be >= 0, got {self.n_matured}")
        # plain floats (not numpy scalars) so reasons serialise to JSON as they stand
        object.__setattr__(self, "auc_by_horizon", _aucs("champion", self.auc_by_horizon))
        object.__setattr__(self, "rf_auc_by_horizon", _aucs("random forest", self.rf_auc_by_horizon))


def _aucs(model: str, aucs: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for h, value in aucs.items():
        try:
            auc = float(value)
        except (TypeError, ValueError):
            auc = math.nan
        if not (math.isfinite(auc) and 0.0 <= auc <= 1.0):
            raise ValueError(f"{model} AUC for horizon {h} must be in [0, 1], got {value!r}")
        out[str(h)] = auc
    return out


@dataclass(frozen=True)
class RetrainPolicy:
    """Thresholds of the retrain decision."""

    # Consecutive drifted runs before drift alone retrains: one noisy night should not.
    drift_persistence_k: int = 3
    # Mean champion AUC below this on matured labels is decay (0.5 is a coin flip).
    auc_floor: float = 0.52
    # Champion mean AUC this far below the Random Forest baseline is decay.
    rf_margin: float = 0.0
    # Below this many matured labels an AUC is too noisy to act on.
    min_matured: int = 60
    # Retrain at this age even when every metric looks fine: markets move on.
    max_age_days: float = 90.0
    # Trailing the Random Forest does not retrain a champion trained or confirmed (it held against
    # a challenger on a fresh holdout) fewer days ago than this: a challenger on nearly the same
    # data just failed to do better, and a nightly run would otherwise retrain every night.
    decay_cooldown_days: float = 20.0

    def __post_init__(self) -> None:
        if self.drift_persistence_k < 1:
            raise ValueError(f"drift_persistence_k must be >= 1, got {self.drift_persistence_k}")
        if not (0.0 <= self.auc_floor <= 1.0):
            raise ValueError(f"auc_floor must be in [0, 1], got {self.auc_floor}")
        if not (math.isfinite(self.rf_margin) and self.rf_margin >= 0):
            raise ValueError(f"rf_margin must be >= 0, got {self.rf_margin}")
        if self.min_matured < 1:
            raise ValueError(f"min_matured must be >= 1, got {self.min_matured}")
        if not (self.max_age_days > 0):
            raise ValueError(f"max_age_days must be > 0, got {self.max_age_days}")
        if not (math.isfinite(self.decay_cooldown_days) and self.decay_cooldown_days >= 0):
            raise ValueError(f"decay_cooldown_days must be >= 0, got {self.decay_cooldown_days}")

    def to_dict(self) -> dict[str, Any]:
        return {"drift_persistence_k": self.drift_persistence_k, "auc_floor": self.auc_floor,
                "rf_margin": self.rf_margin, "min_matured": self.min_matured,
                "max_age_days": self.max_age_days, "decay_cooldown_days": self.decay_cooldown_days}


# --------------------------------------------------------------------------- output

@dataclass(frozen=True)
class RetrainDecision:
    """``retrain`` is true iff ``reasons`` is non-empty; ``notes`` explain the checks that did not fire."""

    retrain: bool
    reasons: tuple[Reason, ...]
    notes: tuple[Reason, ...] = ()
    policy: RetrainPolicy = field(default_factory=RetrainPolicy)

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"retrain": self.retrain, "reasons": [r.to_dict() for r in self.reasons],
                "notes": [n.to_dict() for n in self.notes], "policy": self.policy.to_dict()}


# --------------------------------------------------------------------------- decision

def decide(drift: DriftSignal | None, collapse: CollapseSignal | None,
           performance: PerformanceSignal | None, model_age: float | None,
           policy: RetrainPolicy) -> RetrainDecision:
    """Should tonight's run retrain? Pure: same inputs, same decision.

    Args:
        drift: tonight's drift signal, ``None`` when drift was not computed.
        collapse: collapse check on the champion's recent predictions, ``None`` without one.
        performance: champion vs Random Forest on recently matured labels, ``None`` without one.
        model_age: days since the champion was trained or last held against a challenger on a
            recent holdout; ``None`` means there is no champion.
        policy: thresholds.
    """
    if model_age is not None and not (math.isfinite(model_age) and model_age >= 0):
        raise ValueError(f"model_age must be >= 0 days or None, got {model_age}")
    findings = [
        _no_champion(model_age),
        *_collapse(collapse),
        *_drift(drift, policy),
        *_decay(performance, model_age, policy),
        *_age(model_age, policy),
    ]
    found = [f for f in findings if f is not None]
    reasons = tuple(f for f in found if f.code not in (ReasonCode.OK, ReasonCode.SKIPPED))
    notes = tuple(f for f in found if f.code in (ReasonCode.OK, ReasonCode.SKIPPED))
    return RetrainDecision(retrain=bool(reasons), reasons=reasons, notes=notes, policy=policy)


def _no_champion(model_age: float | None) -> Reason | None:
    if model_age is not None:
        return None
    return Reason(ReasonCode.NO_CHAMPION, "no champion model exists: train the first one")


def _collapse(collapse: CollapseSignal | None) -> list[Reason]:
    if collapse is None:
        return [Reason(ReasonCode.SKIPPED, "collapse check not available")]
    values = {"verdict": collapse.verdict, "cause": collapse.cause}
    if collapse.collapsed:
        return [Reason(ReasonCode.COLLAPSE, f"champion predictions collapsed: {collapse.verdict}"
                       + (f" ({collapse.cause})" if collapse.cause else ""), values)]
    return [Reason(ReasonCode.OK, f"collapse check: {collapse.verdict}", values)]


def _drift(drift: DriftSignal | None, policy: RetrainPolicy) -> list[Reason]:
    if drift is None:
        return [Reason(ReasonCode.SKIPPED, "drift check not available")]
    k = policy.drift_persistence_k
    values = {"dataset_drift": drift.dataset_drift, "share": drift.share,
              "consecutive_runs": drift.consecutive_runs, "k": k}
    if drift.consecutive_runs >= k:
        return [Reason(ReasonCode.DRIFT, f"drift persisted {drift.consecutive_runs} consecutive runs "
                       f"(>= k={k}); drifted share {drift.share:.2f}", values)]
    return [Reason(ReasonCode.OK, f"drift in {drift.consecutive_runs} consecutive run(s) < k={k}; "
                   f"drifted share {drift.share:.2f}", values)]


def _decay(perf: PerformanceSignal | None, model_age: float | None, policy: RetrainPolicy) -> list[Reason]:
    """Decay on the mean over horizons: one horizon's AUC on a few months of labels is too noisy."""
    if perf is None:
        return [Reason(ReasonCode.SKIPPED, "decay check: no performance on matured labels")]
    if perf.n_matured < policy.min_matured:
        return [Reason(ReasonCode.SKIPPED, f"decay check skipped: {perf.n_matured} matured labels "
                       f"< {policy.min_matured}", {"n_matured": perf.n_matured,
                                                   "min_matured": policy.min_matured})]
    if not perf.auc_by_horizon:
        return [Reason(ReasonCode.SKIPPED, "decay check skipped: no champion AUC")]
    auc = _mean(perf.auc_by_horizon.values())
    values: dict[str, Any] = {"mean_auc": auc, "auc_by_horizon": dict(perf.auc_by_horizon),
                              "n_matured": perf.n_matured}
    out = []
    if auc < policy.auc_floor:
        out.append(Reason(ReasonCode.DECAY_FLOOR, f"champion mean AUC {auc:.4f} < floor "
                          f"{policy.auc_floor:.4f} on {perf.n_matured} matured labels",
                          {**values, "floor": policy.auc_floor}))
    common = sorted(set(perf.auc_by_horizon) & set(perf.rf_auc_by_horizon))
    if common:
        champ = _mean(perf.auc_by_horizon[h] for h in common)
        rf = _mean(perf.rf_auc_by_horizon[h] for h in common)
        rf_values = {**values, "horizons": common, "champion_mean_auc": champ, "rf_mean_auc": rf,
                     "rf_auc_by_horizon": dict(perf.rf_auc_by_horizon), "rf_margin": policy.rf_margin}
        cooling = model_age is not None and model_age < policy.decay_cooldown_days
        if champ < rf - policy.rf_margin and cooling:
            out.append(Reason(ReasonCode.OK, f"champion mean AUC {champ:.4f} < Random Forest {rf:.4f}, but it was "
                              f"trained or confirmed {model_age:.1f} days ago < cooldown "
                              f"{policy.decay_cooldown_days:g}", {**rf_values, "age_days": model_age,
                                                                  "decay_cooldown_days": policy.decay_cooldown_days}))
        elif champ < rf - policy.rf_margin:
            out.append(Reason(ReasonCode.DECAY_BASELINE, f"champion mean AUC {champ:.4f} < Random Forest "
                              f"{rf:.4f} - margin {policy.rf_margin:.4f} on {perf.n_matured} matured labels",
                              rf_values))
        else:
            out.append(Reason(ReasonCode.OK, f"champion mean AUC {champ:.4f} vs Random Forest {rf:.4f}",
                              rf_values))
    else:
        out.append(Reason(ReasonCode.SKIPPED, "Random Forest comparison skipped: no common horizons"))
    if auc >= policy.auc_floor:
        out.append(Reason(ReasonCode.OK, f"champion mean AUC {auc:.4f} >= floor {policy.auc_floor:.4f}",
                          {**values, "floor": policy.auc_floor}))
    return out


def _age(model_age: float | None, policy: RetrainPolicy) -> list[Reason]:
    if model_age is None:
        return []
    values = {"age_days": model_age, "max_age_days": policy.max_age_days}
    if model_age > policy.max_age_days:
        return [Reason(ReasonCode.MAX_AGE, f"champion trained or last confirmed {model_age:.1f} days ago > max "
                       f"{policy.max_age_days:g}", values)]
    return [Reason(ReasonCode.OK, f"champion age {model_age:.1f} days <= max {policy.max_age_days:g}", values)]


def _mean(xs: Iterable[float]) -> float:
    values = list(xs)
    return sum(values) / len(values)
