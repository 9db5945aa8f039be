"""The ``nightly-fleet`` flow: one night per ticker, fanned out on a Dask cluster.

Each ticker's night is ``night.run_night`` on the ticker's own root (``spywatch.fleet``), as one
Prefect task run on a Dask worker (``prefect-dask``'s ``DaskTaskRunner``): a temporary
``LocalCluster`` by default, an existing cluster with ``dask_address``. Failures stay with their
ticker: a ticker whose bars are bad publishes its failure audit and marks its own predictions
stale while the others publish; the fleet run then ends Failed naming the tickers that failed,
after its summary artifact and ``ROOT/fleet.html`` are written. Retrains run in the ticker's task
(``inline``) or on the ``gpu`` pool through the retrain deployment (``deployment``), as for one
ticker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from spywatch import fleet as fleet_mod
from spywatch.layout import RootLayout
from spywatch.lock import describe
from spywatch.night.config import REASON_LIMIT
from spywatch.objectroot import ObjectRoot, is_object_root, join, local_root_only, working_root
from spywatch.text import cut
from tasks.night import Told, night_config, quiet_task_completions, session_label


class FleetFailed(Told):
    """Some tickers' nights failed (their audits say why); the others were published."""


@dataclass(frozen=True)
class TickerNight:
    """A ticker's night as the fleet saw it: its fleet row, whether it succeeded, and where it ran."""

    row: fleet_mod.FleetRow
    ok: bool
    worker: str | None = None  # host:pid of the Dask worker; None when the ticker's task crashed
    took_over: dict | None = None  # the root's lease holder that died mid-night (a killed worker), taken over
    deferred: str | None = None  # the session whose night stopped for the one-pass retrain (nothing published)
    deferred_data: dict | None = None  # that stopped night's fetch (audit_schema.Data): its run again counts it


@dataclass(frozen=True)
class TickerBackfill:
    """A ticker's replay as the fleet saw it: its record's folder, and its counts or why it failed."""

    ticker: str
    ok: bool
    record: str
    error: str | None = None
    steps: int | None = None
    retrains: int | None = None
    promotions: int | None = None
    events: int | None = None
    mean_auc_difference: dict | None = None  # PatchTST - RF mean AUC, paired (comparison.paired_auc)


