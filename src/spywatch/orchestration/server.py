"""A local Prefect server for one command: ``prefect server start`` on a free 127.0.0.1 port with
a project-local PREFECT_HOME, started before Prefect is imported and stopped by its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def prefect_cli() -> list[str]:
    """The ``prefect`` command of this interpreter: the script beside it (``.venv/bin/prefect``),
    else ``python -m prefect`` (Prefect installed with ``pip --target`` brings no script there)."""
    script = Path(sys.executable).with_name("prefect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


def prefect_command() -> str:
    """``prefect`` as this shell can run it: the one beside this interpreter (``.venv/bin/prefect``),
    relative to the current directory when it is under it."""
    prefect = Path(sys.executable).with_name("prefect").absolute()
    try:
        return str(prefect.relative_to(Path.cwd()))
    except ValueError:
        return str(prefect)


class LocalServer:
    """``prefect server start`` on a free 127.0.0.1 port with a project-local PREFECT_HOME, stopped
    by its PID (its process group) when the run is over."""

    def __init__(self, proc: subprocess.Popen, url: str, home: Path, log: Path) -> None:
        self.proc, self.url, self.home, self.log = proc, url, home, log

    @classmethod
    def start(cls, home: Path) -> LocalServer:
        home.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/api"
        os.environ.update({"PREFECT_HOME": str(home), "PREFECT_API_URL": url,
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
        log = home / "server.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen([*prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                                     "--no-scheduler", "--no-late-runs", "--analytics-off"],
                                    env=os.environ.copy(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(proc, url, home, log)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s; see {self.log}")

    STOPPED = b"Server stopped!"  # printed by `prefect server start` once uvicorn has returned

    def stop(self, timeout: float = 10.0) -> None:
        """A graceful stop (SIGINT: uvicorn's shutdown, the services stop, pending events are
        persisted), then SIGKILL for the interpreter's own teardown (~1 s of freeing modules) once
        the server has said it stopped; SIGKILL as well if it has not stopped within ``timeout``."""
        if self.proc.poll() is not None:
            return
        offset = self.log.stat().st_size if self.log.exists() else 0
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self.STOPPED in self._log_since(offset):
                    break
                time.sleep(0.02)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5.0)
        except ProcessLookupError:
            return

    def _log_since(self, offset: int) -> bytes:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return b""
