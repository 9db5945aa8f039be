"""What a run's page in the Prefect UI shows: plain data built from the audit, no Prefect here.

``tasks/reporting.py`` turns these into artifacts: a markdown summary (verdicts, decision,
tonight's probabilities), the champion's metrics against the baselines (table), the collapse
evidence (markdown), the drift tests (table), the promotion gate (markdown) and links to the HTML
audit and the Evidently report over HTTP (``spywatch.serve``). The verdicts come from
``spywatch.report`` (the same badges and sentences as the HTML audit); this module lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spywatch import report
from spywatch.report import fmt, sig


@dataclass(frozen=True)
class Link:
    key: str  # artifact key suffix
    url: str
    text: str


def summary_markdown(session: str, status: str, audit: dict[str, Any], outputs: dict[str, Any],
                     links: list[Link] = ()) -> str:
    a = audit
    badges = [report.validation_badge(a.get("validation") or None), report.drift_badge(a.get("drift")),
              report.health_badge(a.get("collapse"), (a.get("health") or {}).get("vs_baseline")),
              report.decision_badge(a.get("decision"), a.get("retrain")),
              report.status_badge(status, a.get("stale"), a.get("predictions"))]
    model = f"model `{a['model_version']}`" if a.get("model_version") else "no champion"
    lines = [f"# Nightly {a.get('ticker') or 'SPY'}, session {session}: **{status.upper()}**", "",
             f"source `{a.get('source', '?')}`" + (" **(synthetic data)**" if a.get("synthetic") else "")
             + f" · {model} · run `{a.get('run_id')}`", ""]
    if links:
        lines += [" · ".join(f"[{link.text}]({link.url})" for link in links), ""]
    if a.get("failure"):
        f = a["failure"]
        lines += [f"**Failure** `{f['kind']}` in stage `{f['stage']}`: {_cell(f['reason'])}. {_cell(f.get('meaning', ''))}",
                  ""]
    lines += ["| check | verdict | detail |", "|---|---|---|"]
    lines += [f"| {b.label} | **{b.value}** | {_cell(b.detail)} |" for b in badges]
    decision = a.get("decision") or {}
    if decision.get("reasons"):
        lines += ["", "## Why retrain", *[f"- `{r['code']}`: {r['message']}" for r in decision["reasons"]]]
    if (a.get("retrain") or {}).get("error"):
        lines += ["", f"## The retrain failed: {_cell(a['retrain']['error'])}",
                  "Tonight's predictions come from the champion, which passed tonight's audit."]
    elif a.get("retrain"):
        r = a["retrain"]
        lines += ["", f"## Challenger `{r['challenger']}`: {'promoted' if r['promoted'] else 'not promoted'}",
                  *[f"- {line}" for line in (r.get("gate") or {}).get("reasons", [])]]
    latest = (a.get("predictions") or {}).get("latest") or {}
    spread = (a.get("predictions") or {}).get("member_std") or {}
    if latest:
        lines += ["", "## Tonight", "| horizon | P(+1% within h) | member spread (std) |", "|---|---|---|",
                  *[f"| {h} | {fmt(v)} | {fmt(spread.get(h))} |" for h, v in latest.items() if h != "date"]]
    failures = [f for part in (a.get("validation") or {}).values() if part for f in part.get("failures", [])]
    if failures:
        lines += ["", "## Validation failures", *[f"- {_cell(_text(f))}" for f in failures[:20]]]
        if len(failures) > 20:
            lines.append(f"- … and {len(failures) - 20} more (list cut at 20; all are in audit.json)")
    if a.get("alerts"):
        lines += ["", "## Events", *[f"- `{e['event']}`" for e in a["alerts"]]]
    if a.get("timings"):
        lines += ["", "## Timings (s)", "| stage | seconds |", "|---|---|",
                  *[f"| {k} | {v:.2f} |" for k, v in a["timings"].items()]]
    lines += ["", "## Outputs", *[f"- {name}: `{path}`" for name, path in outputs.items()]]
    return "\n".join(lines) + "\n"


def metric_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per horizon x model: the champion, Random Forest, logistic regression, the prior."""
    horizons = ((audit.get("performance") or {}).get("horizons")) or {}
    rows = []
    for horizon, models in horizons.items():
        table = report.metrics_table(horizon, models)
        for row in table.rows:
            rows.append({"horizon": horizon, "model": row.label,
                         **{col: cell.text for col, cell in zip(table.columns, row.cells)}})
    return rows