@task(name="ticker-night", task_run_name="night-{ticker}", cache_policy=NO_CACHE)
def ticker_night(root: Path | str, ticker: str, as_of: dt.date | None, source: str, policy: str,
                 retrain_mode: str, retrain_deployment: str, model: dict | None, max_epochs: int | None,
                 device: str, run_id: str | None, threads: int | None = None,
                 fitted: dict | None = None) -> TickerNight:
    """One ticker's night on its own root; returns its fleet row (never raises for a bad night).
    ``threads``: torch's CPU threads in this worker (the cores shared out between the workers).
    ``retrain_mode="one-pass"``: a night that wants a challenger stops before its retrain with
    nothing published (``deferred``); run again with ``fitted`` ({"version"} the one pass registered,
    or {"error"}; {"data"}: the stopped run's fetch), it gates that challenger and publishes."""
    from spywatch.audit_schema import Data, RunStatus
    from spywatch.night import run_night
    from spywatch.night.run import DEFERRED, GateFitted, Night, defer_retrain, train_here
    from spywatch.report import run_page
    from tasks.retrain import retrain_on_pool

    quiet_task_completions()  # in this worker process too
    if is_object_root(root) and retrain_mode in ("deployment", "one-pass"):
        raise ValueError("a fleet root on object storage retrains inline (retrain_mode='inline')")
    # the ticker's root: ROOT/tickers/<T>, a folder or a prefix on object storage; for the latter
    # this worker leases it, pulls it into its own scratch folder and pushes it back (objectroot)
    spec = join(root, "tickers", ticker) if is_object_root(root) else RootLayout(root).ticker(ticker).root
    with working_root(spec, "nightly", sessions=(session_label(as_of),), scratch=_worker_scratch()) as work:
        troot = work.local
        cfg = _with_threads(night_config(troot, as_of, source, ticker, model, max_epochs, device, run_id=run_id,
                                         policy=policy), threads)

        def on_pool(night: Night) -> dict:
            request = {"as_of": night.sid, "root": str(troot), "source": source, "ticker": ticker, "model": model,
                       "max_epochs": max_epochs, "device": device, "request_id": night.run_id, "policy": policy}
            return retrain_on_pool.fn(troot, night.sid, retrain_deployment, request)

        if fitted is not None:
            retrain = GateFitted(fitted.get("version"), fitted.get("error"),
                                 Data.model_validate(fitted["data"]) if fitted.get("data") else None)
        else:
            retrain = {"inline": train_here, "never": None, "deployment": on_pool,
                       "one-pass": defer_retrain}[retrain_mode]
        with _one_job_per_worker():
            result = run_night(cfg, retrain=retrain)
        if result.status == DEFERRED:
            why = ", ".join(result.audit.decision.codes()) if result.audit.decision else ""
            get_run_logger().info("%s %s: a challenger is wanted (%s); its night runs again after the fleet's "
                                  "one-pass retrain", ticker, result.session, why or "no reason recorded")
            data = result.audit.data.model_dump(mode="json") if result.audit.data else None
            return TickerNight(fleet_mod.FleetRow(ticker, result.session, DEFERRED), ok=False, deferred=result.session,
                               deferred_data=data)
        if result.status != RunStatus.ALREADY_PUBLISHED:
            outputs = {k: work.public(v) for k, v in result.outputs.items()} if work.url else result.outputs
            links = run_page.report_links(troot, outputs)
            create_markdown_artifact(markdown=run_page.summary_markdown(result.session, result.status, result.audit,
                                                                        outputs, links),
                                     key=f"spywatch-{ticker.lower()}-summary",
                                     description=f"{ticker} nightly {result.session}: {result.status}")
        row = fleet_mod.ticker_row(root, ticker, result.session, result.status, ticker_root=troot)
        if work.took_over:
            get_run_logger().warning("%s: took over the root's lease from %s, which died holding it (its night "
                                     "was redone here)", ticker, describe(work.took_over))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    why = f" ({row.failure}: {row.failure_reason})" if row.failure else ""
    get_run_logger().info("%s %s: %s%s on worker %s", ticker, result.session, result.status, why, worker)
    return TickerNight(row, result.ok, worker, work.took_over)


def _run_name() -> str:
    return f"nightly-fleet-{session_label(flow_run.parameters.get('as_of'))}"


