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

from spywatch.vs_baseline import VERDICTS


class ReasonCode(enum.StrEnum):
    NO_CHAMPION = "no_champion"
    COLLAPSE = "collapse"
    DRIFT = "drift"
    DECAY_FLOOR = "decay_floor"
    DECAY_BASELINE = "decay_baseline"
    LAGGING = "lagging"
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
    """The champion against the Random Forest on labels matured since it was selected.

    ``loss_diff`` is the per-session log-loss difference champion - Random Forest (mean over
    horizons), in session order from the start of the decay window: the sequential decay test
    runs on it. AUCs are for the floor and for people; a horizon whose window holds one class
    only has no AUC and is left out with a note (``skipped``), never a crash.
    """

    auc_by_horizon: Mapping[str, float]
    rf_auc_by_horizon: Mapping[str, float]
    n_matured: int
    loss_diff: tuple[float, ...] = ()
    sessions: tuple[str, ...] = ()  # ISO dates of ``loss_diff``
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n_matured < 0:
            raise ValueError(f"n_matured must be >= 0, got {self.n_matured}")
        if len(self.sessions) != len(self.loss_diff):
            raise ValueError(f"{len(self.loss_diff)} loss differences for {len(self.sessions)} sessions")
        if not all(math.isfinite(float(d)) for d in self.loss_diff):
            raise ValueError("loss_diff holds a non-finite value")
        skipped = list(self.skipped)
        champ = _aucs("champion", self.auc_by_horizon, skipped)
        rf = _aucs("random forest", self.rf_auc_by_horizon, skipped)
        # plain floats (not numpy scalars) so reasons serialise to JSON as they stand
        object.__setattr__(self, "auc_by_horizon", champ)
        object.__setattr__(self, "rf_auc_by_horizon", rf)
        object.__setattr__(self, "loss_diff", tuple(float(d) for d in self.loss_diff))
        object.__setattr__(self, "skipped", tuple(dict.fromkeys(skipped)))


def _aucs(model: str, aucs: Mapping[str, float], skipped: list[str]) -> dict[str, float]:
    """Finite AUCs in [0, 1]; NaN (one class in the window) goes to ``skipped``; anything else raises."""
    out = {}
    for h, value in aucs.items():
        try:
            auc = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{model} AUC for horizon {h} must be a number in [0, 1], got {value!r}") from None
        if math.isnan(auc):
            skipped.append(str(h))
            continue
        if not (0.0 <= auc <= 1.0):
            raise ValueError(f"{model} AUC for horizon {h} must be in [0, 1], got {value!r}")
        out[str(h)] = auc
    return out


@dataclass(frozen=True)
class BaselineSignal:
    """The baseline verdict (``vs_baseline``): the champion minus the Random Forest, mean AUC, paired
    on the trailing matured sessions, with its interval."""

    verdict: str  # vs_baseline.VERDICTS
    difference: float | None = None
    ci: tuple[float, float] | None = None
    sessions: int = 0
    phrase: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"baseline verdict {self.verdict!r}; expected one of {VERDICTS}")
        if self.verdict == "lagging" and (self.ci is None or not self.ci[1] < 0):
            raise ValueError(f"a lagging verdict needs an interval below 0, got {self.ci}")


DECAY_TESTS = ("cusum", "mean_auc")
TRIGGERS = ("collapse", "drift", "decay", "lagging", "max_age")