def health_markdown(audit: dict[str, Any]) -> str | None:
    """The collapse audit's evidence: what the verdict rests on, per horizon and per member."""
    c = audit.get("collapse")
    if not c:
        return None
    badge = report.health_badge(c, (audit.get("health") or {}).get("vs_baseline"))
    ev = c.get("evidence") or {}
    lines = [f"# Model health: **{badge.value}**", "", badge.detail, ""]
    if c.get("findings"):
        lines += ["## Findings", *[f"- {_cell(report.line_text(f))}" for f in c["findings"]], ""]
    horizons = report.horizon_order(ev.get("pred_std") or {})
    if horizons:
        lines += ["## Predictions on the audit window", "", "| horizon | mean P | std of P | training prior | AUC |",
                  "|---|---|---|---|---|",
                  *[f"| {h} | {fmt((ev.get('pred_mean') or {}).get(h))} | {fmt((ev.get('pred_std') or {}).get(h), 4)} | "
                    f"{fmt((ev.get('prior') or {}).get(h))} | {fmt((ev.get('auc') or {}).get(h))} |" for h in horizons],
                  ""]
    lines += ["## Signals", "", "| signal | value |", "|---|---|",
              f"| encoder output std (pooled) | {sig(ev.get('representation_std'))} |",
              f"| attention entropy / uniform | {fmt(ev.get('attention_entropy_ratio'))} |",
              f"| positional / content norm | {fmt(ev.get('pos_to_content_ratio'))} |", ""]
    members = c.get("members") or []
    if members:
        hs = report.horizon_order(members[0].get("pred_std") or {})
        lines += [f"## Members ({len(members)})", "", "| member | " + " | ".join(f"std of P {h}" for h in hs) + " |",
                  "|---" * (len(hs) + 1) + "|",
                  *[f"| {m.get('member')} | " + " | ".join(fmt((m.get('pred_std') or {}).get(h), 4) for h in hs) + " |"
                    for m in members], ""]
    shifts = report.top_shifts(ev.get("feature_shift_std") or {})
    if shifts:
        lines += ["## Inputs furthest from training (training std)", "",
                  ", ".join(f"{s.feature} {s.value:+.2f}" for s in shifts), ""]
    return "\n".join(lines)


def drift_table(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """Every drift test of tonight: the training rule's per-feature tests, then the regime rule's."""
    d = audit.get("drift") or {}
    rows = [{"rule": "vs training", "feature": r.feature, "method": r.method, "score": r.score, "drift when": r.rule,
             "drifted": "yes" if r.drifted else "no"} for r in report.drift_rows(d.get("per_feature") or {})]
    regime = (d.get("regime") or {}).get("per_feature") or {}
    rows += [{"rule": "vs the last year", "feature": r.feature, "method": r.method, "score": r.score,
              "drift when": r.rule, "drifted": "yes" if r.drifted else "no"} for r in report.drift_rows(regime)]
    return rows


def gate_markdown(retrain: dict[str, Any] | None, session: str) -> str | None:
    """The promotion gate: the paired comparison on the holdout, its interval and the rule that fired."""
    if not retrain or retrain.get("error") or not retrain.get("gate"):
        return None
    gate = retrain["gate"]
    details = gate.get("details") or {}
    cmp_ = details.get("comparison") or {}
    periods = retrain.get("periods") or {}
    lines = [f"# Gate for challenger `{retrain['challenger']}` (session {session}): "
             f"**{'PROMOTED' if retrain.get('promoted') else 'not promoted'}**, rule `{details.get('rule', '?')}`", ""]
    lines += [f"{retrain.get('members', 1)} member(s) trained on **{retrain.get('device') or 'an unrecorded device'}** in "
              f"{retrain.get('train_seconds', 0):.1f} s" + (f"; fit {' .. '.join(periods['fit'])}" if periods.get("fit")
                                                             else "")
              + (f", holdout {' .. '.join(periods['holdout'])}" if periods.get("holdout") else ""), ""]
    if retrain.get("device_warning"):
        lines += [f"**Warning:** {retrain['device_warning']}", ""]
    training = retrain.get("training")
    if training:
        lines += [f"Training audit: **{training['verdict']}**"
                  + (f" ({'; '.join(f['finding'] + ' in member ' + str(f['member']) for f in training['findings'])})"
                     if training.get("findings") else ""), ""]
    if cmp_.get("estimate") is not None:
        boot = cmp_.get("bootstrap") or {}
        lines += [f"Challenger - champion {cmp_.get('metric', 'mean_auc')}: **{cmp_['estimate']:+.4f}**, "
                  f"{100 * boot.get('level', 0.9):.0f}% CI [{cmp_['ci_low']:+.4f}, {cmp_['ci_high']:+.4f}], "
                  f"P(challenger better) {cmp_['p_a_better']:.2f}, on {cmp_.get('n_sessions')} sessions "
                  f"{' .. '.join(cmp_.get('span') or [])} (paired block bootstrap, blocks of {boot.get('block')} "
                  f"sessions, {boot.get('n_boot')} resamples)", ""]
        by_h = cmp_.get("by_horizon") or {}
        if by_h:
            lines += ["| horizon | challenger AUC | champion AUC | difference |", "|---|---|---|---|",
                      *[f"| {h} | {fmt(v.get('a'))} | {fmt(v.get('b'))} | {v['diff']:+.4f} |"
                        for h, v in by_h.items() if v.get("diff") is not None], ""]
    lines += ["## Checks", *[f"- {line}" for line in gate.get("reasons", [])]]
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


def _text(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("message") or item.get("detail") or report.readable(item))
    return str(item)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
