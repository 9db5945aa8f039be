"""What a run shows in the Prefect UI and tells the automations.

Artifacts (laid out by ``spywatch.report.run_page``): the summary, the champion's metrics against the
baselines, the collapse evidence, the drift tests, the promotion gate, and links to the HTML audit
and the Evidently report over HTTP (``SPYWATCH_PUBLIC_URL`` or ``spywatch serve``; ``file://``
otherwise). Events: the ``alerts_for`` list the pipeline put in the audit, emitted on the resource
``spywatch.model.<TICKER>`` with the numbers in their payload.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from spywatch.audit_schema import Retrain
from spywatch.report import run_page
from spywatch.report.text import drift_detail
from spywatch.night import NightlyResult

TAGS = ("spywatch", "report")  # the retrain flow's tasks only (see tasks.night on tags)


def model_resource(ticker: str) -> dict[str, str]:
    return {"prefect.resource.id": f"spywatch.model.{ticker.upper()}", "prefect.resource.name": f"{ticker} classifier"}


@task(name="publish-artifacts", task_run_name="artifacts-{result.session}", cache_policy=NO_CACHE)
def publish_artifacts(result: NightlyResult, ticker: str, root: Path) -> list[str]:
    """The run page: summary, metrics, model health, drift tests, the gate, report links; returns the keys."""
    key = f"spywatch-{ticker.lower()}"
    a = result.audit
    links = run_page.report_links(root, result.outputs)
    keys = [f"{key}-summary"]
    create_markdown_artifact(markdown=run_page.summary_markdown(result.session, result.status, a, result.outputs,
                                                                links),
                             key=keys[0], description=f"{ticker} nightly {result.session}: {result.status}")
    rows = run_page.metric_rows(a)
    if rows:
        keys.append(f"{key}-metrics")
        create_table_artifact(table=rows, key=keys[-1],
                              description=f"champion vs baselines on matured labels, session {result.session}")
    health = run_page.health_markdown(a)
    if health:
        keys.append(f"{key}-health")
        create_markdown_artifact(markdown=health, key=keys[-1], description=f"collapse audit, session {result.session}")
    drift = run_page.drift_table(a)
    if drift:
        keys.append(f"{key}-drift")
        create_table_artifact(table=drift, key=keys[-1],
                              description=f"drift tests, session {result.session}: {drift_detail(a.drift)}")
    gate = run_page.gate_markdown(a.retrain, result.session)
    if gate:
        keys.append(f"{key}-gate")
        create_markdown_artifact(markdown=gate, key=keys[-1], description=f"promotion gate, session {result.session}")
    for link in links:
        keys.append(f"{key}-{link.key}")
        create_link_artifact(link=link.url, link_text=f"{link.text} {result.session}", key=keys[-1],
                             description=link.url)
    return keys


@task(name="emit-alerts", task_run_name="alerts-{result.session}", cache_policy=NO_CACHE)
def emit_alerts(result: NightlyResult, ticker: str) -> list[str]:
    """One Prefect event per alert in the audit; the automations turn them into notifications."""
    sent = []
    for alert in result.audit.alerts:
        payload = json.loads(json.dumps(alert.payload, default=str))
        emit_event(event=alert.event, resource=model_resource(ticker), payload=payload)
        sent.append(alert.event)
    return sent


@task(name="retrain-artifacts", task_run_name="retrain-artifacts-{session}", cache_policy=NO_CACHE, tags=TAGS)
def publish_retrain_artifacts(session: str, outcome: dict, ticker: str) -> None:
    """The gate (paired comparison, interval, rule, device) and the challenger's holdout metrics on
    the retrain run's page."""
    create_markdown_artifact(markdown=run_page.gate_markdown(Retrain.model_validate(outcome), session),
                             key=f"spywatch-{ticker.lower()}-retrain",
                             description=f"retrain for {session}")
    rows = [{"horizon": h, **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}}
            for h, m in (outcome.get("challenger_metrics") or {}).items()]
    if rows:
        create_table_artifact(table=rows, key=f"spywatch-{ticker.lower()}-challenger-metrics",
                              description=f"challenger metrics on the holdout, session {session}")
