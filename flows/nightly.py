"""The ``nightly`` flow: fetch -> validate -> features -> drift -> predict + collapse audit -> decide
-> (retrain) -> publish -> alerts, for one NYSE session.

How it ends:
- published: predictions and their audit are out; artifacts on the run page; events emitted.
- bad data (raw bars or features fail validation): only the failure audit is published (the last
  good predictions stay, marked stale), ``spywatch.validation.failed`` is emitted, and the run
  ends **Failed** so that the failed-run automation fires as well.
- the champion fails its checksums (tampered or truncated): the same, with the refusal in the
  audit; the alias is left for a human to act on.
- the fetch keeps failing (after 2 retries with backoff): the run ends Failed, nothing is
  published, latest.json is untouched; the failed-run automation is the alert.
- the retrain fails: tonight's predictions are still published with the champion (it passed
  tonight's audit), then the run ends Failed.
- the session is already published (a Late run after a worker outage): nothing is redone.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from flows.retrain import retrain
from tasks.night import (ArtifactError, ValidationFailed, already_published, audit_champion, build_features, decide,
                         fetch_and_validate, load_champion, night_config, open_night, publish, publish_failure,
                         record_retrain, session_label, validate_features)
from tasks.reporting import emit_alerts, publish_artifacts
from tasks.retrain import retrain_on_pool


class NightFailed(RuntimeError):
    """The night ended without publishing predictions (bad data, no champion, failed retrain)."""


def _run_name() -> str:
    return f"nightly-{session_label(flow_run.parameters.get('as_of'))}"


def _log_crash(flow, flow_run, state) -> None:  # noqa: ANN001 (Prefect hook signature)
    get_run_logger().error("nightly run %s crashed (infrastructure, not code): %s", flow_run.name, state.message)


@flow(name="nightly", flow_run_name=_run_name, timeout_seconds=6 * 3600, on_crashed=[_log_crash], log_prints=True)
def nightly(root: str, as_of: dt.date | None = None, source: str = "yfinance", ticker: str = "SPY",
            retrain_mode: Literal["inline", "deployment", "never"] = "inline",
            retrain_deployment: str = "retrain/retrain", model: dict[str, int] | None = None,
            max_epochs: int | None = None, device: str = "auto", fetch_backoff_s: float = 10.0,
            force: bool = False, policy: str = "default") -> dict:
    """One night for one session.

    Args:
        root: the store, registry and published outputs (shared with the GPU workers).
        as_of: the session date; default: the last settled NYSE session.
        source: ``yfinance`` | ``csv:PATH`` | ``synthetic[:SEED]`` | a fault spec (``spywatch.faults``).
        retrain_mode: ``inline`` trains in this process; ``deployment`` runs ``retrain_deployment``
            (on the ``gpu`` pool) and waits; ``never`` only records the decision.
        model, max_epochs: PatchTST overrides for a retrain (tests use a tiny model).
        device: ``auto`` (CUDA when the worker has it), ``cpu`` or ``cuda``.
        fetch_backoff_s: base delay of the fetch retries (2 retries, exponential, jittered).
        force: redo a session that is already published.
        policy: the retrain, promotion and fit settings by name (``spywatch.policy.POLICIES``).
    """
    cfg = night_config(root, as_of, source, ticker, model, max_epochs, device, run_id=flow_run.id, policy=policy)
    night = open_night(cfg)
    if not force and already_published(night):
        get_run_logger().info("session %s is already published; nothing to do (force=True redoes it)", night.sid)
        return {"session": night.sid, "status": "already_published"}

    # Extract and validate (retried only on provider errors, never on bad data)
    try:
        fetch_and_validate.with_options(retry_delay_seconds=exponential_backoff(fetch_backoff_s))(night)
    except ValidationFailed:
        _reject(night, ticker, "raw_bars validation failed")
    build_features(night)

    # Drift, predictions and the collapse audit, against the champion
    try:
        champion = load_champion(night)
    except ArtifactError as exc:
        _reject(night, ticker, f"champion model refused: {exc}")
    if champion is not None:
        if not validate_features(night):
            _reject(night, ticker, "features validation failed")
        audit_champion(night)

    # Decide; retrain here or on the GPU pool
    retrain_error = None
    if decide(night).retrain and retrain_mode != "never":
        request = {"as_of": night.sid, "root": str(cfg.root), "source": source, "ticker": ticker, "model": model,
                   "max_epochs": max_epochs, "device": device, "request_id": night.run_id, "policy": policy}
        try:
            if retrain_mode == "inline":
                outcome = retrain(**request)
            else:
                outcome = retrain_on_pool(night, retrain_deployment, request)
        except Exception as exc:  # publish tonight with the champion anyway; fail the run below
            retrain_error = exc
        else:
            record_retrain(night, outcome)

    # Publish, then tell the UI and the automations
    result = publish(night)
    publish_artifacts(result, ticker)
    emit_alerts(result, ticker)
    if retrain_error is not None:
        raise NightFailed(f"session {night.sid} published with the champion, but the retrain failed: "
                          f"{retrain_error}") from retrain_error
    if not result.ok:
        raise NightFailed(f"session {night.sid}: {result.status}; predictions not published "
                          f"({(result.audit.get('stale') or {}).get('reason', '')})")
    return {"session": result.session, "status": result.status, "run_id": night.run_id,
            "model_version": result.audit.get("model_version"),
            "outputs": {name: str(path) for name, path in result.outputs.items()}}


def _reject(night, ticker: str, reason: str) -> None:  # noqa: ANN001 (a Night)
    """Publish the failure audit only, emit its alerts (``spywatch.validation.failed`` on bad data),
    end the run Failed."""
    result = publish_failure(night, reason)
    publish_artifacts(result, ticker)
    emit_alerts(result, ticker)
    raise NightFailed(f"session {night.sid}: {reason}; published the failure audit only "
                      f"({result.outputs.get('audit')})")
