"""The ``nightly`` flow: ``night.run_night`` (the one definition of the night, shared with
``spywatch run --no-prefect`` and the backfill) with each stage as a Prefect task, the retrain as
the ``retrain`` subflow or a run of its deployment on the GPU pool, and the night's artifacts and
events at the end.

How it ends (``night.failures.FAILURES`` is the one table): published, or the session already
published (nothing redone); on any failure the run ends **Failed** (so that the failed-run
automation fires too) after the failure audit is published and the last good predictions are
marked stale: bad data (``spywatch.validation.failed``), a champion that fails its checksums, a
provider that keeps failing (after 2 retries with backoff), no champion, a stage that raised. A
failed retrain still publishes tonight's predictions with the champion, then fails the run. The
root's lock is held from the fetch to the publication: a second run waits, then fails naming
the holder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.retrain import retrain
from spywatch.audit_schema import RunStatus
from spywatch.night import run_night
from spywatch.night.run import Night
from spywatch.objectroot import is_object_root, working_root
from tasks.night import TaskRunner, Told, night_config, quiet_task_completions, session_label
from tasks.reporting import emit_alerts, publish_artifacts
from tasks.retrain import retrain_on_pool


class NightFailed(Told):
    """The night failed (``night.failures.FAILURES``): see its audit and the failure it names."""


def _run_name() -> str:
    return f"nightly-{session_label(flow_run.parameters.get('as_of'))}"


def _log_crash(flow, flow_run, state) -> None:  # noqa: ANN001 (Prefect hook signature)
    get_run_logger().error("nightly run %s crashed (infrastructure, not code): %s", flow_run.name, state.message)


@flow(name="nightly", flow_run_name=_run_name, timeout_seconds=6 * 3600, on_crashed=[_log_crash], log_prints=True)
def nightly(root: str, as_of: dt.date | None = None, source: str = "yfinance", ticker: str = "SPY",
            retrain_mode: Literal["inline", "deployment", "never"] = "inline",
            retrain_deployment: str = "retrain/retrain", model: dict[str, int] | None = None,
            max_epochs: int | None = None, device: str = "auto", fetch_backoff_s: float = 10.0,
            force: bool = False, policy: str = "default", lock_timeout_s: float = 600.0) -> dict:
    """One night for one session.

    Args:
        root: the store, registry and published outputs (shared with the GPU workers): a folder,
            or ``s3://bucket/prefix`` on object storage (``spywatch.objectroot``).
        as_of: the session date; default: the last settled NYSE session.
        source: ``yfinance`` | ``csv:PATH`` | ``synthetic[:SEED]`` | a fault spec (``spywatch.sources``).
        retrain_mode: ``inline`` trains in this process; ``deployment`` runs ``retrain_deployment``
            (on the ``gpu`` pool) and waits; ``never`` only records the decision.
        model, max_epochs: PatchTST overrides for a retrain (tests use a tiny model).
        device: ``auto`` (CUDA when the worker has it), ``cpu`` or ``cuda``.
        fetch_backoff_s: base delay of the fetch retries (2 retries, exponential, jittered).
        force: redo a session that is already published.
        policy: the retrain, promotion and fit settings by name (``spywatch.policy.POLICIES``).
        lock_timeout_s: how long to wait for another run holding the root's lock.
    """
    quiet_task_completions()
    if is_object_root(root) and retrain_mode == "deployment":
        raise ValueError("a root on object storage retrains inline (retrain_mode='inline'): the gpu pool's "
                         "retrain works on a root it shares with the night")
    # a local root as it is; a root on object storage (s3://...) leased, pulled into a working copy
    # here and pushed back, pointers last, when the night ends (spywatch.objectroot)
    with working_root(root, "nightly", sessions=(session_label(as_of),), timeout_s=lock_timeout_s) as work:
        cfg = night_config(work.local, as_of, source, ticker, model, max_epochs, device, run_id=flow_run.id,
                           policy=policy)

        def retrain_elsewhere(night: Night) -> dict:
            request = {"as_of": night.sid, "root": str(cfg.root), "source": source, "ticker": ticker, "model": model,
                       "max_epochs": max_epochs, "device": device, "request_id": night.run_id, "policy": policy}
            if retrain_mode == "inline":
                return retrain(**request)
            return retrain_on_pool(cfg.root, night.sid, retrain_deployment, request)

        result = run_night(cfg, runner=TaskRunner(fetch_backoff_s), force=force, lock_timeout_s=lock_timeout_s,
                           retrain=None if retrain_mode == "never" else retrain_elsewhere)
        if result.status == RunStatus.ALREADY_PUBLISHED:
            get_run_logger().info("session %s is already published; nothing to do (force=True redoes it)",
                                  result.session)
            return {"session": result.session, "status": result.status}
        if work.url:  # readers find the outputs in the bucket, not in this worker's working copy
            result = replace(result, outputs={k: work.public(v) for k, v in result.outputs.items()})
        publish_artifacts(result, ticker, cfg.root)
    emit_alerts(result, ticker)
    if not result.ok:
        f = result.failure
        raise NightFailed(f"session {result.session}: {f.kind.value} in {f.stage}: {f.reason}; "
                          + ("tonight's predictions were published with the champion" if f.predictions_published
                             else f"published the failure audit only ({result.outputs.get('audit')}); the last good "
                                  f"predictions are marked stale"))
    return {"session": result.session, "status": result.status, "run_id": result.audit.run_id,
            "model_version": result.audit.model_version,
            "outputs": {name: str(path) for name, path in result.outputs.items()}}
