"""The ``retrain`` flow: train a challenger for one session, gate it against the champion on the
same recent holdout, promote only through the gates, and leave the outcome where the nightly
run reads it (``<root>/state/retrain/<session>.json``).

Deployed on the ``gpu`` work pool: the challenger trains on CUDA when the worker has it
(``device="auto"``), else on the CPU. The nightly flow runs it as a deployment
(``retrain_mode="deployment"``) or in-process as a subflow (``retrain_mode="inline"``); both
read the bars its nightly run fetched and validated from the shared root. The nightly run holds
the root's lock while it waits; the registry's own lock guards the promotion.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_client, get_run_logger
from prefect.runtime import flow_run

from spywatch.audit_schema import Retrain
from spywatch.night.story import retrain_line
from spywatch.objectroot import local_root_only
from spywatch.train import device_warning
from tasks.night import night_config, quiet_task_completions, session_label
from tasks.reporting import publish_retrain_artifacts
from tasks.retrain import train_challenger, write_outcome


def _run_name() -> str:
    return f"retrain-{session_label(flow_run.parameters.get('as_of'))}"


@flow(name="retrain", flow_run_name=_run_name, timeout_seconds=6 * 3600, log_prints=True)
def retrain(as_of: dt.date, root: str, source: str = "yfinance", ticker: str = "SPY",
            model: dict[str, int] | None = None, max_epochs: int | None = None, device: str = "auto",
            request_id: str | None = None, policy: str = "default") -> dict:
    """Train, gate, maybe promote; returns ``RetrainOutcome.to_dict()``.

    Args:
        as_of: the session whose nightly run asked for the retrain (its bars are in the store).
        root: the shared store, registry and published outputs.
        source: the nightly run's source spec (recorded as the data's provenance).
        model, max_epochs: PatchTST overrides (tests use a tiny model).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        request_id: the nightly run's id, echoed in the outcome file.
        policy: the nightly run's policy name (fit recipe, members, holdout, promotion rule).
    """
    quiet_task_completions()
    log = get_run_logger()
    local_root_only(root, "a retrain deployment")
    cfg = night_config(root, as_of, source, ticker, model, max_epochs, device, run_id=request_id or flow_run.id,
                       policy=policy)
    session = cfg.session().date().isoformat()
    pool = work_pool()
    log.info("retrain of %s for session %s (policy %s, requested by run %s): training a challenger on %s",
             ticker, session, policy, request_id or "none", where(pool, device))
    outcome = train_challenger(cfg)
    warning = device_warning(pool, device, outcome.get("device", "?"))
    if warning:
        log.warning(warning)
        outcome = {**outcome, "device_warning": warning}
    log.info(retrain_line(Retrain.model_validate(outcome)))
    write_outcome(cfg.root, session, outcome, request_id)
    publish_retrain_artifacts(session, outcome, ticker)
    return outcome


def where(pool: str | None, device: str) -> str:
    """This worker as the log tells it: host, work pool, the device asked for and what torch sees."""
    import socket

    import torch

    cuda = (f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no CUDA device")
    return (f"host {socket.gethostname()}, work pool {pool or 'none (in-process)'}, device={device} "
            f"(torch {torch.__version__}: {cuda})")


def work_pool() -> str | None:
    """The work pool this run came from (None for a subflow or a run without a deployment)."""
    if not flow_run.id:
        return None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run.id).work_pool_name
