"""What the audit page shows, computed: the verdict badges, each horizon's table and plots, the
training panel and the rest of ``audit_context``, the one dict ``templates/audit.html.j2`` lays
out. The fleet rows and the run page use the same badges.

Everything takes the typed audit (``spywatch.audit_schema.NightAudit``) and accepts any section
being None, because the nights that matter most (bad data, a failed run) are exactly the ones with
the least in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from spywatch.audit_schema import (BaselineVerdict, Collapse, CollapseEvidence, Decision, Drift, Gate,
                                   NightAudit, Performance, Predictions, Retrain, Stale, Validation)
from spywatch.comparison import PairedComparison
from spywatch.report.charts import (HORIZON_COLOURS, Chart, calibration_chart, grad_chart, history_chart,
                                    loss_chart, roc_chart)
from spywatch.report.tables import MetricsTable, drift_rows, failed_suites, metrics_table, timing_rows, top_shifts
from spywatch.report.text import drift_detail, finite, horizon_order


# ----------------------------------------------------------------------------- verdict badges


@dataclass(frozen=True)
class Badge:
    label: str
    value: str
    tone: str  # ok | warn | bad | muted: the CSS class that colours it
    detail: str


def validation_badge(validation: Validation | None) -> Badge:
    suites = validation.suites() if validation is not None else []
    if not suites:
        return Badge("Data validation", "not run", "muted", "no validation record in this audit")
    failed = {n: len(s.failures) for n, s in suites if not s.success}
    if failed:
        return Badge("Data validation", "failed", "bad",
                     "; ".join(f"{n.replace('_', ' ')}: {k} failed check(s)" for n, k in failed.items()))
    return Badge("Data validation", "passed", "ok", "checked: " + ", ".join(n.replace("_", " ") for n, _ in suites))


def drift_badge(drift: Drift | None) -> Badge:
    if drift is None:
        return Badge("Drift", "not measured", "muted", "no drift record in this audit")
    if drift.dataset_drift:
        return Badge("Drift", "drift detected", "warn", drift_detail(drift))
    shifted = [h for h, t in (drift.prediction_drift or {}).items() if t.drifted]
    if shifted:  # the inputs are quiet and the alarm did not fire, but the predictions moved: say both
        return Badge("Drift", f"inputs quiet · predictions shifted ({', '.join(horizon_order(shifted))})", "warn",
                     drift_detail(drift))
    return Badge("Drift", "quiet", "ok", drift_detail(drift))


def health_badge(collapse: Collapse | None, vs: BaselineVerdict | None = None) -> Badge:
    """The collapse verdict and, beside it, the baseline verdict: healthy is not good when the
    champion ranks worse than the Random Forest on the same sessions (``vs``)."""
    if collapse is None:
        return Badge("Model health", "not checked", "muted", "no collapse check in this audit")
    verdict = collapse.verdict or "unknown"
    tone = {"healthy": "ok", "collapsed": "bad", "inputs_out_of_range": "warn"}.get(verdict, "muted")
    value = verdict.replace("_", " ")
    parts = []
    if collapse.cause:
        parts.append(f"cause: {collapse.cause}")
    if collapse.collapsed_horizons:
        parts.append("horizons " + ", ".join(collapse.collapsed_horizons))
    if vs is not None:
        from spywatch.vs_baseline import phrase

        parts.insert(0, phrase(vs))
        if vs.verdict in ("lagging", "ahead"):
            value += " · " + vs.verdict
        if vs.lagging and tone == "ok":
            tone = "warn"
    return Badge("Model health", value, tone, " · ".join(parts) or "no collapse signals")


def decision_badge(decision: Decision | None, retrain: Retrain | None) -> Badge:
    if decision is None:
        return Badge("Decision", "none", "muted", "no retrain decision was taken")
    if not decision.retrain:
        return Badge("Decision", "keep champion", "ok", "no retrain trigger fired")
    outcome = ("" if retrain is None else " · the retrain failed" if retrain.error else
               " · challenger promoted" if retrain.promoted else " · challenger rejected by the gate")
    return Badge("Decision", "retrain", "warn", "because: " + (", ".join(decision.codes()) or "unstated") + outcome)


def status_badge(status: str, stale: Stale | None, predictions: Predictions | None) -> Badge:
    if stale is not None and stale.stale:
        since = "?" if stale.stale_since is None else stale.stale_since
        return Badge("Status", "stale", "bad", f"{status.replace('_', ' ')}; predictions stale since {since}, "
                     + (f"last good {stale.last_good_session}" if stale.last_good_session
                        else "none published before"))
    if status != "published":
        return Badge("Status", status.replace("_", " "), "bad", "no predictions published")
    written = f"{predictions.file}, {predictions.rows} row(s)" if predictions is not None else ""
    return Badge("Status", "published", "ok", written or "predictions published")


def badges(audit: NightAudit, status: str) -> list[Badge]:
    """The five verdicts, in the order the page and the run page show them."""
    return [validation_badge(audit.validation), drift_badge(audit.drift),
            health_badge(audit.collapse, audit.vs_baseline), decision_badge(audit.decision, audit.retrain),
            status_badge(status, audit.stale, audit.predictions)]


# ----------------------------------------------------------------------------- the training panel


@dataclass(frozen=True)
class TrainingPanel:
    """The training audit of tonight's challenger, else of the champion (training_audit)."""

    whose: str
    verdict: str
    findings: list[str]
    loss_charts: list[Chart]
    grad_chart: Chart | None
    groups: list[tuple[str, str]]  # (group, colour)
    readings: list[str]
    refused: bool  # the gate refused the challenger on this verdict