@dataclass(frozen=True)
class RetrainPolicy:
    """Thresholds of the retrain decision (``bench/results/decay_calibration.md`` for the decay test)."""

    # Which findings may retrain (a champion-less root always trains its first model).
    triggers: tuple[str, ...] = TRIGGERS
    # Consecutive drifted runs (counted since the champion was promoted) before drift retrains.
    drift_persistence_k: int = 3
    # Drift does not retrain a champion trained or confirmed fewer days ago than this: a fresh
    # model already learned from the drifted sessions, and retraining again learns nothing new.
    drift_cooldown_days: float = 30.0
    # Mean champion AUC below this on matured labels is decay (0.5 is a coin flip).
    auc_floor: float = 0.52
    # "cusum": one-sided CUSUM on the per-session log-loss difference champion - Random Forest,
    # S_t = max(0, S_{t-1} + d_t - allowance), alarm when S_t >= threshold. Sequential, so checking
    # it every night does not inflate its false-alarm rate. "mean_auc": the rule before Step 6
    # (mean AUC below the Random Forest's by rf_margin).
    decay_test: str = "cusum"
    # Calibrated on SPY 2005-2024 (bench/results/decay_calibration.md): 0.12 false alarms a year in
    # calm years, 29% of null resamples alarm within two years, a collapsed champion (the training
    # prior every day) is caught after a median 28 sessions (90th percentile 65).
    cusum_allowance: float = 0.03  # nats per session a champion may trail the Random Forest for free
    cusum_threshold: float = 1.5  # nats of accumulated excess loss
    rf_margin: float = 0.0  # "mean_auc" only
    # Below this many matured labels an AUC is too noisy to act on (the floor and "mean_auc").
    min_matured: int = 60
    # Retrain at this age even when every metric looks fine: markets move on.
    max_age_days: float = 365.0
    # "lagging" (the champion's mean AUC below the Random Forest's beyond its interval on the
    # trailing matured sessions) does not retrain a champion trained or confirmed fewer days ago
    # than this: the verdict reads a year of sessions and moves slowly, and a refused challenger
    # confirms the champion, so a champion that keeps lagging is retried once a quarter at most.
    lagging_cooldown_days: float = 91.0
    # "mean_auc" only: trailing the Random Forest does not retrain a champion trained or confirmed
    # fewer days ago than this (the CUSUM restarts at a confirmation instead).
    decay_cooldown_days: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "triggers", tuple(self.triggers))
        bad = [t for t in self.triggers if t not in TRIGGERS]
        if bad:
            raise ValueError(f"triggers {bad} unknown; expected a subset of {TRIGGERS}")
        if self.drift_persistence_k < 1:
            raise ValueError(f"drift_persistence_k must be >= 1, got {self.drift_persistence_k}")
        if not (math.isfinite(self.drift_cooldown_days) and self.drift_cooldown_days >= 0):
            raise ValueError(f"drift_cooldown_days must be >= 0, got {self.drift_cooldown_days}")
        if not (0.0 <= self.auc_floor <= 1.0):
            raise ValueError(f"auc_floor must be in [0, 1], got {self.auc_floor}")
        if self.decay_test not in DECAY_TESTS:
            raise ValueError(f"decay_test={self.decay_test!r}; expected one of {DECAY_TESTS}")
        if not (math.isfinite(self.cusum_allowance) and self.cusum_allowance >= 0):
            raise ValueError(f"cusum_allowance must be >= 0, got {self.cusum_allowance}")
        if not (math.isfinite(self.cusum_threshold) and self.cusum_threshold > 0):
            raise ValueError(f"cusum_threshold must be > 0, got {self.cusum_threshold}")
        if not (math.isfinite(self.rf_margin) and self.rf_margin >= 0):
            raise ValueError(f"rf_margin must be >= 0, got {self.rf_margin}")
        if self.min_matured < 1:
            raise ValueError(f"min_matured must be >= 1, got {self.min_matured}")
        if not (self.max_age_days > 0):
            raise ValueError(f"max_age_days must be > 0, got {self.max_age_days}")
        if not (math.isfinite(self.decay_cooldown_days) and self.decay_cooldown_days >= 0):
            raise ValueError(f"decay_cooldown_days must be >= 0, got {self.decay_cooldown_days}")
        if not (math.isfinite(self.lagging_cooldown_days) and self.lagging_cooldown_days >= 0):
            raise ValueError(f"lagging_cooldown_days must be >= 0, got {self.lagging_cooldown_days}")

    def to_dict(self) -> dict[str, Any]:
        return {"triggers": list(self.triggers), "drift_persistence_k": self.drift_persistence_k,
                "drift_cooldown_days": self.drift_cooldown_days, "auc_floor": self.auc_floor,
                "decay_test": self.decay_test, "cusum_allowance": self.cusum_allowance,
                "cusum_threshold": self.cusum_threshold, "rf_margin": self.rf_margin,
                "min_matured": self.min_matured, "max_age_days": self.max_age_days,
                "decay_cooldown_days": self.decay_cooldown_days, "lagging_cooldown_days": self.lagging_cooldown_days}


