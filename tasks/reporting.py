"""What a run shows in the Prefect UI and tells the automations.

Artifacts: a markdown summary (verdicts and the decision), a table of the champion's metrics
against the baselines, links to the HTML audit and Evidently drift reports. Events: the
``alerts_for`` list the pipeline put in the audit, emitted on the resource
``spywatch.model.<TICKER>`` with the numbers in their payload. The verdicts come from
``spywatch.report`` (the same badges as the HTML audit); this module only lays them out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from spywatch.pipeline import NightlyResult

TAGS = ("spywatch", "report")  # the retrain flow's tasks only (see tasks.night on tags)


def model_resource(ticker: str) -> dict[str, str]:
    return {"prefect.resource.id": f"spywatch.model.{ticker.upper()}", "prefect.resource.name": f"{ticker} classifier"}


@task(name="publish-artifacts", task_run_name="artifacts-{result.session}", cache_policy=NO_CACHE)
def publish_artifacts(result: NightlyResult, ticker: str) -> list[str]:
    """Summary, metrics table and report links for the run page; returns the artifact keys."""
    key = f"spywatch-{ticker.lower()}"
    keys = [f"{key}-summary"]
    create_markdown_artifact(markdown=summary_markdown(result), key=keys[0],
                             description=f"{ticker} nightly {result.session}: {result.status}")
    rows = metric_rows(result.audit)
    if rows:
        keys.append(f"{key}-metrics")
        create_table_artifact(table=rows, key=keys[-1],
                              description=f"champion vs baselines on matured labels, session {result.session}")
    for name, file, text in (("audit-report", "report", "HTML audit"), ("drift-report", "drift", "Evidently drift")):
        path = _report_path(result, file)
        if path is not None:
            keys.append(f"{key}-{name}")
            create_link_artifact(link=path.as_uri(), link_text=f"{text} {result.session}", key=keys[-1],
                                 description=str(path))
    return keys


@task(name="emit-alerts", task_run_name="alerts-{result.session}", cache_policy=NO_CACHE)
def emit_alerts(result: NightlyResult, ticker: str) -> list[str]:
    """One Prefect event per alert in the audit; the automations turn them into notifications."""
    sent = []
    for alert in result.audit.get("alerts") or []:
        payload = json.loads(json.dumps(alert["payload"], default=str))
        emit_event(event=alert["event"], resource=model_resource(ticker), payload=payload)
        sent.append(alert["event"])
    return sent


# ----------------------------------------------------------------------------- layout


def summary_markdown(result: NightlyResult) -> str:
    from spywatch import report

    a = result.audit
    badges = [report.validation_badge(a.get("validation") or None), report.drift_badge(a.get("drift")),
              report.health_badge(a.get("collapse")), report.decision_badge(a.get("decision"), a.get("retrain")),
              report.status_badge(result.status, a.get("stale"), a.get("predictions"))]
    lines = [f"# Nightly, session {result.session}: **{result.status.upper()}**", "",
             f"source `{a.get('source', '?')}`" + (" **(synthetic data)**" if a.get("synthetic") else "")
             + f" · model `{a.get('model_version')}` · run `{a.get('run_id')}`", "",
             "| check | verdict | detail |", "|---|---|---|"]
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
    if latest:
        lines += ["", "## Tonight", "| horizon | P(+1% within h) |", "|---|---|",
                  *[f"| {h} | {v:.3f} |" for h, v in latest.items() if h != "date"]]
    failures = [f for part in (a.get("validation") or {}).values() if part for f in part.get("failures", [])]
    if failures:
        lines += ["", "## Validation failures", *[f"- {_cell(_text(f))}" for f in failures[:20]]]
    if a.get("alerts"):
        lines += ["", "## Events", *[f"- `{e['event']}`" for e in a["alerts"]]]
    if a.get("timings"):
        lines += ["", "## Timings (s)", "| stage | seconds |", "|---|---|",
                  *[f"| {k} | {v} |" for k, v in a["timings"].items()]]
    lines += ["", "## Outputs", *[f"- {name}: `{path}`" for name, path in result.outputs.items()]]
    return "\n".join(lines) + "\n"


def metric_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per horizon x model: the champion, Random Forest, logistic regression, the prior."""
    from spywatch import report

    horizons = ((audit.get("performance") or {}).get("horizons")) or {}
    rows = []
    for horizon, models in horizons.items():
        table = report.metrics_table(horizon, models)
        for row in table.rows:
            rows.append({"horizon": horizon, "model": row.label,
                         **{col: cell.text for col, cell in zip(table.columns, row.cells)}})
    return rows


def _report_path(result: NightlyResult, stem: str) -> Path | None:
    folder = result.outputs.get("session folder") or (Path(result.outputs["audit"]).parent
                                                       if "audit" in result.outputs else None)
    if folder is None:
        return None
    path = Path(folder).absolute() / f"{stem}.html"  # the session link, not the run folder behind it
    return path if path.exists() else None


def _text(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("message") or item.get("detail") or json.dumps(item, sort_keys=True, default=str))
    return str(item)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@task(name="retrain-artifacts", task_run_name="retrain-artifacts-{session}", cache_policy=NO_CACHE, tags=TAGS)
def publish_retrain_artifacts(session: str, outcome: dict, ticker: str) -> None:
    """The gate's verdict and the challenger's holdout metrics on the retrain run's page."""
    gate = outcome.get("gate") or {}
    periods = outcome.get("periods") or {}
    fit = " .. ".join(periods.get("fit") or []) or "?"
    lines = [f"# Challenger `{outcome['challenger']}` for session {session}: "
             f"**{'PROMOTED' if outcome['promoted'] else 'not promoted'}** (rule `{gate.get('rule', '?')}`)", "",
             f"{outcome.get('members', 1)} member(s) fitted on {fit}, holdout {outcome['window'][0]} .. "
             f"{outcome['window'][1]}, trained in {outcome['train_seconds']:.1f} s", "",
             "## Gate", *[f"- {line}" for line in gate.get("reasons", [])]]
    create_markdown_artifact(markdown="\n".join(lines) + "\n", key=f"spywatch-{ticker.lower()}-retrain",
                             description=f"retrain for {session}")
    rows = [{"horizon": h, **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}}
            for h, m in (outcome.get("challenger_metrics") or {}).items()]
    if rows:
        create_table_artifact(table=rows, key=f"spywatch-{ticker.lower()}-challenger-metrics",
                              description=f"challenger metrics on the holdout, session {session}")
