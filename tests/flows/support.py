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


def ui_screenshot(url: str, png: Path, profile: Path, wait_for: str, click: str | None = None,
                  then_wait_for: str | None = None, size: tuple[int, int] = (1440, 1300), timeout: float = 90.0) -> None:
    """A PNG of a page of the Prefect UI (a single-page app: the command-line ``--screenshot`` fires
    before its data arrives), driven over the DevTools protocol: load ``url``, wait until the page
    shows ``wait_for``, optionally click the tab or button labelled ``click`` and wait for
    ``then_wait_for``, then capture."""
    import base64
    import itertools
    import json as _json
    import re
    import subprocess
    import urllib.request

    from websockets.sync.client import connect

    proc = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
            port = found and found.group(1)
        assert port, "chromium did not open its DevTools port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            page = next(t for t in _json.loads(r.read()) if t["type"] == "page")
        ids = itertools.count(1)
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            def call(method: str, **params):  # noqa: ANN202
                n = next(ids)
                ws.send(_json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    message = _json.loads(ws.recv(timeout=timeout))
                    if message.get("id") == n:
                        assert "error" not in message, message
                        return message["result"]

            def wait_text(text: str) -> None:
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    shown = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                                 returnByValue=True)["result"].get("value") or ""
                    if text in shown:
                        return
                    time.sleep(0.5)
                raise AssertionError(f"{url}: {text!r} never appeared on the page")

            call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False)
            call("Page.enable")
            call("Page.navigate", url=url)
            wait_text(wait_for)
            if click:
                script = ("(() => { const el = [...document.querySelectorAll('button, a, [role=tab], li')]"
                          f".find(e => e.textContent.trim() === {_json.dumps(click)}); if (el) el.click(); return !!el; }})()")
                assert call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"], click
                wait_text(then_wait_for or click)
            time.sleep(1.5)  # let the last rows render
            data = call("Page.captureScreenshot", format="png")["data"]
        png.write_bytes(base64.b64decode(data))
    finally:
        proc.kill()
        proc.wait(timeout=30)
