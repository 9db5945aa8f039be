"""The fleet: three tickers on a real Prefect server and a Dask LocalCluster of two workers, one
with a corrupt last bar: two publish, one fails alone, the fleet run is Failed and names it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, chromium
from tests.flows.support import REPO, SMALL_EPOCHS, SMALL_MODEL

pytestmark = pytest.mark.integration

ETF = REPO / "data" / "etf"
SESSION = "2024-12-31"


def _corrupt_last_bar(path: Path) -> None:
    lines = path.read_text().splitlines()
    date, open_, high, low, close, volume = lines[-1].split(",")
    lines[-1] = ",".join([date, open_, str(float(low) - 1), str(float(high) + 1), close, volume])  # High < Low
    path.write_text("\n".join(lines) + "\n")


def test_a_fleet_on_dask_publishes_the_good_tickers_and_fails_the_bad_one_alone(prefect_server, tmp_path,
                                                                                  monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.fleet import nightly_fleet
    from spywatch import fleet
    from spywatch.layout import RootLayout
    from spywatch.publish import Publisher

    data = tmp_path / "etf"
    data.mkdir()
    for ticker in ("QQQ", "DIA", "TLT"):
        shutil.copyfile(ETF / f"{ticker}.csv", data / f"{ticker}.csv")
    _corrupt_last_bar(data / "TLT.csv")
    # the Dask workers are new processes: they reach the server through the environment
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)
    root = tmp_path / "fleet"

    state = nightly_fleet(root=str(root), tickers=["QQQ", "DIA", "TLT"], as_of=SESSION, source=f"csv-dir:{data}",
                          retrain_mode="inline", model=SMALL_MODEL, max_epochs=SMALL_EPOCHS, n_workers=2,
                          return_state=True)

    assert state.is_failed(), state
    assert "1 of 3 tickers failed (TLT: raw_bars_invalid)" in state.message, state.message
    layout = RootLayout(root)
    for ticker in ("QQQ", "DIA"):  # the good ones published on their own roots
        audit = Publisher(layout.ticker(ticker).root).read_audit(SESSION)
        assert audit.status == "published" and audit.data.source == "csv-dir", ticker
        assert set(audit.predictions.probabilities()) >= {"h1", "h3", "h5"}
    tlt = Publisher(layout.ticker("TLT").root)
    failure = tlt.read_audit(SESSION).failure
    assert tlt.latest().stale and failure.kind == "raw_bars_invalid"
    # why, by name: the check, its column and the offending date, in the failure, the summary and the page
    assert failure.reason.startswith("raw_bars validation failed: high_ge_low [high]"), failure.reason
    assert f"1 row(s): {SESSION}" in failure.reason and "more check(s)" in failure.reason, failure.reason
    assert not layout.ticker("QQQ").attempts(SESSION).exists()

    # each night ran as a task on a Dask worker process, not in this one
    rows = {r.ticker: r for r in fleet.fleet_rows(root)}
    assert [r.status for r in rows.values()] == ["published", "published", "validation_failed"]
    with get_client(sync_client=True) as client:
        summary = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "spywatch-fleet-summary"])))
        per_ticker = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "spywatch-qqq-summary", "spywatch-dia-summary", "spywatch-tlt-summary"])))
    assert "2 of 3 tickers published, **1 failed**: TLT" in summary[0].data
    assert "high_ge_low [high]" in summary[0].data, summary[0].data
    assert {a.key for a in per_ticker} == {"spywatch-qqq-summary", "spywatch-dia-summary", "spywatch-tlt-summary"}
    runs = _task_runs_named("night-")
    assert len(runs) == 3 and all(r["pid"] not in (None, os.getpid()) for r in runs), runs

    # the fleet page: one row per ticker, its links open the tickers' reports
    page = layout.fleet_page
    text = page.read_text()
    assert "2 of 3 tickers published; failed: TLT" in text
    assert f"high_ge_low [high]: high &gt;= low: 1 row(s): {SESSION}" in text
    assert f'href="tickers/QQQ/published/sessions/{SESSION}/report.html"' in text
    assert (layout.ticker("QQQ").session(SESSION) / "report.html").exists()
    if CHROMIUM.exists():
        dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
        for ticker in ("QQQ", "DIA", "TLT"):
            assert f"<b>{ticker}</b>" in dom
        assert dom.count('class="ok"') == 2 and dom.count('class="bad"') == 1


def _task_run_names(prefix: str, since) -> list[str]:  # noqa: ANN001 - a datetime
    """The names of the task runs like ``prefix`` that started after ``since`` (this test's)."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=prefix),
                                                                   start_time=TaskRunFilterStartTime(after_=since)))
    return [r.name for r in runs]


