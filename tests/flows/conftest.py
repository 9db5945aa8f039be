"""Fixtures for flow tests under a real Prefect server on 127.0.0.1.

- ``prefect_server``: ``prefect server start`` on a free port with a PREFECT_HOME under the test's
  tmp dir (analytics off, DO_NOT_TRACK=1); this process talks to it through
  ``temporary_settings``; subprocesses get ``server.env``.
- ``start_worker``: ``prefect worker start --pool NAME`` processes.
- ``listener``: a tiny HTTP server on 127.0.0.1 that records the POSTs the automations send.
- ``champion_root``: a root with a tiny champion trained once (``night.run_night`` on clean
  synthetic data at 2023-06-30); ``fresh_root`` copies it for each test.

Every process started here is stopped by its PID (its process group: SIGINT, then SIGKILL) at
the end, pass or fail; the worker before the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))  # flows/ and tasks/ are top-level packages of the checkout

from tests.flows.support import CHAMPION_AS_OF, MAX_EPOCHS, REPO, SMALL_EPOCHS, SMALL_MODEL, TINY_MODEL  # noqa: E402

BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGINT the process group we started (its children with it), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # a flow-run child that outlived the worker
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------- server


@dataclass
class PrefectServer:
    url: str
    home: Path
    env: dict[str, str]
    log: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess:
        """A CLI command against this server; its output is kept in the failure message."""
        out = subprocess.run(list(args), env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out


def prefect_env(home: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1",
                "SPYWATCH_REPO": str(REPO), "PYTHONUNBUFFERED": "1", "GX_ANALYTICS_ENABLED": "False"})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    base = tmp_path_factory.mktemp("prefect")
    home = base / "home"
    log = base / "server.log"
    proc, url = start_server(home, log, cwd=base)
    server = PrefectServer(url=url, home=home, env=prefect_env(home, url), log=log)
    try:
        with client_of(url, home):
            yield server
    finally:
        for worker in reversed(server.processes):  # workers first, then the server
            stop_process(worker)
        stop_process(proc)


def start_server(home: Path, log: Path, *options: str, cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` on a free 127.0.0.1 port with ``PREFECT_HOME=home``, healthy; returns
    the process (in a group of its own, for ``stop_process``) and its API URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), *options],
                                env={**prefect_env(home, None), "PREFECT_UI_API_URL": url}, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(url, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc, url


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def client_of(url: str, home: Path) -> Iterator[None]:
    """This process's Prefect client pointed at the server at ``url`` (with ``home`` as its
    PREFECT_HOME), for the body only.

    The events and API-log workers are per-process singletons that read the API URL when they
    start, so one started for another server would keep sending there: they are drained (stopped
    after delivering) on the way in and on the way out, and restart under these settings."""
    from prefect.settings import (PREFECT_API_URL, PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH,
                                  PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings)

    _drain_events()
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: home,
                                     PREFECT_LOCAL_STORAGE_PATH: home / "storage",
                                     PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        try:
            yield
        finally:
            _drain_events()


def _drain_events() -> None:
    """Send what this process has emitted before the server goes away."""
    try:
        from spywatch.orchestration.api import drain_events

        drain_events()
    except Exception:  # best effort at teardown  # noqa: BLE001
        pass


@pytest.fixture(scope="session")
def start_worker(prefect_server: PrefectServer) -> Callable[[str], subprocess.Popen]:
    """``start_worker("cpu")``: a worker on that pool, stopped (by PID) before the server."""

    def start(pool: str) -> subprocess.Popen:
        log = prefect_server.home.parent / f"worker-{pool}.log"
        with open(log, "ab") as fh:
            # INFO: the flow runs' own lines (the night's story) reach the API, as in production
            proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--limit", "4"],
                                    env={**prefect_server.env, "PREFECT_LOGGING_LEVEL": "INFO"}, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        prefect_server.processes.append(proc)
        return proc

    return start


# ----------------------------------------------------------------------------- alerts


@dataclass
class Listener:
    url: str
    posts: list[dict]

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for post in list(self.posts):
                if predicate(post):
                    return post
            time.sleep(0.2)
        raise AssertionError(f"no matching POST within {timeout:.0f} s; received: "
                             f"{json.dumps(self.posts, indent=1, default=str)[:3000]}")


@pytest.fixture(scope="session")
def listener() -> Iterator[Listener]:
    posts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                data = json.loads(body)
            except ValueError:
                data = {"raw": body.decode(errors="replace")}
            posts.append({"path": self.path, "json": data, "at": time.time()})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Listener(url=f"http://127.0.0.1:{server.server_address[1]}/alerts", posts=posts)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def automations(prefect_server: PrefectServer, listener: Listener) -> str:
    """The real automations script, pointed at the listener (the no-success alert needs the
    deployments, so it is created by the integration test after deploying)."""
    env = {**prefect_server.env, "SPYWATCH_ALERT_WEBHOOK_URL": listener.url}
    out = subprocess.run([sys.executable, str(REPO / "deployments" / "automations.py")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# ----------------------------------------------------------------------------- roots


@pytest.fixture(scope="session")
def champion_root(tmp_path_factory) -> Path:
    """Bars to 2023-06-30 and a promoted tiny champion, trained once for the session.

    The tiny 2-epoch model spreads its probabilities less than the default collapse floor, so
    its first promotion uses a relaxed floor; nightly runs then audit it with the defaults."""
    from spywatch.audit import CollapsePolicy
    from spywatch.night import PipelineConfig, run_night
    from spywatch.registry import ModelRegistry

    root = tmp_path_factory.mktemp("champion") / "root"
    result = run_night(PipelineConfig(source="synthetic", root=root, as_of=CHAMPION_AS_OF, model=TINY_MODEL,
                                        max_epochs=MAX_EPOCHS, collapse=CollapsePolicy(min_pred_std=1e-5)), force=True)
    assert result.audit.to_json_dict()["retrain"] and result.audit.to_json_dict()["retrain"]["promoted"], result.summary()
    assert ModelRegistry(root / "models").champion is not None
    return root


@pytest.fixture(scope="session")
def healthy_champion_root(tmp_path_factory) -> Path:
    """Bars to 2023-06-30 and a small champion that passed the collapse audit with the defaults."""
    from spywatch.night import PipelineConfig, run_night

    root = tmp_path_factory.mktemp("healthy") / "root"
    result = run_night(PipelineConfig(source="synthetic", root=root, as_of=CHAMPION_AS_OF, model=SMALL_MODEL,
                                        max_epochs=SMALL_EPOCHS), force=True)
    assert result.audit.to_json_dict()["retrain"]["promoted"] and result.audit.to_json_dict()["collapse"]["verdict"] == "healthy", result.summary()
    return root


@pytest.fixture
def fresh_root(champion_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(champion_root, root, symlinks=True)
    return root
