"""What a run's page in the Prefect UI shows: plain data built from the audit, no Prefect here.

``tasks/reporting.py`` turns these into artifacts: a markdown summary (verdicts, decision,
tonight's probabilities), the champion's metrics against the baselines (table), the collapse
evidence (markdown), the drift tests (table), the promotion gate (markdown) and links to the HTML
audit and the Evidently report over HTTP (``spywatch.serve``). The verdicts come from
``report.views`` and ``report.text`` (the same badges and sentences as the HTML audit); this module
lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spywatch.audit_schema import NightAudit, Retrain
from spywatch.report.tables import drift_rows, metrics_table, top_shifts
from spywatch.report.text import fmt, horizon_order, sig
from spywatch.report.views import badges, fit_periods, gate_comparison, health_badge


@dataclass(frozen=True)
class Link:
    key: str  # artifact key suffix
    url: str
    text: str


def summary_markdown(session: str, status: str, audit: NightAudit, outputs: dict[str, Any],
                     links: list[Link] = ()) -> str:
    a = audit
    model = f"model `{a.model_version}`" if a.model_version else "no champion"
    lines = [f"# Nightly {a.ticker}, session {session}: **{status.upper()}**", "",
             f"source `{'?' if a.source is None else a.source}`" + (" **(synthetic data)**" if a.synthetic else "")
             + f" · {model} · run `{a.run_id}`", ""]
    if links:
        lines += [" · ".join(f"[{link.text}]({link.url})" for link in links), ""]
    if a.failure is not None:
        f = a.failure
        lines += [f"**Failure** `{f.kind.value}` in stage `{f.stage}`: {_cell(f.reason)}. {_cell(f.meaning)}", ""]
    lines += ["| check | verdict | detail |", "|---|---|---|"]
    lines += [f"| {b.label} | **{b.value}** | {_cell(b.detail)} |" for b in badges(a, status)]
    if a.decision is not None and a.decision.reasons:
        lines += ["", "## Why retrain", *[f"- `{r.code}`: {r.message}" for r in a.decision.reasons]]
    r = a.retrain
    if r is not None and r.error:
        lines += ["", f"## The retrain failed: {_cell(r.error)}",
                  "Tonight's predictions come from the champion, which passed tonight's audit."]
    elif r is not None:
        lines += ["", f"## Challenger `{r.challenger}`: {'promoted' if r.promoted else 'not promoted'}",
                  *[f"- {line}" for line in (r.gate.reasons if r.gate is not None else [])]]
    p = a.predictions
    if p is not None and p.latest:
        lines += ["", "## Tonight", "| horizon | P(+1% within h) | member spread (std) |", "|---|---|---|",
                  *[f"| {h} | {fmt(v)} | {fmt(p.member_std.get(h))} |" for h, v in p.latest.items() if h != "date"]]
    failures = [f for _, suite in a.validation.suites() for f in suite.failures]
    if failures:
        lines += ["", "## Validation failures", *[f"- {_cell(f)}" for f in failures[:20]]]
        if len(failures) > 20:
            lines.append(f"- … and {len(failures) - 20} more (list cut at 20; all are in audit.json)")
    if a.alerts:
        lines += ["", "## Events", *[f"- `{e.event}`" for e in a.alerts]]
    if a.timings:
        lines += ["", "## Timings (s)", "| stage | seconds |", "|---|---|",
                  *[f"| {k} | {v:.2f} |" for k, v in a.timings.items()]]
    lines += ["", "## Outputs", *[f"- {name}: `{path}`" for name, path in outputs.items()]]
    return "\n".join(lines) + "\n"


def metric_rows(audit: NightAudit) -> list[dict[str, Any]]:
    """One row per horizon x model: the champion, Random Forest, logistic regression, the prior."""
    horizons = (audit.performance.horizons if audit.performance is not None else None) or {}
    rows = []
    for horizon, models in horizons.items():
        table = metrics_table(horizon, models)
        for row in table.rows:
            rows.append({"horizon": horizon, "model": row.label,
                         **{col: cell.text for col, cell in zip(table.columns, row.cells)}})
    return rows


def health_markdown(audit: NightAudit) -> str | None:
    """The collapse audit's evidence: what the verdict rests on, per horizon and per member."""
    c = audit.collapse
    if c is None:
        return None
    badge = health_badge(c, audit.vs_baseline)
    ev = c.evidence
    lines = [f"# Model health: **{badge.value}**", "", badge.detail, ""]
    if c.findings:
        lines += ["## Findings", *[f"- {_cell(f)}" for f in c.findings], ""]
    horizons = horizon_order(ev.pred_std)
    if horizons:
        lines += ["## Predictions on the audit window", "", "| horizon | mean P | std of P | training prior | AUC |",
                  "|---|---|---|---|---|",
                  *[f"| {h} | {fmt(ev.pred_mean.get(h))} | {fmt(ev.pred_std.get(h), 4)} | "
                    f"{fmt(ev.prior.get(h))} | {fmt(ev.auc.get(h))} |" for h in horizons],
                  ""]
    lines += ["## Signals", "", "| signal | value |", "|---|---|",
              f"| encoder output std (pooled) | {sig(ev.representation_std)} |",
              f"| attention entropy / uniform | {fmt(ev.attention_entropy_ratio)} |",
              f"| positional / content norm | {fmt(ev.pos_to_content_ratio)} |", ""]
    if c.members:
        hs = horizon_order(c.members[0].pred_std)
        lines += [f"## Members ({len(c.members)})", "", "| member | " + " | ".join(f"std of P {h}" for h in hs) + " |",
                  "|---" * (len(hs) + 1) + "|",
                  *[f"| {m.member} | " + " | ".join(fmt(m.pred_std.get(h), 4) for h in hs) + " |" for m in c.members],
                  ""]
    shifts = top_shifts(ev.feature_shift_std)
    if shifts:
        lines += ["## Inputs furthest from training (training std)", "",
                  ", ".join(f"{s.feature} {s.value:+.2f}" for s in shifts), ""]
    return "\n".join(lines)