@flow(name="nightly-fleet", flow_run_name=_run_name, timeout_seconds=8 * 3600, log_prints=True)
def nightly_fleet(root: str, tickers: list[str] | None = None, fleet_file: str | None = None,
                  as_of: dt.date | None = None, source: str = "yfinance", policy: str = "default",
                  retrain_mode: Literal["inline", "deployment", "never", "one-pass"] = "deployment",
                  retrain_deployment: str = "retrain/retrain", model: dict[str, int] | None = None,
                  max_epochs: int | None = None, device: str = "auto", dask_address: str | None = None,
                  n_workers: int = 2, one_pass_deployment: str | None = None) -> dict:
    """One night for every ticker of the fleet.

    Args:
        root: the fleet root (one sub-root per ticker under ``tickers/``).
        tickers, fleet_file: the tickers (with ``source``/``policy`` for all), or a fleet file with
            per-ticker overrides; one of the two.
        retrain_mode: as for ``nightly``, and ``one-pass``: the nights that want a challenger stop
            before their retrain, every such ticker's challenger is fitted in one pass (the
            ``fleet-retrain`` flow: tickers x members on one stack, on its GPU when it has one), and
            those nights run again, gating the challenger fitted for them.
        one_pass_deployment: where the one pass runs: that deployment (``fleet-retrain/fleet-retrain``,
            on the ``gpu`` pool), waited for; None: a subflow in this flow's process.
        dask_address: an existing Dask scheduler (``tcp://host:8786``); default: a temporary
            ``LocalCluster`` of ``n_workers`` single-threaded workers.
        the rest: as for ``nightly``.
    """
    quiet_task_completions()
    fleet_root = root if is_object_root(root) else Path(root)  # s3://bucket/prefix stays a URL
    if retrain_mode == "one-pass":
        local_root_only(root, "a one-pass fleet retrain")
    fleet = _fleet(tickers, fleet_file, source, policy)
    runner, threads = _dask(dask_address, n_workers, len(fleet.tickers))
    specs = [{"ticker": t.ticker, "source": t.source, "policy": t.policy} for t in fleet.tickers]
    nights = fleet_nights.with_options(task_runner=runner)(fleet_root, specs, as_of, retrain_mode, retrain_deployment,
                                                           model, max_epochs, device, threads)
    one_pass = ""
    waiting = [(s, n) for s, n in zip(specs, nights) if n.deferred]
    if waiting:
        pending = [{**s, "as_of": n.deferred, "data": n.deferred_data} for s, n in waiting]
        fitted = _fit_in_one_pass(fleet_root, pending, one_pass_deployment, model, max_epochs, device)
        again = fleet_nights.with_options(task_runner=runner)(
            fleet_root, [{**p, "fitted": {**fitted["tickers"][p["ticker"]], "data": p["data"]}} for p in pending],
            as_of, retrain_mode, retrain_deployment, model, max_epochs, device, threads,
            name="fleet-nights-after-the-pass")
        redone = {n.row.ticker: n for n in again}
        nights = [redone.get(n.row.ticker, n) for n in nights]
        one_pass = _one_pass_line(fitted)
    rows = [n.row for n in nights]
    if is_object_root(fleet_root):
        page = ObjectRoot(fleet_root).write_text("fleet.html", fleet_mod.render_page(rows))
    else:
        page = fleet_mod.write_page(fleet_root, rows)
    retried = "".join(f"- **{n.row.ticker}**: redone on worker {n.worker} after its first worker died mid-night "
                      f"(lease taken over from {describe(n.took_over)})\n" for n in nights if n.took_over)
    create_markdown_artifact(markdown=fleet_mod.summary_markdown(rows) + (f"\n{retried}" if retried else "")
                             + one_pass + f"\nFleet page: `{page}`\n",
                             key="spywatch-fleet-summary", description=f"fleet of {len(rows)} tickers")
    failed = [n.row for n in nights if not n.ok]
    get_run_logger().info("fleet: %d of %d tickers published; page %s", len(rows) - len(failed), len(rows), page)
    if failed:
        detail = "; ".join(f"{r.ticker}: {r.failure or r.status}" for r in failed)
        raise FleetFailed(f"{len(failed)} of {len(rows)} tickers failed ({detail}); the others were published")
    return {"tickers": fleet.names, "page": str(page), "rows": nights}


def _fit_in_one_pass(root: Path | str, pending: list[dict], deployment: str | None, model: dict | None,
                     max_epochs: int | None, device: str) -> dict:
    """The waiting tickers' challengers from the ``fleet-retrain`` flow (``deployment`` on the gpu
    pool, waited for; None: a subflow here). A pass that cannot run at all is each ticker's failure
    (``"error"``): their nights still run again and publish it."""
    try:
        if deployment:
            from tasks.retrain import fleet_retrain_on_pool

            return fleet_retrain_on_pool(root, deployment, {
                "root": str(root), "pending": pending, "model": model, "max_epochs": max_epochs, "device": device,
                "request_id": str(flow_run.id) if flow_run.id else uuid.uuid4().hex})
        return fleet_retrain(str(root), pending, model, max_epochs, device)
    except Exception as exc:  # noqa: BLE001 - the nights still publish, each with its retrain's failure
        why = cut(f"{type(exc).__name__}: {exc}", REASON_LIMIT)
        get_run_logger().error("the one-pass retrain could not run: %s", why)
        return {"tickers": {p["ticker"]: {"version": None, "error": why} for p in pending}, "error": why}


