"""The promotion gate: whether a challenger may replace the champion, every check explained.

:func:`training_gate` refuses a challenger whose training failed its audit before anything is
scored; :func:`gate` compares the challenger's :class:`ModelScore` with the champion's on the same
out-of-time window under a :class:`PromotionPolicy` (a paired block bootstrap by default) and
returns a :class:`GateResult` whose reasons carry the numbers. Pure functions: the registry
(``registry.ModelRegistry.promote_if_better``) runs the gate under its lock and records the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spywatch.audit_schema import Training
from spywatch.training_audit import HEALTHY, finding_line


@dataclass(frozen=True)
class ModelScore:
    """A model's AUC per horizon on one recent out-of-time window.

    ``window`` names that window (e.g. ``"2026-06-01..2026-11-20"``): challenger and champion
    are only comparable when it is the same. A horizon whose window holds one class has no AUC:
    it is left out and named in ``skipped``.
    """

    auc_by_horizon: Mapping[str, float]
    collapsed: bool
    window: str
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        aucs, skipped = {}, list(self.skipped)
        for h, a in self.auc_by_horizon.items():
            if isinstance(a, float) and math.isnan(a):
                skipped.append(str(h))
            else:
                aucs[str(h)] = _auc(h, a)
        if not aucs:
            raise ValueError(f"ModelScore needs at least one horizon AUC (skipped: {skipped})")
        # plain floats and bools (not numpy scalars) so the gate's details are JSON as they stand
        object.__setattr__(self, "auc_by_horizon", aucs)
        object.__setattr__(self, "collapsed", bool(self.collapsed))
        object.__setattr__(self, "skipped", tuple(dict.fromkeys(skipped)))

    @property
    def mean_auc(self) -> float:
        return sum(self.auc_by_horizon.values()) / len(self.auc_by_horizon)

    def to_dict(self) -> dict[str, Any]:
        return {"auc_by_horizon": dict(self.auc_by_horizon), "mean_auc": self.mean_auc,
                "collapsed": self.collapsed, "window": self.window, "skipped": list(self.skipped)}


RULES = ("paired", "margin", "always")


@dataclass(frozen=True)
class PromotionPolicy:
    """When a challenger may replace the champion.

    ``paired`` (default): champion and challenger are scored on the same holdout sessions; a
    paired block bootstrap of the difference in mean AUC gives an interval at ``level``. Promote
    when the challenger is better (the interval's lower bound is above 0: better at one-sided
    (1 + level) / 2), or when it is not worse beyond ``non_inferiority_margin`` (lower bound above
    -margin) and learned from fresher data: a model that knows the last year is preferred to an
    equal one that does not. ``margin``: the rule before Step 6 (mean AUC gain >= min_improvement,
    no interval). ``always``: promote anything that clears the floor and is not collapsed.
    """

    rule: str = "paired"
    level: float = 0.90
    non_inferiority_margin: float = 0.01
    n_boot: int = 2000
    block: int = 10  # sessions; at least the longest horizon
    min_improvement: float = 0.005  # "margin" only
    # Absolute mean-AUC floor: a model near coin-flip is not worth serving even with no champion.
    auc_floor: float = 0.52

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule={self.rule!r}; expected one of {RULES}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level}")
        if not (math.isfinite(self.non_inferiority_margin) and 0 <= self.non_inferiority_margin < 0.1):
            raise ValueError(f"non_inferiority_margin must be in [0, 0.1), got {self.non_inferiority_margin}")
        if self.n_boot < 100 or self.block < 1:
            raise ValueError(f"n_boot={self.n_boot} (>= 100) and block={self.block} (>= 1) out of range")
        if not (math.isfinite(self.min_improvement) and self.min_improvement >= 0):
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement}")
        if not (math.isfinite(self.auc_floor) and 0.0 <= self.auc_floor <= 1.0):
            raise ValueError(f"auc_floor must be in [0, 1], got {self.auc_floor}")

    def bootstrap(self, block: int | None = None):
        from spywatch.comparison import BootstrapConfig

        return BootstrapConfig(n_boot=self.n_boot, block=max(self.block, block or 1), level=self.level)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "level": self.level, "non_inferiority_margin": self.non_inferiority_margin,
                "n_boot": self.n_boot, "block": self.block, "min_improvement": self.min_improvement,
                "auc_floor": self.auc_floor}


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict; ``reasons`` holds one line per check, passed or failed, with numbers.

    ``rule`` names what decided: ``better``, ``non_inferior_fresher``, ``no_champion``,
    ``champion_collapsed``, ``margin``, ``always``, ``refused``, or ``training_unhealthy`` (refused
    before scoring: ``training_gate``).
    """

    promote: bool
    reasons: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    rule: str = "refused"

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "rule": self.rule, "reasons": list(self.reasons),
                "details": dict(self.details)}


def training_gate(training: Training | None) -> GateResult | None:
    """The gate's first check, before the holdout is read: a challenger whose training verdict
    (``Training.of_metrics``, training_audit) is not healthy is refused, its findings the reasons.
    None when the verdict is healthy, or was not recorded (versions from before the training
    audit): scoring decides then."""
    if training is None or training.verdict == HEALTHY:
        return None
    reasons = [f"challenger training verdict {training.verdict}: refused before scoring "
               f"(a model whose training failed the audit is not compared)"]
    reasons += [finding_line(f) for f in training.findings]
    return GateResult(promote=False, reasons=tuple(reasons), rule="training_unhealthy",
                      details={"rule": "training_unhealthy", "training_verdict": training.verdict,
                               "findings": [f["finding"] for f in training.findings]})


