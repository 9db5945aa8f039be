"""Shared constants and readers for the flow tests: runs read back through the Prefect API (what
the UI shows) and the alerts the webhook listener received."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}
MAX_EPOCHS = 2
# A small model that learns enough in a few epochs to pass the collapse audit with the defaults
# (the tiny one above does not): the healthy night's champion (~20 s to train on 2 cores).
SMALL_MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "head_hidden": 16}
SMALL_EPOCHS = 4
CHAMPION_AS_OF = "2023-06-30"


def alert_text(post: dict) -> str:
    """Title and text of a notification POST (the block sends JSON {"title", "text", ...})."""
    data = post["json"]
    return f"{data.get('title', '')} {data.get('text', '')}" if isinstance(data, dict) else str(data)


def flow_run(run_id: UUID):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def wait_for_run(run_id: UUID, done: Callable[[object], bool], timeout: float, what: str = "state"):
    """Poll the run until ``done(state)``; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    run = flow_run(run_id)
    while time.monotonic() < deadline:
        run = flow_run(run_id)
        if run.state is not None and done(run.state):
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run {run.name} ({run_id}) did not reach {what} within {timeout:.0f} s; "
                         f"last state {run.state.type if run.state else None}: {run.state.message if run.state else ''}")


def task_runs(run_id: UUID) -> dict[str, object]:
    """Task runs of a flow run by name."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {r.name: r for r in runs}


def task_run_states(task_run_id: UUID) -> list[str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [s.name for s in client.read_task_run_states(task_run_id)]


def run_log(run_id: UUID, timeout: float = 30.0, expect: str | None = None) -> list[str]:
    """The flow run's log lines as the UI's Logs tab shows them (read back through the API), once
    ``expect`` (if given) is among them: the log handler ships its records in batches."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            lines = [r.message for r in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                                                         limit=200)]
        if expect is None or any(expect in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def artifacts(run_id: UUID) -> dict[str, object]:
    """Artifacts of a flow run by key."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return {a.key: a for a in found}


def kill_processes_using(marker: str) -> list[int]:
    """Kill (by PID) processes of this user whose environment mentions ``marker`` (e.g. a test's
    PREFECT_HOME): what a killed command may have left behind. Returns the PIDs."""
    import os
    import signal

    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
        except (OSError, ProcessLookupError):
            continue
    return killed