@dataclass(frozen=True)
class Cusum:
    """The one-sided CUSUM path over a decay window and where it first crossed its threshold."""

    statistic: float  # S at the last session
    peak: float  # max S over the window
    first_alarm: int | None  # index of the first session with S >= threshold

    @property
    def alarm(self) -> bool:
        return self.first_alarm is not None


def cusum(diffs: Iterable[float], allowance: float, threshold: float) -> Cusum:
    """S_0 = 0, S_t = max(0, S_{t-1} + d_t - allowance); the first t with S_t >= threshold alarms."""
    s, peak, first = 0.0, 0.0, None
    for t, d in enumerate(diffs):
        s = max(0.0, s + float(d) - allowance)
        peak = max(peak, s)
        if first is None and s >= threshold:
            first = t
    return Cusum(statistic=s, peak=peak, first_alarm=first)


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
           policy: RetrainPolicy, baseline: BaselineSignal | None = None) -> RetrainDecision:
    """Should tonight's run retrain? Pure: same inputs, same decision.

    Args:
        drift: tonight's drift signal (drifted runs counted since the champion's promotion),
            ``None`` when drift was not computed.
        collapse: collapse check on the champion's recent predictions, ``None`` without one.
        performance: champion vs Random Forest on labels matured since the champion was selected
            (or last confirmed), ``None`` without one.
        model_age: days since the champion was trained or last held against a challenger on a
            recent holdout; ``None`` means there is no champion.
        policy: thresholds, and which findings may retrain.
        baseline: the baseline verdict (champion vs the Random Forest on the trailing matured
            sessions), ``None`` without one.
    """
    if model_age is not None and not (math.isfinite(model_age) and model_age >= 0):
        raise ValueError(f"model_age must be >= 0 days or None, got {model_age}")
    findings = [
        _no_champion(model_age),
        *_collapse(collapse),
        *_drift(drift, model_age, policy),
        *_decay(performance, model_age, policy),
        *_lagging(baseline, model_age, policy),
        *_age(model_age, policy),
    ]
    found = [f for f in findings if f is not None]
    reasons, notes = [], []
    for f in found:
        if f.code in (ReasonCode.OK, ReasonCode.SKIPPED):
            notes.append(f)
        elif f.code != ReasonCode.NO_CHAMPION and _TRIGGER[f.code] not in policy.triggers:
            notes.append(Reason(ReasonCode.SKIPPED, f"{f.message} (policy does not retrain on "
                                f"{_TRIGGER[f.code]})", f.values))
        else:
            reasons.append(f)
    return RetrainDecision(retrain=bool(reasons), reasons=tuple(reasons), notes=tuple(notes), policy=policy)


_TRIGGER = {ReasonCode.COLLAPSE: "collapse", ReasonCode.DRIFT: "drift", ReasonCode.DECAY_FLOOR: "decay",
            ReasonCode.DECAY_BASELINE: "decay", ReasonCode.LAGGING: "lagging", ReasonCode.MAX_AGE: "max_age"}


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


