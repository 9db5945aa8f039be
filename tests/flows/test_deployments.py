"""The real set-up on one machine: pools from deployments/pools.sh, `prefect deploy --all` from
prefect.yaml (tiny-model parameters in a test copy), automations from deployments/automations.py,
a worker on the cpu pool and one on the gpu pool.

A nightly run of the deployment on a synthetic market that crashes (volatility x3 and a steady
fall from 2023-09-01), with a tiny champion trained before: the run completes, retrains through
the `retrain` deployment on the gpu pool, publishes, its artifacts are readable through the API,
the webhook receives the drift alert, and a second run started meanwhile is cancelled by the
deployment's concurrency limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spywatch.audit_schema import check_audit
from spywatch.layout import RootLayout
from tests.flows.conftest import PREFECT
from tests.browser import ui_screenshot
from tests.flows.support import (MAX_EPOCHS, REPO, SMALL_EPOCHS, SMALL_MODEL, TINY_MODEL, alert_text, artifacts,
                                 flow_run, run_log, wait_for_run)

pytestmark = pytest.mark.integration

SESSION = "2023-11-30"
CRASH = "synthetic-regime:2023-09-01:3:-0.006"


def test_prefect_yaml_declares_the_operational_contract():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"nightly", "retrain", "backfill", "drill", "nightly-fleet", "backfill-fleet",
                                "fleet-retrain"}
    # the fleet's one pass trains on the gpu pool, as one ticker's retrain does
    assert deployments["fleet-retrain"]["work_pool"]["name"] == "gpu"
    assert deployments["fleet-retrain"]["entrypoint"] == "flows/fleet.py:fleet_retrain"
    assert deployments["nightly-fleet"]["parameters"]["one_pass_deployment"] == "fleet-retrain/fleet-retrain"
    assert deployments["backfill-fleet"]["entrypoint"] == "flows/fleet.py:backfill_fleet"
    fleet = deployments["nightly-fleet"]  # its own root and slot; the fleet file is validated as it loads
    assert fleet["entrypoint"] == "flows/fleet.py:nightly_fleet" and fleet["parameters"]["fleet_file"] == "fleet.yaml"
    assert fleet["parameters"]["root"] != deployments["nightly"]["parameters"]["root"]
    # the fleet's schedule is created paused; only the nightly runs by itself
    assert [s.get("active", True) for s in fleet["schedules"]] == [False]
    assert not deployments["backfill-fleet"].get("schedules")
    from spywatch.fleet import load_fleet

    assert "SPY" in load_fleet(REPO / fleet["parameters"]["fleet_file"]).names
    drill = deployments["drill"]  # its own slot, its own root: a drill never cancels or blocks a night
    assert drill["entrypoint"] == deployments["nightly"]["entrypoint"] and not drill.get("schedules")
    assert drill["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert drill["parameters"]["root"] != deployments["nightly"]["parameters"]["root"]
    assert drill["parameters"]["root"].startswith("{{ $SPYWATCH_ROOT }}") and drill["parameters"]["retrain_mode"] == "inline"
    nightly = deployments["nightly"]
    assert {"cron": "30 22 * * 1-5", "timezone": "America/New_York"} in nightly["schedules"]
    assert nightly["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert nightly["work_pool"]["name"] == "cpu" and deployments["retrain"]["work_pool"]["name"] == "gpu"
    assert nightly["parameters"]["retrain_mode"] == "deployment"
    assert spec["pull"] == [{"prefect.deployments.steps.set_working_directory":
                             {"directory": "{{ $SPYWATCH_REPO }}"}}]


def test_nightly_deployment_end_to_end(prefect_server, start_worker, listener, fresh_root, tmp_path):
    from prefect.deployments import run_deployment

    from spywatch.publish import Publisher

    # pools, deployments (a copy of prefect.yaml with test parameters), automations, workers
    prefect_server.run("bash", str(REPO / "deployments" / "pools.sh"), PREFECT)
    test_yaml = tmp_path / "prefect.yaml"
    test_yaml.write_text(yaml.safe_dump(_test_spec(fresh_root, tmp_path / "drills")))
    prefect_server.run(PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(test_yaml), timeout=300)
    env = {**prefect_server.env, "SPYWATCH_ALERT_WEBHOOK_URL": listener.url}
    out = _run(env, sys.executable, str(REPO / "deployments" / "automations.py"))
    assert "spywatch: no successful nightly run" in out  # the deployment exists now
    start_worker("cpu")
    start_worker("gpu")

    # the night, and a second one started while it runs
    first = run_deployment("nightly/nightly", timeout=0, as_subflow=False)
    wait_for_run(first.id, lambda s: s.is_running() or s.is_final(), timeout=180, what="Running")
    second = run_deployment("nightly/nightly", timeout=0, as_subflow=False)
    cancelled = wait_for_run(second.id, lambda s: s.is_final(), timeout=120, what="a final state")
    assert cancelled.state.is_cancelled(), cancelled.state
    assert "concurrency" in (cancelled.state.message or "").lower(), cancelled.state.message
    # a fire drill started while the night runs: its own slot and root, so it runs, fails on the
    # corrupt bar it was given, and neither cancels the night nor touches its root
    drill = run_deployment("nightly/drill", timeout=0, as_subflow=False)
    # a CLI run beside the deployment run (CANCEL_NEW guards only deployment runs): the root's lock
    # refuses it, naming the worker's process that holds the night
    holder = _wait_for_holder(fresh_root, purpose="nightly")
    cli = subprocess.run([str(Path(sys.executable).with_name("spywatch")), "run", "--no-prefect", "--root",
                          str(fresh_root), "--as-of", SESSION, "--source", CRASH, "--retrain", "never",
                          "--lock-timeout", "0"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert cli.returncode == 3, cli.stdout[-2000:] + cli.stderr[-2000:]
    assert f"PID {holder['pid']}" in cli.stderr and "nightly" in cli.stderr, cli.stderr
    done = wait_for_run(first.id, lambda s: s.is_final(), timeout=480, what="a final state")
    assert done.state.is_completed(), f"{done.state.type}: {done.state.message}"
    assert done.name == f"nightly-{SESSION}"
    drilled = wait_for_run(drill.id, lambda s: s.is_final(), timeout=300, what="a final state")
    assert drilled.state.is_failed() and "raw_bars_invalid" in (drilled.state.message or ""), drilled.state
    drill_file = next(RootLayout(tmp_path / "drills").published.rglob("audit.json"))
    drill_audit = check_audit(json.loads(drill_file.read_text()))
    assert drill_audit.failure.kind == "raw_bars_invalid" and drill_audit.synthetic

    # it retrained on the gpu pool, through the retrain deployment, and recorded the outcome
    publisher = Publisher(fresh_root)
    audit = publisher.read_audit(SESSION)
    assert audit.status == "published" and audit.drift.dataset_drift
    assert audit.decision.retrain and audit.retrain.challenger and audit.policy == "calendar"
    assert "max_age" in audit.decision.codes()
    outcome = RootLayout(fresh_root).retrain_outcome(SESSION)
    assert outcome.exists()
    retrain_runs = _deployment_runs("retrain/retrain")
    assert len(retrain_runs) == 1 and retrain_runs[0].state.is_completed()
    assert retrain_runs[0].work_pool_name == "gpu" and retrain_runs[0].name == f"retrain-{SESSION}"
    assert retrain_runs[0].parent_task_run_id is not None  # linked to the nightly run

    # the run page, read through the API
    found = artifacts(first.id)
    assert {"spywatch-spy-summary", "spywatch-spy-metrics", "spywatch-spy-audit-report",
            "spywatch-spy-drift-report"} <= set(found)
    assert "drift detected" in found["spywatch-spy-summary"].data
    retrain_page = artifacts(retrain_runs[0].id)
    assert {"spywatch-spy-retrain", "spywatch-spy-challenger-metrics"} <= set(retrain_page)
    # this machine has no CUDA: the gpu-pool retrain trained on the CPU, and says so everywhere
    if not _cuda():
        assert audit.retrain.device == "cpu" and "work pool 'gpu'" in audit.retrain.device_warning
        assert "trained on **cpu**" in retrain_page["spywatch-spy-retrain"].data
        assert "**Warning:** the retrain ran on work pool 'gpu'" in retrain_page["spywatch-spy-retrain"].data
        assert "work pool &#39;gpu&#39; but trained on cpu" in Publisher(fresh_root).session_dir(SESSION).joinpath(
            "report.html").read_text()

    # the drift alert reached the webhook, with its numbers
    alert = listener.wait_for(lambda p: "drift detected" in alert_text(p) and SESSION in alert_text(p))
    assert "Drift: fired: " in alert_text(alert) and " features drifted (" in alert_text(alert)
    assert flow_run(second.id).state.is_cancelled()


HEALTHY_SESSION = "2023-07-31"


def test_a_healthy_night_under_a_worker_tells_its_story_and_links_its_report_over_http(
        prefect_server, start_worker, healthy_champion_root, tmp_path):
    """The default policy, a champion that passes the collapse audit, a real worker: the run log
    tells the night, the artifacts hold the audit, and the report link opens over HTTP."""
    import re
    import shutil
    import urllib.request

    from prefect.deployments import run_deployment

    from spywatch.publish import Publisher
    from spywatch.vs_baseline import phrase

    root = tmp_path / "root"
    shutil.copytree(healthy_champion_root, root, symlinks=True)
    prefect_server.run("bash", str(REPO / "deployments" / "pools.sh"), PREFECT)
    test_yaml = tmp_path / "prefect.yaml"
    test_yaml.write_text(yaml.safe_dump(_test_spec(tmp_path / "unused", tmp_path / "drills")))
    prefect_server.run(PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(test_yaml), timeout=300)
    start_worker("cpu")
    serve = subprocess.Popen([str(Path(sys.executable).with_name("spywatch")), "serve", "--root", str(root),
                              "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not RootLayout(root).serve_record.exists():
            assert serve.poll() is None and time.monotonic() < deadline, serve.communicate()
            time.sleep(0.1)
        base = json.loads(RootLayout(root).serve_record.read_text())["url"]

        run = run_deployment("nightly/nightly", timeout=0, as_subflow=False, parameters={
            "root": str(root), "source": "synthetic", "as_of": HEALTHY_SESSION, "retrain_mode": "never",
            "policy": "default", "model": SMALL_MODEL, "max_epochs": SMALL_EPOCHS})
        done = wait_for_run(run.id, lambda s: s.is_final(), timeout=300, what="a final state")
        assert done.state.is_completed(), f"{done.state.type}: {done.state.message}"

        audit = Publisher(root).read_audit(HEALTHY_SESSION)
        assert audit.status == "published" and audit.collapse.verdict == "healthy"
        assert not audit.decision.retrain and audit.policy == "default"
        latest = audit.predictions.latest
        assert all(0 < latest[h] < 1 for h in ("h1", "h3", "h5"))

        # the Logs tab: one line per stage, with its numbers
        story = run_log(run.id, expect="published: P(h1)")
        for start in ("data: synthetic", "champion: ", "features suite: passed", "health: healthy", "drift: quiet",
                      "decision: keep the champion", "published: P(h1) = "):
            assert any(line.startswith(f"[{HEALTHY_SESSION}] {start}") for line in story), (start, story)
        assert any(f"P(h3) = {latest['h3']:.3f} ± {audit.predictions.member_std['h3']:.3f}" in line
                   for line in story), story
        assert sum(line.startswith("Finished in state") for line in story) <= 1, story  # the flow's; none per task

        # the Artifacts tab: the audit, and a report link that opens over HTTP
        found = artifacts(run.id)
        assert {"spywatch-spy-summary", "spywatch-spy-metrics", "spywatch-spy-health", "spywatch-spy-drift",
                "spywatch-spy-audit-report", "spywatch-spy-drift-report"} <= set(found)
        # the health artifact leads with both verdicts: collapse, and the champion against the RF
        vs = audit.vs_baseline
        shown = "healthy" + (f" · {vs.verdict}" if vs.verdict in ("lagging", "ahead") else "")
        assert found["spywatch-spy-health"].data.startswith(f"# Model health: **{shown}**\n\n{phrase(vs)}")
        assert any(phrase(vs) in line for line in story if line.startswith(f"[{HEALTHY_SESSION}] health: ")), story
        link = re.search(r"\((http://[^)]+)\)", found["spywatch-spy-audit-report"].data).group(1)
        assert link == f"{base}/sessions/{HEALTHY_SESSION}/report.html"
        with urllib.request.urlopen(link, timeout=30) as response:
            page = response.read().decode()
        assert response.status == 200 and HEALTHY_SESSION in page and "healthy" in page
        drift_link = re.search(r"\((http://[^)]+)\)", found["spywatch-spy-drift-report"].data).group(1)
        with urllib.request.urlopen(drift_link, timeout=30) as response:
            assert response.status == 200 and response.read(200)
        if os.environ.get("SPYWATCH_UPDATE_DOCS_SCREENSHOT"):
            _screenshots(prefect_server.url.removesuffix("/api"), run.id, tmp_path)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=30)


def _screenshots(ui: str, run_id, tmp_path: Path) -> None:
    """docs/ui_logs.png and docs/ui_artifacts.png: the run's Logs and Artifacts tabs in headless Chromium."""
    import shutil

    page = f"{ui}/runs/flow-run/{run_id}"
    shots = {"ui_logs.png": dict(wait_for=f"[{HEALTHY_SESSION}] published: P(h1)", size=(1440, 1900)),
             "ui_artifacts.png": dict(wait_for="Logs", click="Artifacts", then_wait_for="spywatch-spy-health")}
    for name, how in shots.items():
        png = tmp_path / name
        ui_screenshot(page, png, tmp_path / f"profile-{name}", **how)
        assert png.stat().st_size > 50_000, f"{png} looks blank"
        shutil.copyfile(png, REPO / "docs" / name)