def _one_pass_line(fitted: dict) -> str:
    """The pass in the fleet summary: how many fitted where and in how long, or why it could not run."""
    if fitted.get("error"):
        return (f"\nOne-pass retrain of {len(fitted['tickers'])} tickers could not run: {fitted['error']}; each "
                f"waiting night published its retrain's failure.\n")
    failed = ", ".join(t for t, f in fitted["tickers"].items() if f.get("error")) or "none"
    pool = f", work pool {fitted['pool']}" if fitted.get("pool") else ""
    warning = f" **Warning:** {fitted['device_warning']}" if fitted.get("device_warning") else ""
    return (f"\nOne-pass retrain: {len(fitted['tickers'])} tickers' challengers fitted together in "
            f"{fitted['seconds']} s ({fitted['device']}{pool}); failed: {failed}.{warning}\n")


@flow(name="fleet-nights", flow_run_name="{name}")
def fleet_nights(root: Path | str, specs: list[dict], as_of: dt.date | None, retrain_mode: str,
                 retrain_deployment: str, model: dict | None, max_epochs: int | None, device: str,
                 threads: int | None = None, name: str = "fleet-nights") -> list[TickerNight]:
    """The fan-out: one ``ticker_night`` per ticker on the flow's task runner, results in fleet order.
    A spec's own ``as_of`` and ``fitted`` (the one pass's challenger) go to its ticker's night."""
    futures = [ticker_night.submit(root, s["ticker"], _date(s.get("as_of")) or as_of, s["source"], s["policy"],
                                   retrain_mode, retrain_deployment, model, max_epochs, device,
                                   str(flow_run.id) if flow_run.id else None, threads, s.get("fitted"))
               for s in specs]
    nights = []
    for s, future in zip(specs, futures):
        try:
            nights.append(future.result())
        except Exception as exc:  # noqa: BLE001 - a crashed ticker is that ticker's failure, not the fleet's
            known = fleet_mod.FleetRow(s["ticker"], None, "error") if is_object_root(root) else \
                fleet_mod.ticker_row(root, s["ticker"])
            row = replace(known, status="error", failure=type(exc).__name__,
                          failure_reason=cut(str(exc), REASON_LIMIT))
            nights.append(TickerNight(row, ok=False))
    return nights


@task(name="one-pass", task_run_name="one-pass-{n_tickers}-tickers", cache_policy=NO_CACHE,
      timeout_seconds=4 * 3600, tags=("spywatch", "retrain", "gpu"))
def fleet_retrain_task(root: Path, pending: list[dict], model: dict | None, max_epochs: int | None, device: str,
                       n_tickers: int) -> dict:
    """Every waiting ticker's challenger fitted in one pass (``night.retrain.fit_fleet_challengers``)
    in this process, on its GPU when it has one; each registered, unpromoted, in its own root.
    Returns {"tickers": {T: {"version"} or {"error"}}, "seconds", "device"}."""
    import time

    from spywatch.night.retrain import fit_fleet_challengers
    from spywatch.train import pick_device

    cfgs = {p["ticker"]: night_config(RootLayout(root).ticker(p["ticker"]).root, _date(p["as_of"]), p["source"],
                                      p["ticker"], model, max_epochs, device, run_id=None, policy=p["policy"])
            for p in pending}
    t0 = time.perf_counter()
    out = fit_fleet_challengers(cfgs, {t: cfg.session() for t, cfg in cfgs.items()})
    seconds = round(time.perf_counter() - t0, 1)
    tickers = {t: {"version": v} if isinstance(v, str) else {"version": None, "error": cut(f"{type(v).__name__}: {v}",
                                                                                          REASON_LIMIT)}
               for t, v in out.items()}
    logger = get_run_logger()
    for t, f in tickers.items():
        logger.info("%s: %s", t, f"challenger {f['version']} registered" if f["version"] else f"no challenger: {f['error']}")
    return {"tickers": tickers, "seconds": seconds, "device": str(pick_device(device))}


def _pass_name() -> str:
    return f"fleet-retrain-{len(flow_run.parameters.get('pending') or [])}-tickers"


