"""moto's server mode started as its own process: a real S3 endpoint over HTTP, for the tests
(``tests/conftest.py``'s ``s3_server``) and the object-storage bench (``bench/fleet_s3.py``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def start_moto_server(log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``moto_server`` on a free 127.0.0.1 port, its output to ``log``, answering; returns the
    process (in a session of its own) and the endpoint URL. A server that exits or does not answer
    within 60 s is stopped and reported with the end of its log."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("moto_server")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                return proc, endpoint
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server not up after 60 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.2)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
