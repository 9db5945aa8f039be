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
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.flows.conftest import PREFECT
from tests.flows.support import MAX_EPOCHS, REPO, TINY_MODEL, alert_text, artifacts, flow_run, wait_for_run

pytestmark = pytest.mark.integration

SESSION = "2023-11-30"
CRASH = "synthetic-regime:2023-09-01:3:-0.006"


def test_prefect_yaml_declares_the_operational_contract():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"nightly", "retrain", "backfill"}
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
    test_yaml.write_text(yaml.safe_dump(_test_spec(fresh_root)))
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

    # it retrained on the gpu pool, through the retrain deployment, and recorded the outcome
    publisher = Publisher(fresh_root)
    audit = publisher.read_audit(SESSION)
    assert audit["status"] == "published" and audit["drift"]["dataset_drift"]
    assert audit["decision"]["retrain"] and audit["retrain"]["challenger"] and audit["policy"] == "calendar"
    assert "max_age" in [r["code"] for r in audit["decision"]["reasons"]]
    outcome = (fresh_root / "state" / "retrain" / f"{SESSION}.json")
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
    assert {"spywatch-spy-retrain", "spywatch-spy-challenger-metrics"} <= set(artifacts(retrain_runs[0].id))

    # the drift alert reached the webhook, with its numbers
    alert = listener.wait_for(lambda p: "drift detected" in alert_text(p) and SESSION in alert_text(p))
    assert "Drifted share 0." in alert_text(alert)
    assert flow_run(second.id).state.is_cancelled()


def _test_spec(root) -> dict:
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


def _wait_for_holder(root: Path, purpose: str, timeout: float = 120.0) -> dict:
    """The root's lock record once a process other than this one holds it for ``purpose``."""
    import os

    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        try:
            record = json.loads((root / ".lock.json").read_text())
        except (OSError, ValueError):
            record = None
        if record and record.get("held") and record.get("purpose") == purpose and record.get("pid") != os.getpid():
            return record
        time.sleep(0.2)
    raise AssertionError(f"no {purpose} holder of {root}'s lock within {timeout:.0f} s (last record: {record})")