def _test_spec(root, drill_root) -> dict:
    """prefect.yaml with the test's root, the crashing synthetic market and a tiny model."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        for schedule in deployment.get("schedules") or []:
            schedule["active"] = False  # nothing scheduled while the test runs
        if deployment["name"] in ("nightly", "retrain"):
            # the calendar policy retrains the 2023-06-30 champion on 2023-11-30 (older than a quarter)
            # whatever the tiny model's audit says, and the nightly run passes it to the retrain run
            deployment["parameters"].update({"root": str(root), "source": CRASH, "model": TINY_MODEL,
                                             "max_epochs": MAX_EPOCHS, "policy": "calendar"})
        if deployment["name"] == "nightly":
            deployment["parameters"].update({"as_of": SESSION, "fetch_backoff_s": 0.5})
        if deployment["name"] == "drill":
            deployment["parameters"].update({"root": str(drill_root), "as_of": SESSION})
        if deployment["name"] == "nightly-fleet":
            deployment["parameters"].update({"root": str(drill_root.parent / "fleet")})
    return spec


def _deployment_runs(name: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _run(env: dict, *args: str) -> str:
    import subprocess

    out = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _wait_for_holder(root: Path, purpose: str, timeout: float = 120.0) -> dict:
    """The root's lock record once a process other than this one holds it for ``purpose``."""

    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        try:
            record = json.loads(RootLayout(root).lock_holder.read_text())
        except (OSError, ValueError):
            record = None
        if record and record.get("held") and record.get("purpose") == purpose and record.get("pid") != os.getpid():
            return record
        time.sleep(0.2)
    raise AssertionError(f"no {purpose} holder of {root}'s lock within {timeout:.0f} s (last record: {record})")
