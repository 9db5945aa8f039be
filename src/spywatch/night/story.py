"""The night's story: one line per stage for the run log (``narrate``), and the console summary,
each a function of the typed audit."""

from __future__ import annotations

from collections.abc import Callable

from spywatch.audit_schema import NightAudit, Retrain
from spywatch.training_audit import summary_line
from spywatch.vs_baseline import phrase


def _fetch(a: NightAudit) -> str | None:
    d, v = a.data, a.validation.raw_bars
    if d is None:
        return None
    return (f"data: {d.source} {d.first_session}..{d.last_session}, {d.new_sessions} new session(s), "
            f"{d.revisions} revision(s); raw-bars suite: {v.n_checks if v else '?'} checks passed")


def _champion(a: NightAudit) -> str | None:
    if not a.model_version:
        return "champion: none yet"
    c = a.champion
    return (f"champion: {a.model_version} (trained at {c.trained_session if c else None}, confirmed "
            f"{(c.confirmed_session if c else None) or 'never'}; {summary_line(c.training if c else None)})")


def _validate_features(a: NightAudit) -> str | None:
    v = a.validation.features
    return (f"features suite: {'passed' if v is not None and v.success else 'FAILED'} "
            f"({v.n_checks if v is not None else '?'} checks)")


def _audit(a: NightAudit) -> str | None:
    c = a.collapse
    if c is None:
        return None
    spread = c.evidence.pred_std
    return (f"health: {c.verdict}" + (f" (cause: {c.cause})" if c.cause else "")
            + f" · {phrase(a.vs_baseline)}"
            + f"; {len(c.members)} member(s)"
            + (f"; std of P over the window {' / '.join(f'{h} {v:.3f}' for h, v in spread.items())}" if spread
               else ""))


def _drift(a: NightAudit) -> str | None:
    from spywatch.report.text import drift_detail

    if a.drift is None:
        return None
    return f"drift: {'DETECTED' if a.drift.dataset_drift else 'quiet'} ({drift_detail(a.drift)})"


def _decide(a: NightAudit) -> str | None:
    d = a.decision
    if d is None:
        return None
    why = d.reasons if d.retrain else d.notes  # what fired, or what each trigger read
    reasons = "; ".join(r.message for r in why) or "no trigger fired"
    return f"decision: {'RETRAIN' if d.retrain else 'keep the champion'} ({reasons})"


def _retrain(a: NightAudit) -> str | None:
    return retrain_line(a.retrain) if a.retrain is not None else None


def retrain_line(r: Retrain) -> str:
    """What a retrain did, in one line: the challenger, where and how long it trained, the gate's
    answer with its interval, and the warning when a GPU pool's worker trained on the CPU."""
    if r.error:
        return f"retrain FAILED: {r.error}"
    details = r.gate.details if r.gate else {}
    cmp_ = r.gate.comparison() if r.gate else {}
    est = (f", challenger - champion mean AUC {cmp_['estimate']:+.4f} [{cmp_['ci_low']:+.4f}, "
           f"{cmp_['ci_high']:+.4f}], P(better) {cmp_['p_a_better']:.2f}" if cmp_.get("estimate") is not None
           else "")
    return (f"challenger {r.challenger} ({r.members} member(s), trained on "
            f"{r.device or 'an unrecorded device'} in {r.train_seconds or 0:.0f} s; {summary_line(r.training)}): "
            f"{'PROMOTED' if r.promoted else 'not promoted'} "
            f"(rule {details.get('rule', r.gate.rule if r.gate else None)}{est})"
            + (f"; WARNING: {r.device_warning}" if r.device_warning else ""))


def _publish(a: NightAudit) -> str | None:
    p = a.predictions
    if p is None:
        return None
    return "published: " + ", ".join(f"P({h}) = {v:.3f} ± {p.member_std.get(h, float('nan')):.3f}"
                                      for h, v in p.probabilities().items())


def _publish_failure(a: NightAudit) -> str | None:
    f = a.failure
    if f is None or f.predictions_published:
        return None
    return f"FAILED ({f.kind.value} in {f.stage}): {f.reason}; the last good predictions are marked stale"


LINES: dict[str, Callable[[NightAudit], str | None]] = {
    "fetch": _fetch, "champion": _champion, "validate_features": _validate_features, "audit": _audit,
    "drift": _drift, "decide": _decide, "retrain": _retrain, "publish": _publish, "publish_failure": _publish_failure}


def narrate(stage: str, audit: NightAudit) -> str | None:
    """The one line a reader of the run log needs about ``stage``, from what it recorded."""
    line = LINES.get(stage)
    return line(audit) if line is not None else None


def summary(a: NightAudit, status: str, outputs: dict) -> str:
    """The console summary of a night (``spywatch run``)."""
    lines = [f"spywatch nightly {a.ticker} for session {a.session}: {status.upper()}"
             + ("  [SYNTHETIC DATA]" if a.synthetic else "")]
    if a.failure is not None:
        lines.append(f"  FAILURE {a.failure.kind.value} in stage {a.failure.stage}: {a.failure.reason}")
    if a.data is not None:
        d = a.data
        lines.append(f"  data: {d.source} {d.first_session}..{d.last_session}, "
                     f"{d.new_sessions} new session(s), {d.revisions} revision(s)")
    for name, suite in a.validation.suites():
        lines.append(f"  validation {name}: {'passed' if suite.success else 'FAILED'}")
        lines.extend(f"    {f}" for f in suite.failures[:10])
    if a.drift is not None:
        lines.append(f"  drift: {'DETECTED' if a.drift.dataset_drift else 'quiet'} (share {a.drift.share:.2f})")
    if a.collapse is not None:
        c = a.collapse
        lines.append(f"  model health: {c.verdict}" + (f" (cause: {c.cause})" if c.cause else "")
                     + f" · {phrase(a.vs_baseline)}")
    if a.decision is not None:
        reasons = ", ".join(a.decision.codes()) or "none"
        lines.append(f"  decision: {'retrain' if a.decision.retrain else 'keep champion'} (reasons: {reasons})")
    r = a.retrain
    if r is not None and r.error:
        lines.append(f"  retrain FAILED: {r.error}")
    elif r is not None:
        lines.append(f"  challenger {r.challenger}: {'PROMOTED' if r.promoted else 'not promoted'} "
                     f"({summary_line(r.training)}; gate rule {r.gate.rule if r.gate else None})")
        if r.device_warning:
            lines.append(f"  WARNING: {r.device_warning}")
    if a.predictions is not None:
        lines.append("  tonight: " + ", ".join(f"P({h}) = {v:.3f}" for h, v in a.predictions.probabilities().items()))
    if a.is_stale:
        s = a.stale
        lines.append(f"  last good predictions ({s.last_good_session}) are STALE since {s.stale_since}: "
                     f"{s.reason}" if s.last_good_session else
                     "  no predictions published: this root has none yet (latest.json says so)")
    lines.extend(f"  {name}: {path}" for name, path in outputs.items())
    return "\n".join(lines)