def training_panel(audit: NightAudit) -> TrainingPanel | None:
    from spywatch.training_audit import finding_line, member_lines

    retrain, champion = audit.retrain, audit.champion
    if retrain is not None and retrain.training is not None:
        section = retrain.training
        whose = f"challenger {retrain.challenger} (trained tonight)"
    elif champion is not None and champion.training is not None:
        section = champion.training
        whose = f"champion {audit.model_version} (trained for {champion.trained_session})"
    else:
        return None
    charts = [c for j, (h, colour) in enumerate(zip(section.horizons, HORIZON_COLOURS))
              if (c := loss_chart(section.members, h, j, colour))]
    grads, groups = grad_chart(section.members)
    gate = retrain.gate if retrain is not None else None
    refused = gate is not None and gate.rule == "training_unhealthy" and section is retrain.training
    return TrainingPanel(whose=whose, verdict=section.verdict, findings=[finding_line(f) for f in section.findings],
                         loss_charts=charts, grad_chart=grads, groups=groups, readings=member_lines(section),
                         refused=refused)


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class HorizonPerformance:
    horizon: str
    colour: str
    table: MetricsTable | None
    roc: Chart | None
    calibration: Chart | None


def performance_views(performance: Performance | None) -> list[HorizonPerformance]:
    if performance is None:
        return []
    by_h, roc, cal = performance.horizons or {}, performance.roc or {}, performance.calibration or {}
    out = []
    for i, h in enumerate(horizon_order([*by_h, *roc, *cal])):
        models = by_h.get(h) or {}
        champion = models.get("champion") or {}
        auc, ece = champion.get("auc"), champion.get("ece")
        colour = HORIZON_COLOURS[i % len(HORIZON_COLOURS)]
        out.append(HorizonPerformance(h, colour, metrics_table(h, models) if models else None,
                                      roc_chart(h, roc.get(h), auc, colour),
                                      calibration_chart(h, cal.get(h), ece, colour)))
    return out


def drift_window(drift: Drift) -> str | None:
    """'current start → end (rows sessions) vs training start → end'."""
    current, reference = drift.current, drift.reference
    if current is None or not current.start:
        return None
    text = f"{current.start} → {current.end}"
    if current.rows:
        text += f" ({current.rows} sessions)"
    if reference is not None and reference.start:
        text += f" vs training {reference.start} → {reference.end}"
    return text


def stale_message(audit: NightAudit, dated: list[dict[str, Any]]) -> str | None:
    """The sentence a reader needs when tonight has no predictions, with the date still valid
    (``dated``: the prediction history's rows that have a date)."""
    if audit.predictions is not None:
        return None
    stale = audit.stale
    last_good = (stale.last_good_session if stale is not None else None) or \
        (max(str(r["date"]) for r in dated) if dated else None)
    current = stale is not None and stale.stale is False  # a past session failed; newer ones stand
    message = "No predictions published tonight; " + (
        f"the latest predictions ({last_good}) are newer and stay current." if current else
        f"last good predictions from {last_good} are stale." if last_good else "there are no earlier predictions.")
    if stale is not None and stale.reason:
        message += f" Reason: {stale.reason}."
    return message


