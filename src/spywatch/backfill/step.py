"""One replayed night: ``run_night`` for a past session, and what it did as a ``StepRecord``
(one row of the policy table), read from the night's typed audit."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from spywatch.audit_schema import BaselineVerdict, FailureKind, Retrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateSummary:
    """The gate's verdict on one challenger: the rule that decided, the paired estimate of
    challenger - champion mean AUC with its interval and P(challenger better), on which holdout.
    Rules without a comparison (no champion, margin, always) carry the plain difference, no interval."""

    rule: str | None
    promote: bool
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_better: float | None = None
    n_sessions: int | None = None
    holdout: list[str] | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VerdictBrief:
    """The night's baseline verdict for the champion that published (``audit.vs_baseline``), in brief."""

    verdict: str
    difference: float | None = None
    ci: list[float] | None = None
    sessions: int | None = None

    @classmethod
    def of(cls, vs: BaselineVerdict | None) -> VerdictBrief | None:
        if vs is None:
            return None
        return cls(verdict=vs.verdict, difference=vs.difference, ci=vs.ci, sessions=vs.sessions)


@dataclass
class StepRecord:
    """What one replayed night did (one row of the policy table)."""

    session: str
    status: str  # published | validation_failed | failed | error
    champion_before: str | None
    champion_after: str | None
    drift: bool | None = None
    drift_share: float | None = None
    collapse: str | None = None
    retrain: bool = False  # the decision said so
    reasons: list[str] = field(default_factory=list)
    challenger: str | None = None
    retrained: bool = False  # a challenger was trained (and gated)
    promoted: bool = False
    gate: GateSummary | None = None  # the challenger's gate
    alarms: list[str] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float | None = None
    error: str | None = None
    vs_baseline: VerdictBrief | None = None

    @classmethod
    def from_dict(cls, d: dict) -> StepRecord:
        """A step as ``policy.json`` holds it (records before ``retrained`` say it by their challenger)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known.setdefault("retrained", known.get("challenger") is not None)
        gate, vs = known.pop("gate", None), known.pop("vs_baseline", None)
        return cls(**known, gate=GateSummary(**gate) if gate else None, vs_baseline=VerdictBrief(**vs) if vs else None)

    def row(self) -> dict:
        """Flat: one CSV row or one line of a Prefect table artifact."""
        out = asdict(self)
        del out["gate"], out["vs_baseline"]
        vs, gate = self.vs_baseline, self.gate
        out.update({"vs_baseline": vs.verdict if vs else None, "vs_baseline_difference": vs.difference if vs else None})
        out["reasons"] = ";".join(self.reasons)
        out["alarms"] = ";".join(self.alarms)
        out.update({f"gate_{k}": getattr(gate, k) if gate else None
                    for k in ("rule", "estimate", "ci_low", "ci_high", "p_better")})
        return out


def gate_summary(retrain: Retrain) -> GateSummary:
    """The ``GateSummary`` of tonight's challenger (``audit.retrain``); no gate (the retrain
    failed): no rule, not promoted."""
    gate = retrain.gate
    if gate is None:
        return GateSummary(rule=None, promote=False, holdout=retrain.window or None)
    c = gate.comparison()  # the paired comparison the gate read (empty for rules without one)
    paired = {"estimate": c["estimate"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_better": c["p_a_better"],
              "n_sessions": c["n_sessions"]} if c else {"estimate": gate.details.get("delta_mean_auc")}
    return GateSummary(rule=gate.rule, promote=gate.promote, **paired,
                       holdout=retrain.window or (c["span"] if c else None), reasons=list(gate.reasons))


def champion_version(root: Path) -> str | None:
    """The registry's champion under ``root`` (None before the first promotion)."""
    from spywatch.layout import RootLayout
    from spywatch.registry import ModelRegistry

    return ModelRegistry(RootLayout(root).models).champion


def replay_step(cfg, session: pd.Timestamp, retrain=None) -> StepRecord:  # noqa: ANN001 - night.PipelineConfig
    """``run_night`` for one past session (forced: a session the root already published is replayed
    all the same); a crash is recorded (with its traceback in the log), not hidden. ``retrain``:
    the night's retrainer (default: ``cfg.retrain``'s), e.g. the fleet's one pass (``run_fleet_backfill``)."""
    from spywatch.night import run_night
    from spywatch.night.run import INLINE

    sid = session.date().isoformat()
    before = champion_version(cfg.root)
    t0 = time.perf_counter()
    try:
        result = run_night(replace(cfg, as_of=sid, run_id=f"backfill-{sid}"), force=True,
                           retrain=INLINE if retrain is None else retrain)
    except Exception as exc:  # recorded in the table and counted as an error; the caller decides
        log.error("backfill step %s failed:\n%s", sid, traceback.format_exc())
        return StepRecord(session=sid, status="error", champion_before=before, champion_after=champion_version(cfg.root),
                          seconds=round(time.perf_counter() - t0, 2), error=f"{type(exc).__name__}: {exc}")
    a = result.audit
    if a.failure is not None and a.failure.kind == FailureKind.STAGE_ERROR:  # a crash inside a stage: an error
        return StepRecord(session=sid, status="error", champion_before=before, champion_after=champion_version(cfg.root),
                          seconds=round(time.perf_counter() - t0, 2), error=a.failure.reason)
    drift, decision, retrain = a.drift, a.decision, a.retrain
    return StepRecord(
        session=sid, status=result.status, champion_before=before, champion_after=champion_version(cfg.root),
        drift=drift.dataset_drift if drift else None, drift_share=round(float(drift.share), 4) if drift else None,
        collapse=a.collapse.verdict if a.collapse else None, retrain=bool(decision and decision.retrain),
        reasons=decision.codes() if decision else [], challenger=retrain.challenger if retrain else None,
        retrained=bool(retrain and retrain.challenger), promoted=bool(retrain and retrain.promoted),
        gate=gate_summary(retrain) if retrain else None, alarms=[e.event for e in a.alerts],
        seconds=round(time.perf_counter() - t0, 2),
        train_seconds=round(float(retrain.train_seconds), 2) if retrain and retrain.train_seconds else None,
        error=a.failure.reason if a.failure else None, vs_baseline=VerdictBrief.of(a.vs_baseline))