def _drift(drift: DriftSignal | None, model_age: float | None, policy: RetrainPolicy) -> list[Reason]:
    if drift is None:
        return [Reason(ReasonCode.SKIPPED, "drift check not available")]
    k = policy.drift_persistence_k
    values = {"dataset_drift": drift.dataset_drift, "share": drift.share,
              "consecutive_runs": drift.consecutive_runs, "k": k}
    if drift.consecutive_runs < k:
        return [Reason(ReasonCode.OK, f"drift in {drift.consecutive_runs} consecutive run(s) < k={k}; "
                       f"drifted share {drift.share:.2f}", values)]
    if model_age is not None and model_age < policy.drift_cooldown_days:
        return [Reason(ReasonCode.OK, f"drift persisted {drift.consecutive_runs} runs (>= k={k}), but the champion "
                       f"was trained or confirmed {model_age:.1f} days ago < drift cooldown "
                       f"{policy.drift_cooldown_days:g}", {**values, "age_days": model_age,
                                                          "drift_cooldown_days": policy.drift_cooldown_days})]
    return [Reason(ReasonCode.DRIFT, f"drift persisted {drift.consecutive_runs} consecutive runs "
                   f"(>= k={k}); drifted share {drift.share:.2f}", values)]


def _decay(perf: PerformanceSignal | None, model_age: float | None, policy: RetrainPolicy) -> list[Reason]:
    """The floor on mean AUC, and the champion against the Random Forest (CUSUM or mean AUC)."""
    if perf is None:
        return [Reason(ReasonCode.SKIPPED, "decay check: no labels matured since the champion was selected")]
    out = [Reason(ReasonCode.SKIPPED, f"horizon {h}: one class only in the decay window, no AUC",
                  {"horizon": h}) for h in perf.skipped]
    if policy.decay_test == "cusum":
        out.extend(_decay_cusum(perf, policy))
    if perf.n_matured < policy.min_matured:
        return out + [Reason(ReasonCode.SKIPPED, f"AUC checks skipped: {perf.n_matured} matured labels "
                             f"< {policy.min_matured}", {"n_matured": perf.n_matured,
                                                         "min_matured": policy.min_matured})]
    if not perf.auc_by_horizon:
        return out + [Reason(ReasonCode.SKIPPED, "AUC checks skipped: no horizon with both classes")]
    auc = _mean(perf.auc_by_horizon.values())
    values: dict[str, Any] = {"mean_auc": auc, "auc_by_horizon": dict(perf.auc_by_horizon),
                              "n_matured": perf.n_matured}
    if auc < policy.auc_floor:
        out.append(Reason(ReasonCode.DECAY_FLOOR, f"champion mean AUC {auc:.4f} < floor "
                          f"{policy.auc_floor:.4f} on {perf.n_matured} matured labels",
                          {**values, "floor": policy.auc_floor}))
    else:
        out.append(Reason(ReasonCode.OK, f"champion mean AUC {auc:.4f} >= floor {policy.auc_floor:.4f}",
                          {**values, "floor": policy.auc_floor}))
    if policy.decay_test == "mean_auc":
        out.extend(_decay_mean_auc(perf, model_age, policy, values))
    return out


def _decay_cusum(perf: PerformanceSignal, policy: RetrainPolicy) -> list[Reason]:
    if not perf.loss_diff:
        return [Reason(ReasonCode.SKIPPED, "CUSUM decay test: no matured session in the window yet")]
    path = cusum(perf.loss_diff, policy.cusum_allowance, policy.cusum_threshold)
    values: dict[str, Any] = {"test": "cusum", "statistic": path.statistic, "peak": path.peak,
                              "threshold": policy.cusum_threshold, "allowance": policy.cusum_allowance,
                              "n_sessions": len(perf.loss_diff),
                              "window": [perf.sessions[0], perf.sessions[-1]] if perf.sessions else None,
                              "mean_loss_diff": _mean(perf.loss_diff)}
    if path.alarm:
        at = perf.sessions[path.first_alarm] if perf.sessions else str(path.first_alarm)
        values["first_alarm"] = at
        return [Reason(ReasonCode.DECAY_BASELINE, f"champion trails the Random Forest: CUSUM of the log-loss excess "
                       f"reached {path.peak:.2f} >= {policy.cusum_threshold:g} nats (first at {at}; mean excess "
                       f"{values['mean_loss_diff']:+.4f} nats/session over {len(perf.loss_diff)} sessions)", values)]
    return [Reason(ReasonCode.OK, f"CUSUM of the log-loss excess over the Random Forest {path.statistic:.2f} "
                   f"(peak {path.peak:.2f}) < {policy.cusum_threshold:g} nats over {len(perf.loss_diff)} sessions",
                   values)]