def training_prior(evidence: CollapseEvidence, performance: Performance | None) -> dict[str, float]:
    """Training positive rate per horizon, from the collapse evidence or else the prior baseline."""
    prior = {h: v for h, v in evidence.prior.items() if finite(v) is not None}
    for h, models in ((performance.horizons if performance is not None else None) or {}).items():
        rate = finite((models.get("prior") or {}).get("rate"))
        if h not in prior and rate is not None:
            prior[h] = rate
    return prior


def gate_comparison(gate: Gate | None) -> PairedComparison | None:
    """The paired challenger - champion comparison the gate read (the gate stores
    ``PairedComparison.to_dict``), or None when it made none."""
    stored = gate.comparison() if gate is not None else {}
    return TypeAdapter(PairedComparison).validate_python(stored) if stored else None


@dataclass(frozen=True)
class FitPeriods:
    """The spans a challenger was fitted, stopped early and judged on (``bundle.FitPeriods.to_dict``)."""

    fit: list[str]
    val: list[str]
    holdout: list[str]
    embargo_sessions: int | None


def fit_periods(retrain: Retrain | None) -> FitPeriods | None:
    p = retrain.periods if retrain is not None else {}
    if not p:
        return None
    return FitPeriods(*(list(p.get(k) or []) for k in ("fit", "val", "holdout")), p.get("embargo_sessions"))


@dataclass(frozen=True)
class Cusum:
    """The decay test's parameters, when the policy judges decay with a CUSUM."""

    allowance: float
    threshold: float


def cusum(decision: Decision | None) -> Cusum | None:
    policy = decision.policy if decision is not None else {}  # ``policy.RetrainPolicy.to_dict``
    if policy.get("decay_test") != "cusum":
        return None
    return Cusum(policy["cusum_allowance"], policy["cusum_threshold"])


def _check_href(href: str | None) -> str | None:
    """Only a relative link keeps the page self-contained when the run folder is moved."""
    if href is None:
        return None
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith("//"):
        raise ValueError(f"drift_report_href must be a relative path inside the run folder, got {href!r}")
    return href


# ----------------------------------------------------------------------------- the page


def audit_context(audit: NightAudit, drift_report_href: str | None = None) -> dict[str, Any]:
    """Everything the template shows, computed; the sections the night did not reach are None."""
    if not isinstance(audit, NightAudit):
        raise ValueError(f"audit must be a NightAudit (spywatch.audit_schema.check_audit reads an audit.json), "
                         f"got {type(audit).__name__}")
    status = audit.status.value
    collapse, drift, predictions = audit.collapse, audit.drift, audit.predictions
    evidence = collapse.evidence if collapse is not None else CollapseEvidence()
    history = audit.prediction_history
    dated = [r for r in history if r.get("date")]
    latest = predictions.latest if predictions is not None else {}
    horizons = horizon_order([k for r in [*history, latest] for k in r if k != "date"])
    prior = training_prior(evidence, audit.performance)
    return {
        "audit": audit, "status": status, "synthetic": audit.synthetic, "badges": badges(audit, status),
        "failed_suites": failed_suites(audit.validation),
        "stale_message": stale_message(audit, dated),
        "latest": latest, "latest_date": latest.get("date"),
        "latest_horizons": [h for h in horizons if finite(latest.get(h)) is not None],
        "member_std": predictions.member_std if predictions is not None else {},
        "n_members": predictions.members if predictions is not None else None,
        "prior": prior,
        "performance": audit.performance, "horizon_views": performance_views(audit.performance),
        "history_chart": history_chart(dated, horizons, prior),
        "history_legend": list(zip(horizons, HORIZON_COLOURS)), "history_len": len(history),
        "history_last": max((str(r["date"])[:10] for r in dated), default=None),
        "drift": drift, "drift_rows": drift_rows(drift.per_feature if drift is not None else {}),
        "regime_rows": drift_rows(drift.regime.per_feature if drift is not None and drift.regime is not None else {}),
        "drift_window": drift_window(drift) if drift is not None else None,
        "drift_report_href": _check_href(drift_report_href),
        "collapse": collapse, "evidence": evidence,
        "evidence_horizons": horizon_order(evidence.pred_std),
        "shifts": top_shifts(evidence.feature_shift_std),
        "decision": audit.decision, "cusum": cusum(audit.decision), "retrain": audit.retrain,
        "gate_comparison": gate_comparison(audit.retrain.gate if audit.retrain is not None else None),
        "periods": fit_periods(audit.retrain),
        "training": training_panel(audit), "alerts": audit.alerts, "timings": timing_rows(audit.timings),
    }