@flow(name="fleet-retrain", flow_run_name=_pass_name, timeout_seconds=6 * 3600, log_prints=True)
def fleet_retrain(root: str, pending: list[dict], model: dict[str, int] | None = None, max_epochs: int | None = None,
                  device: str = "auto", request_id: str | None = None) -> dict:
    """The fleet's one pass: every waiting ticker's challenger fitted together on this worker's
    device (CUDA when it has one), each registered, unpromoted, in its own root under ``root``.

    Deployed on the ``gpu`` work pool (``fleet-retrain``), started and waited for by a
    ``nightly-fleet`` run in ``one-pass`` mode; or run by that flow as a subflow. ``pending``:
    {"ticker", "source", "policy", "as_of"} per ticker, whose bars its night fetched and validated.
    With ``request_id`` the outcome is also written where the requesting run reads it
    (``ROOT/state/fleet-retrain/<request_id>.json``). Returns {"tickers": {T: {"version"} or
    {"version": None, "error"}}, "seconds", "device", "pool", "device_warning"}."""
    from flows.retrain import where, work_pool
    from spywatch.atomic import atomic_write_json
    from spywatch.train import device_warning

    quiet_task_completions()
    local_root_only(root, "a one-pass fleet retrain")
    pool = work_pool()
    get_run_logger().info("one pass for %d tickers (%s): fitting their challengers together on %s", len(pending),
                          ", ".join(p["ticker"] for p in pending), where(pool, device))
    out = fleet_retrain_task(Path(root), pending, model, max_epochs, device, len(pending))
    warning = device_warning(pool, device, out["device"])
    if warning:
        get_run_logger().warning(warning)
    out = {**out, "pool": pool, "device_warning": warning}
    if request_id:
        atomic_write_json(RootLayout(Path(root)).fleet_retrain_outcome(request_id),
                          {"request_id": request_id, "outcome": out})
    return out


def _date(value) -> dt.date | None:  # noqa: ANN001 - a date, its ISO text (a session), or None
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


@task(name="ticker-backfill", task_run_name="backfill-{ticker}", cache_policy=NO_CACHE)
def ticker_backfill(root: Path, ticker: str, source: str, policy: str, start: str, end: str, frequency: str,
                    model: dict | None, max_epochs: int | None, device: str, rf_trees: int,
                    threads: int | None = None, resume: bool = False) -> TickerBackfill:
    """One ticker's replay on its own root (``spywatch backfill``'s code); its record goes to
    ``ROOT/tickers/<T>/backfill/``. A replay that cannot run, or a night of it that did not
    publish, is that ticker's failure. ``resume``: keep the steps that record holds."""
    from spywatch.backfill import backfill_config, run_backfill

    quiet_task_completions()  # in this worker process too
    troot = RootLayout(root).ticker(ticker)
    out = troot.backfill
    try:
        cfg = _with_threads(backfill_config(troot.root, source, ticker, policy, model, max_epochs, device), threads)
        with _one_job_per_worker():
            table = run_backfill(cfg, start, end, frequency, out_dir=out, rf_trees=rf_trees, resume=resume)
    except Exception as exc:  # noqa: BLE001 - reported in the fleet's table, the others go on
        get_run_logger().error("%s: backfill failed: %s: %s", ticker, type(exc).__name__, exc)
        return TickerBackfill(ticker, ok=False, record=str(out), error=f"{type(exc).__name__}: {exc}")
    return _ticker_backfill(ticker, out, table, start)


def _ticker_backfill(ticker: str, out: Path, table, start: str) -> TickerBackfill:  # noqa: ANN001 - a PolicyTable
    """A ticker's replay as the fleet reports it: a night of it that did not publish is its failure."""
    bad = [step for step in table.steps if step.status != "published"]
    if bad or not table.steps:
        first = (f"{bad[0].session}: {bad[0].status}{': ' + str(bad[0].error) if bad[0].error else ''}" if bad
                 else f"{start}: no steps")
        return TickerBackfill(ticker, ok=False, record=str(out),
                              error=f"{len(bad)} of {len(table.steps)} nights not published (first {first})")
    summary = table.summary
    return TickerBackfill(ticker, ok=True, record=str(out), steps=summary["steps"], retrains=summary["retrains"],
                          promotions=summary["promotions"], events=summary["events"],
                          mean_auc_difference=table.scores.mean_auc_difference if table.scores else None)