def _decay_mean_auc(perf: PerformanceSignal, model_age: float | None, policy: RetrainPolicy,
                    values: dict[str, Any]) -> list[Reason]:
    """The rule before Step 6: mean AUC below the Random Forest's, held back by a cooldown."""
    common = sorted(set(perf.auc_by_horizon) & set(perf.rf_auc_by_horizon))
    if not common:
        return [Reason(ReasonCode.SKIPPED, "Random Forest comparison skipped: no common horizons")]
    champ = _mean(perf.auc_by_horizon[h] for h in common)
    rf = _mean(perf.rf_auc_by_horizon[h] for h in common)
    rf_values = {**values, "horizons": common, "champion_mean_auc": champ, "rf_mean_auc": rf,
                 "rf_auc_by_horizon": dict(perf.rf_auc_by_horizon), "rf_margin": policy.rf_margin}
    cooling = model_age is not None and model_age < policy.decay_cooldown_days
    if champ < rf - policy.rf_margin and cooling:
        return [Reason(ReasonCode.OK, f"champion mean AUC {champ:.4f} < Random Forest {rf:.4f}, but it was "
                       f"trained or confirmed {model_age:.1f} days ago < cooldown "
                       f"{policy.decay_cooldown_days:g}", {**rf_values, "age_days": model_age,
                                                           "decay_cooldown_days": policy.decay_cooldown_days})]
    if champ < rf - policy.rf_margin:
        return [Reason(ReasonCode.DECAY_BASELINE, f"champion mean AUC {champ:.4f} < Random Forest "
                       f"{rf:.4f} - margin {policy.rf_margin:.4f} on {perf.n_matured} matured labels", rf_values)]
    return [Reason(ReasonCode.OK, f"champion mean AUC {champ:.4f} vs Random Forest {rf:.4f}", rf_values)]


def _lagging(baseline: BaselineSignal | None, model_age: float | None, policy: RetrainPolicy) -> list[Reason]:
    """The champion behind the Random Forest beyond its interval, held back by a cooldown."""
    if model_age is None:
        return []
    if baseline is None:
        return [Reason(ReasonCode.SKIPPED, "baseline verdict not available")]
    values = {"verdict": baseline.verdict, "difference": baseline.difference,
              "ci": list(baseline.ci) if baseline.ci else None, "sessions": baseline.sessions}
    text = baseline.phrase or f"baseline verdict {baseline.verdict}"
    if baseline.verdict == "not_enough_data":
        return [Reason(ReasonCode.SKIPPED, f"baseline verdict: {text}", values)]
    if baseline.verdict != "lagging":
        return [Reason(ReasonCode.OK, f"baseline verdict: {text}", values)]
    if model_age < policy.lagging_cooldown_days:
        return [Reason(ReasonCode.OK, f"champion {text}, but it was trained or confirmed {model_age:.1f} days ago "
                       f"< lagging cooldown {policy.lagging_cooldown_days:g}",
                       {**values, "age_days": model_age, "lagging_cooldown_days": policy.lagging_cooldown_days})]
    return [Reason(ReasonCode.LAGGING, f"champion {text}",
                   {**values, "age_days": model_age, "lagging_cooldown_days": policy.lagging_cooldown_days})]


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
