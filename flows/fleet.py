"""The ``nightly-fleet`` flow: one night per ticker, fanned out on a Dask cluster.

Each ticker's night is ``pipeline.run_night`` on the ticker's own root (``spywatch.fleet``), as one
Prefect task run on a Dask worker (``prefect-dask``'s ``DaskTaskRunner``): a temporary
``LocalCluster`` by default, an existing cluster with ``dask_address``. Failures stay with their
ticker: a ticker whose bars are bad publishes its failure audit and marks its own predictions
stale while the others publish; the fleet run then ends Failed naming the tickers that failed,
after its summary artifact and ``ROOT/fleet.html`` are written. Retrains run in the ticker's task
(``inline``) or on the ``gpu`` pool through the retrain deployment (``deployment``), as for one
ticker.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from spywatch import fleet as fleet_mod
from tasks.night import night_config, session_label


class FleetFailed(RuntimeError):
    """Some tickers' nights failed (their audits say why); the others were published."""


@task(name="ticker-night", task_run_name="night-{ticker}", cache_policy=NO_CACHE)
def ticker_night(root: str, ticker: str, as_of: dt.date | None, source: str, policy: str,
                 retrain_mode: str, retrain_deployment: str, model: dict | None, max_epochs: int | None,
                 device: str, run_id: str | None, threads: int | None = None) -> dict:
    """One ticker's night on its own root; returns its fleet row (never raises for a bad night).
    ``threads``: torch's CPU threads in this worker (the cores shared out between the workers)."""
    from dataclasses import replace

    import torch

    from spywatch import pipeline, run_page
    from tasks.retrain import retrain_on_pool

    troot = fleet_mod.ticker_root(root, ticker)
    cfg = night_config(str(troot), as_of, source, ticker, model, max_epochs, device, run_id=run_id, policy=policy)
    if threads:
        torch.set_num_threads(threads)
        cfg = replace(cfg, threads=threads)

    def on_pool(night: pipeline.Night) -> dict:
        request = {"as_of": night.sid, "root": str(troot), "source": source, "ticker": ticker, "model": model,
                   "max_epochs": max_epochs, "device": device, "request_id": night.run_id, "policy": policy}
        return retrain_on_pool.fn(troot, night.sid, retrain_deployment, request)

    retrain = {"inline": pipeline.retrain_inline, "never": None, "deployment": on_pool}[retrain_mode]
    result = pipeline.run_night(cfg, retrain=retrain)
    if result.status != pipeline.RunStatus.ALREADY_PUBLISHED:
        links = run_page.report_links(troot, result.outputs)
        create_markdown_artifact(markdown=run_page.summary_markdown(result.session, result.status, result.audit,
                                                                    result.outputs, links),
                                 key=f"spywatch-{ticker.lower()}-summary",
                                 description=f"{ticker} nightly {result.session}: {result.status}")
    row = fleet_mod.ticker_row(root, ticker, {"session": result.session, "status": str(result.status)})
    worker = f"{socket.gethostname()}:{os.getpid()}"
    get_run_logger().info("%s %s: %s on worker %s", ticker, result.session, result.status, worker)
    return {**row, "ok": result.ok, "worker": worker}


def _run_name() -> str:
    return f"nightly-fleet-{session_label(flow_run.parameters.get('as_of'))}"


@flow(name="nightly-fleet", flow_run_name=_run_name, timeout_seconds=8 * 3600, log_prints=True)
def nightly_fleet(root: str, tickers: list[str] | None = None, fleet_file: str | None = None,
                  as_of: dt.date | None = None, source: str = "yfinance", policy: str = "default",
                  retrain_mode: Literal["inline", "deployment", "never"] = "deployment",
                  retrain_deployment: str = "retrain/retrain", model: dict[str, int] | None = None,
                  max_epochs: int | None = None, device: str = "auto", dask_address: str | None = None,
                  n_workers: int = 2) -> dict:
    """One night for every ticker of the fleet.

    Args:
        root: the fleet root (one sub-root per ticker under ``tickers/``).
        tickers, fleet_file: the tickers (with ``source``/``policy`` for all), or a fleet file with
            per-ticker overrides; one of the two.
        dask_address: an existing Dask scheduler (``tcp://host:8786``); default: a temporary
            ``LocalCluster`` of ``n_workers`` single-threaded workers.
        the rest: as for ``nightly``.
    """
    from prefect_dask import DaskTaskRunner

    if (tickers is None) == (fleet_file is None):
        raise ValueError("give either tickers or fleet_file")
    fleet = fleet_mod.load_fleet(fleet_file) if fleet_file else fleet_mod.fleet_of(tickers, source, policy)
    if dask_address:
        runner = DaskTaskRunner(address=dask_address)  # its workers need this checkout on their path
        threads = None  # each worker host's own setting
    else:
        _checkout_on_path()
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1})
        # the host's cores shared out: two workers each training on all cores oversubscribe them
        # (4 tickers on 2 cores: 58 s per ticker instead of ~20)
        threads = max(1, (os.cpu_count() or 1) // max(1, min(n_workers, len(fleet.tickers))))
    specs = [{"ticker": t.ticker, "source": t.source, "policy": t.policy} for t in fleet.tickers]
    rows = fleet_nights.with_options(task_runner=runner)(root, specs, as_of, retrain_mode, retrain_deployment,
                                                         model, max_epochs, device, threads)
    page = fleet_mod.write_page(root, rows)
    create_markdown_artifact(markdown=fleet_mod.summary_markdown(rows) + f"\nFleet page: `{page}`\n",
                             key="spywatch-fleet-summary", description=f"fleet of {len(rows)} tickers")
    failed = [r["ticker"] for r in rows if not r["ok"]]
    get_run_logger().info("fleet: %d of %d tickers published; page %s", len(rows) - len(failed), len(rows), page)
    if failed:
        detail = "; ".join(f"{r['ticker']}: {r['failure'] or r['status']}" for r in rows if not r["ok"])
        raise FleetFailed(f"{len(failed)} of {len(rows)} tickers failed ({detail}); the others were published")
    return {"tickers": fleet.names, "page": str(page), "rows": rows}


@flow(name="fleet-nights")
def fleet_nights(root: str, specs: list[dict], as_of: dt.date | None, retrain_mode: str,
                 retrain_deployment: str, model: dict | None, max_epochs: int | None, device: str,
                 threads: int | None = None) -> list[dict]:
    """The fan-out: one ``ticker_night`` per ticker on the flow's task runner, results in fleet order."""
    futures = [ticker_night.submit(root, s["ticker"], as_of, s["source"], s["policy"], retrain_mode,
                                   retrain_deployment, model, max_epochs, device,
                                   str(flow_run.id) if flow_run.id else None, threads)
               for s in specs]
    rows = []
    for s, future in zip(specs, futures):
        try:
            rows.append(future.result())
        except Exception as exc:  # noqa: BLE001 - a crashed ticker is that ticker's failure, not the fleet's
            rows.append({**fleet_mod.ticker_row(root, s["ticker"]), "status": "error", "failure": type(exc).__name__,
                         "failure_reason": str(exc), "ok": False})
    return rows


def _checkout_on_path() -> None:
    """A LocalCluster's workers are new processes: they import ``flows.fleet`` from this checkout."""
    import os
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if repo not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([repo, *paths])