def drift_table(audit: NightAudit) -> list[dict[str, Any]]:
    """Every drift test of tonight: the training rule's per-feature tests, then the regime rule's."""
    d = audit.drift
    if d is None:
        return []
    tests = [("vs training", d.per_feature), ("vs the last year", d.regime.per_feature if d.regime else {})]
    return [{"rule": rule, "feature": r.feature, "method": r.method, "score": r.score, "drift when": r.rule,
             "drifted": "yes" if r.drifted else "no"} for rule, per_feature in tests for r in drift_rows(per_feature)]


def gate_markdown(retrain: Retrain | None, session: str) -> str | None:
    """The promotion gate: the paired comparison on the holdout, its interval and the rule that fired."""
    if retrain is None or retrain.error or retrain.gate is None:
        return None
    gate, periods = retrain.gate, fit_periods(retrain)
    fit, holdout = (periods.fit, periods.holdout) if periods is not None else ([], [])
    lines = [f"# Gate for challenger `{retrain.challenger}` (session {session}): "
             f"**{'PROMOTED' if retrain.promoted else 'not promoted'}**, rule `{gate.details.get('rule', '?')}`", ""]
    lines += [f"{retrain.members} member(s) trained on **{retrain.device or 'an unrecorded device'}** in "
              f"{retrain.train_seconds or 0:.1f} s" + (f"; fit {' .. '.join(fit)}" if fit else "")
              + (f", holdout {' .. '.join(holdout)}" if holdout else ""), ""]
    if retrain.device_warning:
        lines += [f"**Warning:** {retrain.device_warning}", ""]
    training = retrain.training
    if training is not None:
        lines += [f"Training audit: **{training.verdict}**"
                  + (f" ({'; '.join(f['finding'] + ' in member ' + str(f['member']) for f in training.findings)})"
                     if training.findings else ""), ""]
    c = gate_comparison(gate)
    if c is not None:
        lines += [f"Challenger - champion {c.metric}: **{c.estimate:+.4f}**, "
                  f"{100 * c.bootstrap.level:.0f}% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], "
                  f"P(challenger better) {c.p_a_better:.2f}, on {c.n_sessions} sessions "
                  f"{' .. '.join(c.span)} (paired block bootstrap, blocks of {c.bootstrap.block} "
                  f"sessions, {c.bootstrap.n_boot} resamples)", ""]
        if c.by_horizon:
            lines += ["| horizon | challenger AUC | champion AUC | difference |", "|---|---|---|---|",
                      *[f"| {h} | {fmt(v['a'])} | {fmt(v['b'])} | {v['diff']:+.4f} |" for h, v in c.by_horizon.items()],
                      ""]
    lines += ["## Checks", *[f"- {line}" for line in gate.reasons]]
    return "\n".join(lines) + "\n"


def report_links(root: Path, outputs: dict[str, Any]) -> list[Link]:
    """The HTML audit and the Evidently report of this run, as URLs the UI can open."""
    from spywatch.serve import url_for

    folder = outputs.get("session folder") or (Path(outputs["audit"]).parent if "audit" in outputs else None)
    if folder is None:
        return []
    links = []
    for key, stem, text in (("audit-report", "report", "HTML audit"), ("drift-report", "drift", "Evidently drift")):
        path = Path(folder).absolute() / f"{stem}.html"  # the session link, not the run folder behind it
        if path.exists():
            links.append(Link(key, url_for(root, path), text))
    return links


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
