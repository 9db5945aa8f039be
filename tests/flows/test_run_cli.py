"""``spywatch run``: the nightly flow once, end to end, on a Prefect server the command starts and
stops itself (no server to start by hand). (``--no-prefect`` is ``pipeline.run_nightly``, which
the champion fixture runs.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flows.support import REPO, kill_processes_using

pytestmark = pytest.mark.integration

SPYWATCH = str(Path(sys.executable).with_name("spywatch"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def test_spywatch_run_starts_its_own_prefect_and_prints_where_things_are(fresh_root):
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
    assert "spywatch nightly for session 2023-07-31: PUBLISHED" in text
    assert f"session folder: {fresh_root / 'published' / 'sessions' / '2023-07-31'}" in text
    assert f"PREFECT_HOME={fresh_root / 'prefect'} prefect server start" in text
    assert "/runs/flow-run/" in text and "wall time:" in text
    assert Publisher(fresh_root).read_audit("2023-07-31")["status"] == "published"
    assert (fresh_root / "prefect" / "server.log").exists()  # its history stays with the outputs

