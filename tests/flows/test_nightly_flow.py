"""The ``nightly`` flow in this process against a real Prefect server: what a run publishes, what
the UI gets (named runs, retries, artifacts) and how it ends on bad data and a dead provider."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.flows.support import (MAX_EPOCHS, TINY_MODEL, alert_text, artifacts, run_log, task_run_states,
                                 task_runs)

pytestmark = pytest.mark.integration


def run_nightly_flow(root, as_of: dt.date, source: str):
    from flows.nightly import nightly

    return nightly(root=str(root), as_of=as_of, source=source, retrain_mode="never", model=TINY_MODEL,
                   max_epochs=MAX_EPOCHS, fetch_backoff_s=0.1, return_state=True)


def test_fetch_fails_twice_then_the_night_is_published_with_artifacts(prefect_server, fresh_root):
    from spywatch.publish import Publisher

    state = run_nightly_flow(fresh_root, dt.date(2023, 7, 31), "faulty:2:synthetic")

    assert state.is_completed(), state.message
    out = state.result()
    assert out["status"] == "published" and out["session"] == "2023-07-31"
    run_id = state.state_details.flow_run_id

    # three attempts of the fetch, recorded by the server
    tasks = task_runs(run_id)
    fetch = tasks["fetch-2023-07-31"]
    assert fetch.run_count == 3, fetch
    assert fetch.state.is_completed()
    history = task_run_states(fetch.id)  # Pending, Running, AwaitingRetry, Retrying, ..., Completed
    assert sum(name in ("Running", "Retrying") for name in history) == 3, history
    assert history.count("AwaitingRetry") == 2 and history[-1] == "Completed", history
    assert {"features-2023-07-31", "audit-2023-07-31", "decide-2023-07-31", "publish-2023-07-31",
            "artifacts-2023-07-31", "alerts-2023-07-31"} <= set(tasks)

    # what was published, once
    publisher = Publisher(fresh_root)
    audit = publisher.read_audit("2023-07-31")
    assert audit.status == "published" and audit.run_id == str(run_id)
    assert publisher.latest().session == "2023-07-31" and not publisher.latest().stale
    assert set(publisher.read_predictions().query("session == '2023-07-31'")["horizon"]) == {"h1", "h3", "h5"}

    # the night's story in the run log: one line per stage, with its numbers
    story = run_log(run_id, expect="published: P(h1)")
    for start in ("[2023-07-31] data: synthetic", "[2023-07-31] champion: ", "[2023-07-31] features suite: passed",
                  "[2023-07-31] health: ", "[2023-07-31] drift: ", "[2023-07-31] decision: ",
                  "[2023-07-31] published: P(h1) = "):
        assert any(line.startswith(start) for line in story), (start, story)
    latest = audit.predictions.latest
    assert any(f"P(h5) = {latest['h5']:.3f}" in line for line in story), story

    # the run page: summary, metrics against baselines, links to the reports
    found = artifacts(run_id)
    assert {"spywatch-spy-summary", "spywatch-spy-metrics", "spywatch-spy-audit-report",
            "spywatch-spy-drift-report"} <= set(found)
    summary = found["spywatch-spy-summary"].data
    assert "2023-07-31" in summary and "Drift" in summary and "Decision" in summary
    models = {row["model"] for row in json.loads(found["spywatch-spy-metrics"].data)}
    assert len(models) >= 3  # champion, Random Forest, logistic (and the prior)
    link = found["spywatch-spy-drift-report"]  # stored as markdown: [text](file:///...)
    assert link.type == "markdown" and "(file:///" in link.data, link.data
    assert link.data.endswith("/published/sessions/2023-07-31/drift.html)"), link.data
    assert found["spywatch-spy-audit-report"].data.endswith("/published/sessions/2023-07-31/report.html)")


def test_bad_bars_publish_only_the_failure_audit_and_fail_the_run(prefect_server, automations, listener,
                                                                  fresh_root):
    from spywatch.publish import Publisher

    publisher = Publisher(fresh_root)
    good = publisher.latest().session

    state = run_nightly_flow(fresh_root, dt.date(2023, 7, 31), "corrupt:bad-ohlc:synthetic")

    assert state.is_failed()
    assert "raw_bars validation failed" in state.message
    tasks = task_runs(state.state_details.flow_run_id)
    assert tasks["fetch-2023-07-31"].run_count == 1  # bad data is not retried
    audit = publisher.read_audit("2023-07-31")
    assert audit.status == "validation_failed" and audit.predictions is None
    assert not audit.validation.raw_bars.success
    latest = publisher.latest()
    assert latest.session == good and latest.stale and latest.stale_since == "2023-07-31"
    assert "2023-07-31" not in set(publisher.read_predictions()["session"])
    # the event and the failed run, both through the automations to the webhook
    listener.wait_for(lambda p: "data validation failed" in alert_text(p) and "2023-07-31" in alert_text(p))
    listener.wait_for(lambda p: "nightly-2023-07-31" in alert_text(p) and "Failed" in alert_text(p))


def test_a_fetch_that_keeps_failing_publishes_its_failure_marks_stale_and_alerts(prefect_server, automations,
                                                                                  listener, fresh_root):
    from spywatch.publish import Publisher

    publisher = Publisher(fresh_root)
    good = publisher.latest().session
    predictions_before = publisher.predictions_path.read_bytes()

    state = run_nightly_flow(fresh_root, dt.date(2023, 8, 31), "faulty:always:synthetic")

    assert state.is_failed()
    assert "injected fetch failure 3/always" in state.message
    fetch = task_runs(state.state_details.flow_run_id)["fetch-2023-08-31"]
    assert fetch.run_count == 3 and fetch.state.is_failed()
    audit = publisher.read_audit("2023-08-31")  # the failure audit only
    assert audit.status == "failed" and audit.predictions is None
    assert audit.failure.kind == "fetch_failed" and audit.failure.stage == "fetch"
    assert not (publisher.session_dir("2023-08-31") / "predictions.parquet").exists()
    latest = publisher.latest()
    assert latest.session == good and latest.stale and latest.stale_since == "2023-08-31"
    assert "injected fetch failure" in latest.reason
    assert publisher.predictions_path.read_bytes() == predictions_before
    alert = listener.wait_for(lambda p: "nightly-2023-08-31" in alert_text(p) and "Failed" in alert_text(p))
    assert "injected fetch failure" in alert_text(alert)


def test_a_tampered_champion_is_refused_publishes_the_failure_audit_and_fails_the_run(prefect_server, fresh_root):
    from spywatch.publish import Publisher
    from spywatch.registry import ModelRegistry

    registry = ModelRegistry(fresh_root / "models")
    version = registry.champion
    weights = registry.versions_dir / version / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    publisher = Publisher(fresh_root)
    predictions_before = publisher.predictions_path.read_bytes()

    state = run_nightly_flow(fresh_root, dt.date(2023, 7, 31), "synthetic")

    assert state.is_failed()
    assert "champion model refused" in state.message and "weights.pt" in state.message
    assert task_runs(state.state_details.flow_run_id)["champion-2023-07-31"].state.is_failed()
    audit = publisher.read_audit("2023-07-31")
    assert audit.status == "failed" and audit.predictions is None
    assert "weights.pt" in audit.champion_error
    assert registry.champion == version  # the alias did not move
    assert publisher.latest().stale and publisher.predictions_path.read_bytes() == predictions_before
