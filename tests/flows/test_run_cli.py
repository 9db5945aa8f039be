"""``spywatch run``: the nightly flow once, end to end, on a Prefect server the command starts and
stops itself (no server to start by hand); two runs on one root, with and without Prefect: one
does the night, the other waits or refuses naming the holder. (``--no-prefect`` is
``night.run_night``, which the champion fixture runs.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.flows.conftest import start_server, stop_process
from tests.flows.support import REPO, kill_processes_using

pytestmark = pytest.mark.integration

SPYWATCH = str(Path(sys.executable).with_name("spywatch"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def test_spywatch_run_starts_its_own_prefect_and_prints_where_things_are(fresh_root):
    from spywatch.audit_schema import RunStatus
    from spywatch.publish import Publisher

    try:
        out = subprocess.run([SPYWATCH, "run", "--source", "synthetic", "--as-of", "2023-07-31", "--root",
                              str(fresh_root), "--retrain", "never"], env=_env(), cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    finally:  # the command stops its server itself; if it was killed, its server must not outlive the test
        leftovers = kill_processes_using(f"PREFECT_HOME={fresh_root / 'prefect'}")
    assert not leftovers, f"spywatch run left processes behind: {leftovers}"

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "spywatch nightly SPY for session 2023-07-31: PUBLISHED" in text
    assert f"session folder: {fresh_root / 'published' / 'sessions' / '2023-07-31'}" in text
    assert text.startswith(f"spywatch run: session 2023-07-31; root {fresh_root}")  # the session, echoed
    prefect = str(Path(sys.executable).with_name("prefect").relative_to(REPO))  # as the shell runs it from cwd
    assert f"PREFECT_HOME={fresh_root / 'prefect'} {prefect} server start" in text
    # the night's story, one line per stage, without Prefect's bare "Finished in state" lines
    for stage in ("data: synthetic", "champion: ", "features suite: passed", "drift: ", "decision: ",
                  "published: P(h1) = "):
        assert f"[2023-07-31] {stage}" in out.stdout + out.stderr, stage
    assert (out.stdout + out.stderr).count("Finished in state") <= 1  # the flow's own; none per task
    assert "/runs/flow-run/" in text and "wall time:" in text
    assert Publisher(fresh_root).read_audit("2023-07-31").status == RunStatus.PUBLISHED
    assert (fresh_root / "prefect" / "server.log").exists()  # its history stays with the outputs

    # The command stops its server quickly (SIGKILL once the server has said it stopped, no
    # interpreter teardown of its own): the run's history must all be there when the server is
    # started again on the same PREFECT_HOME: final states, artifacts, and the last events.
    run_id = re.search(r"/runs/flow-run/([0-9a-f-]{36})", text).group(1)
    history = _read_history(fresh_root / "prefect", run_id)
    assert history["flow_state"] == "COMPLETED", history
    assert history["task_states"] and set(history["task_states"]) == {"COMPLETED"}, history
    assert {"spywatch-spy-summary", "spywatch-spy-audit-report"} <= set(history["artifact_keys"]), history
    assert {"prefect.flow-run.Running", "prefect.flow-run.Completed", "prefect.task-run.Completed"} <= set(
        history["events"]), history


def _read_history(home: Path, run_id: str) -> dict:
    import httpx

    proc, url = start_server(home, home / "reread.log", "--no-services")
    try:
        flow_run = httpx.get(f"{url}/flow_runs/{run_id}").json()
        ids = {"any_": [run_id]}
        tasks = httpx.post(f"{url}/task_runs/filter", json={"flow_runs": {"id": ids}}).json()
        arts = httpx.post(f"{url}/artifacts/filter", json={"artifacts": {"flow_run_id": ids}}).json()
        events = httpx.post(f"{url}/events/filter", json={
            "filter": {"any_resource": {"id": [f"prefect.flow-run.{run_id}"]},
                       "occurred": {"since": flow_run["created"]}}, "limit": 50}).json()
        return {"flow_state": flow_run["state_type"], "task_states": [t["state_type"] for t in tasks],
                "artifact_keys": [a["key"] for a in arts if a.get("key")],
                "events": sorted({e["event"] for e in events["events"]})}
    finally:
        stop_process(proc)


def _holder(root: Path, pid: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads((root / ".lock.json").read_text())
        except (OSError, ValueError):
            record = None
        if record and record.get("held") and record.get("pid") == pid:
            return record
        time.sleep(0.1)
    raise AssertionError(f"PID {pid} never held the lock on {root}")


@pytest.mark.parametrize("prefect", [False, True], ids=["no-prefect", "prefect"])
def test_two_runs_on_one_root_one_does_the_night_the_other_refuses_or_waits(fresh_root, prefect):
    import pandas as pd

    from spywatch.publish import Publisher

    cmd = [SPYWATCH, "run", "--source", "synthetic", "--as-of", "2023-07-31", "--root", str(fresh_root),
           "--retrain", "never", *([] if prefect else ["--no-prefect"])]
    first = subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder = _holder(fresh_root, first.pid)
        assert holder["purpose"] == "spywatch run"
        refused = subprocess.run([*cmd, "--lock-timeout", "0"], env=_env(), cwd=REPO, capture_output=True,
                                 text=True, timeout=120)
        waiter = subprocess.Popen([*cmd, "--lock-timeout", "300"], env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        out, err = first.communicate(timeout=300)
        waited_out, waited_err = waiter.communicate(timeout=300)
    finally:
        kill_processes_using(f"PREFECT_HOME={fresh_root / 'prefect'}")
    assert refused.returncode == 3, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"PID {first.pid}" in refused.stderr and "since" in refused.stderr, refused.stderr
    assert first.returncode == 0, out[-3000:] + err[-3000:]
    assert "2023-07-31: PUBLISHED" in out
    assert waiter.returncode == 0, waited_out[-3000:] + waited_err[-3000:]
    assert "waiting up to 300 s for the lock" in waited_err and f"PID {first.pid}" in waited_err
    assert "session 2023-07-31 is already published" in waited_out  # it waited, then found the night done
    table = pd.read_parquet(Publisher(fresh_root).predictions_path)
    mine = table[table["session"] == "2023-07-31"]
    assert len(mine) == 3 and mine["run_id"].nunique() == 1 and not table.duplicated(["session", "horizon"]).any()
    for path in (fresh_root / "published").rglob("*.parquet"):
        pd.read_parquet(path)  # every parquet readable