def gate(challenger: ModelScore, champion: ModelScore | None, policy: PromotionPolicy,
         comparison=None, fresher: bool = False) -> GateResult:
    """Decide whether ``challenger`` may replace ``champion``; pure, every check explained.

    Args:
        comparison: ``comparison.PairedComparison`` of challenger minus champion on the holdout
            (required by the ``paired`` rule when a healthy champion exists).
        fresher: the challenger learned from sessions after the champion's last one.
    A collapsed champion does not block: its AUC says little about a model that stopped ranking.
    """
    if champion is not None:
        _check_comparable(challenger, champion)
    checks: dict[str, bool] = {}
    reasons: list[str] = []
    mean = challenger.mean_auc

    checks["not_collapsed"] = not challenger.collapsed
    reasons.append("challenger predictions collapsed" if challenger.collapsed
                   else "challenger predictions not collapsed")

    checks["floor"] = mean >= policy.auc_floor
    reasons.append(f"challenger mean AUC {mean:.4f} {'>=' if checks['floor'] else '<'} "
                   f"floor {policy.auc_floor:.4f}")
    if challenger.skipped:
        reasons.append(f"horizon(s) {list(challenger.skipped)} skipped: one class only in the holdout")

    delta: float | None = None
    rule = "refused"
    if champion is None:
        reasons.append("no champion: floor and collapse checks suffice")
        rule = "no_champion"
    elif champion.collapsed:
        reasons.append(f"champion collapsed (mean AUC {champion.mean_auc:.4f}): comparison waived")
        rule = "champion_collapsed"
    elif policy.rule == "always":
        delta = mean - champion.mean_auc
        reasons.append(f"rule 'always': promoted without comparison (mean AUC {delta:+.4f} vs champion)")
        rule = "always"
    elif policy.rule == "margin":
        delta = mean - champion.mean_auc
        checks["margin"] = delta >= policy.min_improvement
        reasons.append(f"challenger mean AUC {mean:.4f} vs champion {champion.mean_auc:.4f}: "
                       f"{delta:+.4f} {'>=' if checks['margin'] else '<'} "
                       f"required +{policy.min_improvement:.4f}")
        rule = "margin"
    else:
        if comparison is None:
            raise ValueError("the paired rule needs the paired comparison of challenger and champion")
        delta = comparison.estimate
        pct = round(100 * policy.level)
        better = comparison.ci_low > 0
        non_inferior = comparison.ci_low > -policy.non_inferiority_margin
        reasons.append(f"challenger - champion mean AUC {comparison.estimate:+.4f}, {pct}% CI "
                       f"[{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}], P(challenger better) "
                       f"{comparison.p_a_better:.2f} on {comparison.n_sessions} holdout sessions "
                       f"{comparison.span[0]}..{comparison.span[1]}")
        if better:
            rule = "better"
            reasons.append(f"better: the interval's lower bound {comparison.ci_low:+.4f} > 0")
        elif non_inferior and fresher:
            rule = "non_inferior_fresher"
            reasons.append(f"not worse beyond {policy.non_inferiority_margin:.3f} (lower bound "
                           f"{comparison.ci_low:+.4f}) and trained on fresher data")
        else:
            checks["paired"] = False
            reasons.append(f"not better (lower bound {comparison.ci_low:+.4f} <= 0)"
                           + ("" if non_inferior else f" and possibly worse beyond {policy.non_inferiority_margin:.3f}")
                           + ("" if fresher else "; not trained on fresher data"))
        checks.setdefault("paired", True)

    promote = all(checks.values())
    if not promote:
        rule = "refused"
    details = {"checks": checks, "delta_mean_auc": delta, "policy": policy.to_dict(), "rule": rule,
               "fresher": fresher, "comparison": comparison.to_dict() if comparison is not None else None,
               "challenger": challenger.to_dict(),
               "champion": champion.to_dict() if champion is not None else None}
    return GateResult(promote=promote, reasons=tuple(reasons), details=details, rule=rule)


def _auc(horizon: str, value: Any) -> float:
    try:
        auc = float(value)
    except (TypeError, ValueError):
        auc = math.nan
    if not (math.isfinite(auc) and 0.0 <= auc <= 1.0):
        raise ValueError(f"AUC for horizon {horizon} must be a finite number in [0, 1], got {value!r}")
    return auc


def _check_comparable(challenger: ModelScore, champion: ModelScore) -> None:
    """Scores on different windows or horizons cannot be compared: a caller bug, not a verdict."""
    if challenger.window != champion.window:
        raise ValueError(f"challenger scored on window {challenger.window!r}, champion on "
                         f"{champion.window!r}: score both on the same out-of-time window")
    if set(challenger.auc_by_horizon) != set(champion.auc_by_horizon):
        raise ValueError(f"challenger horizons {sorted(challenger.auc_by_horizon)} differ from "
                         f"champion horizons {sorted(champion.auc_by_horizon)}")
