"""Past one machine: the flows with their root on object storage (moto's real S3 server), and the
fleet on a standing Dask cluster whose workers share nothing.

- the ``nightly`` flow with ``root=s3://...`` under a real Prefect server publishes into the
  bucket, and its summary artifact points readers there;
- ``nightly-fleet`` on a scheduler and two workers started as separate processes (``dask
  scheduler``, ``dask worker``, not a LocalCluster), each worker in its own scratch folder and
  working directory: every ticker is published in the bucket;
- a worker SIGKILLed in the middle of a ticker's night: Dask runs the ticker again on a live
  worker, which waits for the dead holder's lease to expire, takes it over, redoes the night and
  publishes; nothing torn (``latest.json`` names a complete session), and the fleet's result and
  summary say which ticker was redone and whose lease was taken over.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.flows.conftest import free_port, stop_process
from tests.flows.support import REPO, SMALL_EPOCHS, SMALL_MODEL, artifacts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ETF = REPO / "data" / "etf"
SESSION = "2024-12-31"
LEASE_TTL_S = "6"  # a killed worker's lease expires in seconds, not the default minute


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    scratch: list[Path] = field(default_factory=list)

    def worker_pids(self) -> set[int]:
        """The worker processes' PIDs (each ``dask worker`` runs its worker under a nanny)."""
        import psutil

        pids = set()
        for nanny in self.workers:
            try:
                pids |= {c.pid for c in psutil.Process(nanny.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
        return pids


@pytest.fixture
def cluster(prefect_server, s3_server, tmp_path) -> Iterator[Cluster]:
    """A Dask scheduler and two workers, each a process of its own with its own scratch folder and
    working directory (no path of one is known to another); they reach Prefect and S3 through the
    environment and import the flows from this checkout."""
    python = sys.executable
    port = free_port()
    env = {**prefect_server.env, **s3_server.env, "PYTHONPATH": str(REPO), "SPYWATCH_LEASE_TTL_S": LEASE_TTL_S,
           "GX_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    with open(logs / "scheduler.log", "wb") as fh:
        scheduler = subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                      "--port", str(port), "--dashboard-address", ":0"], env=env, cwd=tmp_path,
                                     stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"tcp://127.0.0.1:{port}"
    made = Cluster(address, scheduler)
    try:
        for i in range(2):
            scratch = tmp_path / f"worker-{i}"
            scratch.mkdir()
            with open(logs / f"worker-{i}.log", "wb") as fh:
                made.workers.append(subprocess.Popen(
                    [python, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                     "--local-directory", str(scratch), "--name", f"w{i}", "--no-dashboard"],
                    env={**env, "SPYWATCH_SCRATCH": str(scratch)}, cwd=scratch, stdout=fh, stderr=subprocess.STDOUT,
                    start_new_session=True))
            made.scratch.append(scratch)
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield made
    finally:
        for proc in [*made.workers, scheduler]:
            stop_process(proc, grace=5)
        for log in sorted(logs.iterdir()):  # kept in the failure output
            print(f"--- {log.name}\n{log.read_text()[-2000:]}")


def _etf(tmp_path: Path, tickers: tuple[str, ...]) -> Path:
    data = tmp_path / "etf"
    data.mkdir(exist_ok=True)
    for t in tickers:
        shutil.copyfile(ETF / f"{t}.csv", data / f"{t}.csv")
    return data


def test_the_nightly_flow_publishes_into_the_bucket(prefect_server, s3_server, monkeypatch):
    from flows.nightly import nightly
    from spywatch.objectroot import ObjectRoot

    monkeypatch.setenv("SPYWATCH_LEASE_TTL_S", LEASE_TTL_S)
    url = f"s3://{s3_server.bucket()}/spy"
    state = nightly(root=url, as_of="2023-06-30", source="synthetic", retrain_mode="inline", model=SMALL_MODEL,
                    max_epochs=SMALL_EPOCHS, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["outputs"]["report"] == f"{url}/published/sessions/2023-06-30/report.html"
    remote = ObjectRoot(url)
    latest = remote.read_json("published/latest.json")
    assert latest["session"] == "2023-06-30" and not latest["stale"]
    assert remote.fs.exists(remote.key("published/" + latest["report"]))
    assert remote.read_json("models/champion.json")["version"] == latest["model_version"]
    summary = artifacts(state.state_details.flow_run_id)["spywatch-spy-summary"]
    assert f"{url}/published/sessions/2023-06-30/audit.json" in summary.data


def test_the_fleet_on_a_standing_cluster_with_a_worker_killed_mid_night(cluster, prefect_server, s3_server,
                                                                         tmp_path, monkeypatch):
    from flows.fleet import nightly_fleet
    from spywatch.objectroot import ObjectRoot, join

    monkeypatch.setenv("SPYWATCH_LEASE_TTL_S", LEASE_TTL_S)
    tickers = ("QQQ", "DIA")
    data = _etf(tmp_path, tickers)
    url = f"s3://{s3_server.bucket()}/fleet"
    fleet = ObjectRoot(url)
    killed: dict = {}

    def kill_a_worker_mid_night() -> None:
        """SIGKILL the worker that holds the first ticker lease seen (mid-night: fetched, training)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for t in tickers:
                lease = fleet.read_json(f"tickers/{t}/.lease.json")
                if lease and lease["pid"] in cluster.worker_pids():
                    time.sleep(3)  # well inside its night (a retrain takes ~20 s)
                    os.kill(lease["pid"], signal.SIGKILL)
                    killed.update(ticker=t, pid=lease["pid"])
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_worker_mid_night, daemon=True)
    killer.start()
    state = nightly_fleet(root=url, tickers=list(tickers), as_of=SESSION, source=f"csv-dir:{data}",
                          retrain_mode="inline", model=SMALL_MODEL, max_epochs=SMALL_EPOCHS,
                          dask_address=cluster.address, return_state=True)
    killer.join(timeout=5)
    assert killed, "no worker was caught holding a ticker's lease"
    assert state.is_completed(), state.message
    nights = {n.row.ticker: n for n in state.result()["rows"]}
    for t in tickers:  # every ticker published in the bucket, complete
        root = ObjectRoot(join(url, "tickers", t))
        latest = root.read_json("published/latest.json")
        assert latest["session"] == SESSION and latest["ticker"] == t and not latest["stale"], latest
        assert root.read_json(f"published/sessions/{SESSION}/audit.json")["run_id"] == latest["run_id"]
        assert root.fs.exists(root.key("published/" + latest["report"]))
        assert root.read_json(".lease.json") is None  # released
        assert nights[t].row.status == "published"
    # the killed worker's ticker was redone elsewhere, over its lease, and the result says so
    redone = nights[killed["ticker"]]
    assert redone.took_over is not None and redone.took_over["pid"] == killed["pid"], redone
    assert redone.worker and not redone.worker.endswith(f":{killed['pid']}")
    summary = artifacts(state.state_details.flow_run_id)["spywatch-fleet-summary"]
    assert f"**{killed['ticker']}**: redone on worker" in summary.data
    assert fleet.fs.exists(fleet.key("fleet.html"))
    # nothing of a working copy is left in the workers' scratch folders
    assert not [p for s in cluster.scratch for p in s.glob("spywatch-root-*")]