@task(name="backfill-lockstep", task_run_name="backfill-lockstep-{start}-{end}", cache_policy=NO_CACHE,
      tags=("spywatch", "retrain", "gpu"))
def lockstep_backfill(root: Path, specs: list[dict], start: str, end: str, frequency: str, model: dict | None,
                      max_epochs: int | None, device: str, rf_trees: int, resume: bool = False) -> list[TickerBackfill]:
    """Every ticker's replay in lock-step in this process, each session's retrains in one pass
    (``backfill.run_fleet_backfill``); records under ``ROOT/tickers/<T>/backfill/`` as the fan-out writes them.
    ``resume``: each ticker keeps the steps its record holds."""
    from spywatch.backfill import backfill_config, run_fleet_backfill

    layout = RootLayout(root)
    logger = get_run_logger()
    try:
        cfgs = {s["ticker"]: backfill_config(layout.ticker(s["ticker"]).root, s["source"], s["ticker"], s["policy"],
                                             model, max_epochs, device) for s in specs}
        tables = run_fleet_backfill(cfgs, start, end, frequency, out_dirs={t: layout.ticker(t).backfill for t in cfgs},
                                    rf_trees=rf_trees, resume=resume,
                                    on_step=lambda t, p: logger.info("%s %s", t, p.line()))
    except Exception as exc:  # noqa: BLE001 - the lock-step replay could not run: every ticker's failure
        logger.error("lock-step backfill failed: %s: %s", type(exc).__name__, exc)
        return [TickerBackfill(s["ticker"], ok=False, record=str(layout.ticker(s["ticker"]).backfill),
                               error=f"{type(exc).__name__}: {exc}") for s in specs]
    return [_ticker_backfill(t, layout.ticker(t).backfill, table, start) for t, table in tables.items()]


