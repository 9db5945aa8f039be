"""The night's events: one function per stage that has something to say, each a function of the
typed audit, with the numbers in its payload (``deployments/automations.py`` turns them into
notifications)."""

from __future__ import annotations

from collections.abc import Callable

from spywatch.audit_schema import Alert, NightAudit
from spywatch.training_audit import finding_line
from spywatch.vs_baseline import phrase

DRIFT_EVENT = "spywatch.drift.detected"
COLLAPSE_EVENT = "spywatch.collapse.detected"
PROMOTED_EVENT = "spywatch.model.promoted"
LAGGING_EVENT = "spywatch.model.lagging"  # the champion behind the Random Forest beyond its interval
TRAINING_EVENT = "spywatch.training.unhealthy"  # a challenger refused on its training verdict
VALIDATION_EVENT = "spywatch.validation.failed"


def _validation(a: NightAudit, base: dict) -> Alert | None:
    failed = a.validation.failures()
    if not failed:
        return None
    return Alert(event=VALIDATION_EVENT, payload={**base, "failures": failed[:10], "n_failures": len(failed)})


def _drift(a: NightAudit, base: dict) -> Alert | None:
    from spywatch.report.text import drift_detail, drift_severity

    drift = a.drift
    if drift is None or not drift.dataset_drift:
        return None
    ranked = sorted((k for k, v in drift.per_feature.items() if v.drifted),
                    key=lambda k: (-drift_severity(drift.per_feature[k]), k))
    return Alert(event=DRIFT_EVENT, payload={
        **base, "share": round(float(drift.share), 3), "n_drifted": drift.n_drifted, "n_features": drift.n_features,
        "reasons": drift.drift_reasons, "drifted_features": ranked[:10], "drifted_features_cut": len(ranked) > 10,
        "detail": drift_detail(drift)})


def _collapse(a: NightAudit, base: dict) -> Alert | None:
    c = a.collapse
    if c is None or c.verdict == "healthy":
        return None
    return Alert(event=COLLAPSE_EVENT, payload={**base, "verdict": c.verdict, "cause": c.cause,
                                                "findings": c.findings})


def _lagging(a: NightAudit, base: dict) -> Alert | None:
    vs = a.vs_baseline
    if vs is None or not vs.lagging:
        return None
    return Alert(event=LAGGING_EVENT, payload={
        **base, "baseline": vs.baseline, "difference": vs.difference, "ci": vs.ci, "sessions": vs.sessions,
        "span": vs.span, "detail": phrase(vs), "version": a.model_version})


def _promoted(a: NightAudit, base: dict) -> Alert | None:
    r = a.retrain
    if r is None or not r.promoted:
        return None
    return Alert(event=PROMOTED_EVENT, payload={**base, "version": r.challenger, "gate": r.gate.reasons})


def _training(a: NightAudit, base: dict) -> Alert | None:
    r = a.retrain
    if r is None or r.training is None or r.training.verdict == "healthy":
        return None  # (else: the retrain that was needed produced a broken model)
    return Alert(event=TRAINING_EVENT, payload={
        **base, "version": r.challenger, "verdict": r.training.verdict,
        "findings": [finding_line(f) for f in r.training.findings][:6]})


ALERTS: tuple[Callable[[NightAudit, dict], Alert | None], ...] = (
    _validation, _drift, _collapse, _lagging, _promoted, _training)


def alerts_for(audit: NightAudit) -> list[Alert]:
    """Events to emit for tonight, with the numbers in their payload."""
    base = {"session": audit.session, "run_id": audit.run_id, "synthetic": audit.synthetic}
    return [alert for make in ALERTS if (alert := make(audit, base)) is not None]