def _task_runs_named(prefix: str) -> list[dict]:
    """The fleet's ticker tasks and the process each ran in (from the line each logs when done)."""
    import re
    import time

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=prefix)))
        out = []
        for run in runs:
            deadline, pid = time.monotonic() + 30, None
            while pid is None and time.monotonic() < deadline:
                lines = [r.message for r in client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[run.id])))]
                found = [re.search(r"on worker .+:(\d+)$", line) for line in lines]
                pid = next((int(m.group(1)) for m in found if m), None)
                time.sleep(0.5 if pid is None else 0)
            out.append({"name": run.name, "state": run.state.type.value if run.state else None, "pid": pid})
    return out


@pytest.mark.parametrize("one_pass", [False, True], ids=["fanned-out", "lock-step-one-pass"])
def test_a_fleet_backfill_fans_out_and_a_ticker_without_the_history_fails_alone(prefect_server, tmp_path, monkeypatch,
                                                                                one_pass):
    """The fleet's replays fanned out on Dask, or in lock-step with each session's retrains fitted in
    one pass: either way a ticker without the history fails alone and the other's record is whole."""
    import datetime
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.fleet import backfill_fleet
    from spywatch.layout import RootLayout

    data = tmp_path / "etf"
    data.mkdir()
    shutil.copyfile(ETF / "QQQ.csv", data / "QQQ.csv")
    lines = (ETF / "DIA.csv").read_text().splitlines()
    (data / "NEW.csv").write_text("\n".join([lines[0], *[r for r in lines[1:] if r >= "2024-06-01"]]) + "\n")
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)
    root = tmp_path / "fleet"
    since = datetime.datetime.now(datetime.timezone.utc)

    state = backfill_fleet(root=str(root), start="2024-10-01", end="2024-12-31", tickers=["QQQ", "NEW"],
                           source=f"csv-dir:{data}", model=SMALL_MODEL, max_epochs=SMALL_EPOCHS, rf_trees=20,
                           n_workers=2, one_pass=one_pass, return_state=True)

    assert state.is_failed() and "1 of 2 backfills failed (NEW)" in state.message, state.message
    record = json.loads((RootLayout(root).ticker("QQQ").backfill / "policy.json").read_text())
    assert [s["session"] for s in record["steps"]] == ["2024-10-31", "2024-11-29", "2024-12-31"]
    assert record["steps"][0]["retrained"] and record["summary"]["errors"] == 0
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["spywatch-fleet-backfill"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert "| QQQ | 3 |" in artifact.data and "| NEW | **failed**: 3 of 3 nights not published" in artifact.data
    names = _task_run_names("backfill-", since)
    assert (names == ["backfill-lockstep-2024-10-01-2024-12-31"]) == one_pass, names
    assert (sorted(names) == ["backfill-NEW", "backfill-QQQ"]) != one_pass, names


def test_spywatch_run_tickers_and_fleet_status_from_the_command_line(tmp_path):
    import subprocess
    import sys

    from spywatch.layout import RootLayout
    from tests.flows.support import kill_processes_using

    data = tmp_path / "etf"
    data.mkdir()
    for ticker in ("QQQ", "DIA"):
        shutil.copyfile(ETF / f"{ticker}.csv", data / f"{ticker}.csv")
    root = tmp_path / "fleet"
    spywatch = str(Path(sys.executable).with_name("spywatch"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # the command starts its own server
    try:
        run = subprocess.run([spywatch, "run", "--tickers", "qqq,DIA", "--source", f"csv-dir:{data}", "--as-of", SESSION,
                              "--root", str(root)], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        leftovers = kill_processes_using(f"PREFECT_HOME={RootLayout(root).prefect}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "# Fleet: 2 of 2 tickers published" in run.stdout
    assert f"fleet page: {RootLayout(root).fleet_page}" in run.stdout
    assert not leftovers
    status = subprocess.run([spywatch, "fleet", "status", "--root", str(root)], capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[:3] == ["ticker", "session", "status"]
    assert [line.split()[:3] for line in lines[1:3]] == [["DIA", SESSION, "published"], ["QQQ", SESSION, "published"]]
    # a root that is not a fleet gets a usage error with a hint
    missing = subprocess.run([spywatch, "fleet", "status", "--root", str(tmp_path / "nothing")], capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "is not a fleet root" in missing.stderr


def test_spywatch_backfill_tickers_replays_the_fleet_from_the_command_line(tmp_path):
    import json
    import subprocess
    import sys

    from spywatch.layout import RootLayout
    from tests.flows.support import kill_processes_using

    data = tmp_path / "etf"
    data.mkdir()
    shutil.copyfile(ETF / "QQQ.csv", data / "QQQ.csv")
    root, out = tmp_path / "fleet", tmp_path / "fleet-backfill.json"
    spywatch = str(Path(sys.executable).with_name("spywatch"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # the command starts its own server
    model = ",".join(f"{k}={v}" for k, v in SMALL_MODEL.items())
    argv = [spywatch, "backfill", "--tickers", "qqq", "--source", f"csv-dir:{data}", "--start", "2024-11-01",
            "--end", "2024-12-31", "--model", model, "--max-epochs", str(SMALL_EPOCHS), "--rf-trees", "20",
            "--root", str(root), "--out", str(out)]

    def backfill(*extra: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*argv, *extra], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        finally:
            assert not kill_processes_using(f"PREFECT_HOME={RootLayout(root).prefect}")

    run = backfill()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [row] = json.loads(out.read_text())["tickers"]
    assert row["ticker"] == "QQQ" and row["steps"] == 2 and row["retrains"] >= 1 and row["errors"] == 0
    record_path = RootLayout(root).ticker("QQQ").backfill / "policy.json"
    record = json.loads(record_path.read_text())
    assert [s["session"] for s in record["steps"]] == ["2024-11-29", "2024-12-31"]
    assert "QQQ      2 steps" in run.stdout and "backfill-fleet: COMPLETED" in run.stdout

    # a recorded fleet replay is neither overwritten nor resumed with other settings (refused before a server starts)
    again = backfill()
    assert again.returncode == 2 and "QQQ: " in again.stderr and "already holds a backfill record" in again.stderr
    other = backfill("--resume", "--frequency", "weekly")
    assert other.returncode == 2 and "QQQ: " in other.stderr and "other settings" in other.stderr
    assert json.loads(record_path.read_text())["steps"] == record["steps"]
    # resumed: both steps are recorded, so neither is replayed (their records stay as they were)
    resumed = backfill("--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "QQQ      2 steps" in resumed.stdout and "backfill-fleet: COMPLETED" in resumed.stdout
    assert json.loads(record_path.read_text())["steps"] == record["steps"]


@pytest.mark.parametrize("where", ["gpu-pool", "in-process"])
def test_a_fleet_in_one_pass_defers_the_retrains_fits_them_together_and_publishes_each_gated(
        prefect_server, start_worker, tmp_path, monkeypatch, where):
    """``retrain_mode="one-pass"``: two tickers' first nights want a challenger; each stops before
    its retrain with nothing published, both challengers are fitted in one stack (the same epochs:
    each history's epoch seconds are the whole stack's) by the ``fleet-retrain`` flow (the deployment
    on the ``gpu`` pool's worker, or a subflow), and each night runs again, gates its own challenger
    and publishes with it."""
    import datetime
    import json

    import pandas as pd
    import yaml
    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey,
                                                DeploymentFilter, DeploymentFilterId)

    from flows.fleet import nightly_fleet
    from spywatch.bundle import ModelBundle
    from spywatch.layout import RootLayout
    from spywatch.publish import Publisher
    from spywatch.registry import ModelRegistry
    from tests.flows.conftest import PREFECT

    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)
    deployment = "fleet-retrain/fleet-retrain" if where == "gpu-pool" else None
    if deployment:  # the fleet-retrain deployment of prefect.yaml, alone, on the gpu pool with a worker
        prefect_server.run("bash", str(REPO / "deployments" / "pools.sh"), PREFECT)
        spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
        spec["deployments"] = [d for d in spec["deployments"] if d["name"] == "fleet-retrain"]
        (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(spec))
        prefect_server.run(PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file",
                           str(tmp_path / "prefect.yaml"), timeout=300)
        start_worker("gpu")
    root = tmp_path / "fleet"
    since = datetime.datetime.now(datetime.timezone.utc)
    state = nightly_fleet(root=str(root), tickers=["QQQ", "DIA"], as_of=SESSION, source=f"csv-dir:{ETF}",
                          retrain_mode="one-pass", model=SMALL_MODEL, max_epochs=SMALL_EPOCHS, n_workers=2,
                          one_pass_deployment=deployment, return_state=True)

    assert state.is_completed(), state
    layout = RootLayout(root)
    histories, versions = {}, {}
    for ticker in ("QQQ", "DIA"):
        troot = layout.ticker(ticker).root
        audit = Publisher(troot).read_audit(SESSION)
        assert audit.status == "published" and audit.retrain is not None and audit.retrain.promoted, ticker
        # the stopped run took every bar into the store; the published night counts them, not its own run's none
        stored = pd.read_parquet(RootLayout(troot).bars_file(ticker))
        assert audit.data.new_sessions == len(stored) > 0 and audit.data.last_session == SESSION, audit.data
        registry = ModelRegistry(RootLayout(troot).models)
        assert registry.champion == audit.retrain.challenger == audit.model_version
        assert [v.version for v in registry.list()] == [audit.retrain.challenger]  # fitted once, not again
        versions[ticker] = audit.retrain.challenger
        bundle = ModelBundle.load(registry.get(audit.retrain.challenger).path)
        assert bundle.data["trained_session"] == SESSION and bundle.periods["holdout"] == audit.retrain.window
        histories[ticker] = [e["seconds"] for m in bundle.metrics["members"] for e in m["history"]]
        assert len(histories[ticker]) == 2 * SMALL_EPOCHS
    assert histories["QQQ"] == histories["DIA"]  # one stack: every epoch timed once for both
    names = (sorted(_task_run_names("night-", since)) + _task_run_names("one-pass-", since)
             + _task_run_names("fleet-retrain-on-pool", since))
    assert names == ["night-DIA", "night-DIA", "night-QQQ", "night-QQQ", "one-pass-2-tickers",
                     *(["fleet-retrain-on-pool-fleet-retrain/fleet-retrain"] if deployment else [])], names
    fleet_run = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        summary = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["spywatch-fleet-summary"]), flow_run_id=ArtifactFilterFlowRunId(any_=[fleet_run])))
        text = summary[0].data
        assert "One-pass retrain: 2 tickers' challengers fitted together" in text and "failed: none" in text, text
        if not deployment:
            assert "work pool" not in text
            return
        [pass_run] = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(
            any_=[client.read_deployment_by_name(deployment).id])))
    # the pass ran on the gpu pool's worker, linked to the fleet run, and left its outcome for it
    assert pass_run.state.is_completed() and pass_run.work_pool_name == "gpu" and pass_run.parent_task_run_id
    assert pass_run.name == "fleet-retrain-2-tickers" and "work pool gpu" in text, text
    outcome = json.loads(layout.fleet_retrain_outcome(str(fleet_run)).read_text())["outcome"]
    assert {t: f["version"] for t, f in outcome["tickers"].items()} == versions and outcome["pool"] == "gpu"


def test_a_one_pass_that_fails_as_a_whole_still_runs_each_waiting_night_and_publishes_its_failure(
        prefect_server, tmp_path, monkeypatch):
    """The pass cannot run at all (here: its deployment does not exist): every waiting night runs
    again all the same and publishes its own failure naming the pass's error (no champion yet, so
    no predictions), the summary names the tickers, and the fleet run ends Failed."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.fleet import nightly_fleet
    from spywatch.layout import RootLayout
    from spywatch.publish import Publisher

    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)
    root = tmp_path / "fleet"
    state = nightly_fleet(root=str(root), tickers=["QQQ", "DIA"], as_of=SESSION, source=f"csv-dir:{ETF}",
                          retrain_mode="one-pass", model=SMALL_MODEL, max_epochs=SMALL_EPOCHS, n_workers=2,
                          one_pass_deployment="fleet-retrain/no-such-deployment", return_state=True)

    assert state.is_failed() and "2 of 2 tickers failed (QQQ: no_champion; DIA: no_champion)" in state.message
    for ticker in ("QQQ", "DIA"):
        audit = Publisher(RootLayout(root).ticker(ticker).root).read_audit(SESSION)
        assert audit.status == "failed" and audit.failure.kind == "no_champion", ticker
        assert "the fleet's one-pass retrain fitted no challenger: ObjectNotFound" in audit.retrain.error, audit.retrain
        assert audit.data.new_sessions > 0  # the stopped run's bars, counted
    with get_client(sync_client=True) as client:
        [summary] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["spywatch-fleet-summary"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert "One-pass retrain of 2 tickers could not run: ObjectNotFound" in summary.data, summary.data
    assert "each waiting night published its retrain's failure" in summary.data