@flow(name="backfill-fleet", flow_run_name="backfill-fleet-{start}-{end}", timeout_seconds=48 * 3600, log_prints=True)
def backfill_fleet(root: str, start: dt.date, end: dt.date, tickers: list[str] | None = None,
                   fleet_file: str | None = None, source: str = "yfinance", policy: str = "default",
                   frequency: Literal["monthly", "weekly", "daily"] = "monthly", model: dict[str, int] | None = None,
                   max_epochs: int | None = None, device: str = "auto", rf_trees: int = 100,
                   dask_address: str | None = None, n_workers: int = 2, one_pass: bool = False,
                   resume: bool = False) -> dict:
    """The ``backfill`` replay for every ticker of a fleet, one Dask task per ticker, each on its
    own root; a summary artifact compares them. Ends Failed naming the tickers that could not run.
    ``one_pass``: the replays in lock-step in this flow's process instead, each session's retrains
    fitted in one stacked model (``backfill.run_fleet_backfill``; on its GPU when it has one).
    ``resume``: every ticker keeps the steps an interrupted run with the same settings recorded
    under ``ROOT/tickers/<T>/backfill/`` and replays only the rest (either mode)."""
    quiet_task_completions()
    local_root_only(root, "a backfill")
    fleet = _fleet(tickers, fleet_file, source, policy)
    specs = [{"ticker": t.ticker, "source": t.source, "policy": t.policy} for t in fleet.tickers]
    if one_pass:
        rows = lockstep_backfill(Path(root), specs, start.isoformat(), end.isoformat(), frequency, model, max_epochs,
                                 device, rf_trees, resume)
    else:
        runner, threads = _dask(dask_address, n_workers, len(fleet.tickers))
        rows = fleet_backfills.with_options(task_runner=runner)(Path(root), specs, start.isoformat(), end.isoformat(),
                                                                frequency, model, max_epochs, device, rf_trees, threads,
                                                                resume)
    lines = [f"# Fleet backfill {start} .. {end} ({frequency})", "",
             "| ticker | steps | retrains | promotions | alarms | PatchTST - RF mean AUC [90% CI] | record |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.ok:
            lines.append(f"| {r.ticker} | **failed**: {r.error} | | | | | `{r.record}` |")
            continue
        d = r.mean_auc_difference  # a paired difference always has its estimate
        ci = f"{d['estimate']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d else "—"
        lines.append(f"| {r.ticker} | {r.steps} | {r.retrains} | {r.promotions} | {r.events} | {ci} | `{r.record}` |")
    create_markdown_artifact(markdown="\n".join(lines) + "\n", key="spywatch-fleet-backfill",
                             description=f"fleet backfill of {len(rows)} tickers")
    failed = [r.ticker for r in rows if not r.ok]
    if failed:
        raise FleetFailed(f"{len(failed)} of {len(rows)} backfills failed ({', '.join(failed)}); the others finished "
                          f"(their records are in the fleet-backfill artifact)")
    return {"tickers": fleet.names, "rows": rows}


@flow(name="fleet-backfills")
def fleet_backfills(root: Path, specs: list[dict], start: str, end: str, frequency: str, model: dict | None,
                    max_epochs: int | None, device: str, rf_trees: int,
                    threads: int | None = None, resume: bool = False) -> list[TickerBackfill]:
    futures = [ticker_backfill.submit(root, s["ticker"], s["source"], s["policy"], start, end, frequency, model,
                                      max_epochs, device, rf_trees, threads, resume) for s in specs]
    return [f.result() for f in futures]


def _fleet(tickers: list[str] | None, fleet_file: str | None, source: str, policy: str) -> fleet_mod.Fleet:
    if (tickers is None) == (fleet_file is None):
        raise ValueError("give either tickers or fleet_file")
    return fleet_mod.load_fleet(fleet_file) if fleet_file else fleet_mod.fleet_of(tickers, source, policy)


def _dask(address: str | None, n_workers: int, n_tickers: int):  # noqa: ANN202
    """(task runner, torch threads per worker): a standing cluster at ``address`` (its hosts keep
    their own settings), or a temporary LocalCluster of single-threaded workers sharing the cores
    (two workers each training on both cores oversubscribed them: 4 tickers 233 s instead of 105)."""
    quiet_dask()
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address), None  # its workers need this checkout on their path
    _checkout_on_path()
    threads = max(1, (os.cpu_count() or 1) // max(1, min(n_workers, n_tickers)))
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1}), threads


def quiet_dask() -> None:
    """Dask's own INFO lines (the cluster's start, every connection, the workers' shutdown: "killed by
    signal 15" on a normal exit) were half of a fleet night's console; its warnings and errors stay.
    The environment carries the level to the LocalCluster's worker processes."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    nanny = logging.getLogger("distributed.nanny")
    if not any(isinstance(f, _PatientShutdown) for f in nanny.filters):
        nanny.addFilter(_PatientShutdown())


class _PatientShutdown(logging.Filter):
    """A worker still closing its Prefect client when the cluster shuts down is killed after 4 s and
    the nanny warns; at the end of a fleet night that is its normal exit, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Worker process still alive after")


def _with_threads(cfg, threads: int | None):  # noqa: ANN001, ANN202 (a PipelineConfig in, one out)
    """Give this worker's torch (inference now, training through ``cfg.threads``) its share of the cores."""
    if not threads:
        return cfg
    from dataclasses import replace

    import torch

    torch.set_num_threads(threads)
    return replace(cfg, threads=threads)


def _worker_scratch() -> Path | None:
    """The Dask worker's own local directory (where a working copy goes), or None outside a worker."""
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


@contextlib.contextmanager
def _one_job_per_worker() -> Iterator[None]:
    """The Random Forests run with one job in a Dask worker (scikit-learn's choice there, and the
    right one when workers share the cores); its warning saying so, once per forest, is dropped."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Inside a Dask worker with daemon=True")
        yield


def _checkout_on_path() -> None:
    """A LocalCluster's workers are new processes: they import ``flows.fleet`` from this checkout."""
    repo = str(Path(__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if repo not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([repo, *paths])
