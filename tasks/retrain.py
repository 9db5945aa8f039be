"""Retrain tasks: train a challenger and gate it (in the ``retrain`` flow, on whatever worker runs
it), and the nightly side of a retrain on the GPU pool: trigger the deployment, wait, read back
the outcome the retrain flow wrote under the shared root.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from spywatch import pipeline
from spywatch.atomic import atomic_write_json
from spywatch.pipeline import Night
from tasks.caching import challenger_cache_key

TAGS = ("spywatch", "retrain")


class RetrainFailed(RuntimeError):
    """The retrain deployment's run did not complete, or left no outcome for this request."""


def outcome_path(root: Path | str, session: str) -> Path:
    """Where the retrain flow leaves its outcome for the nightly run of ``session`` to read."""
    return Path(root) / "state" / "retrain" / f"{session}.json"


@task(name="open-training-data", task_run_name="training-data-{night.sid}", cache_policy=NO_CACHE,
      timeout_seconds=300, tags=TAGS)
def open_training_data(night: Night) -> str | None:
    """Features from the store (the nightly run fetched and validated them) and the champion."""
    pipeline.stage_features(night)
    champion = pipeline.stage_champion(night)
    return champion.version if champion is not None else None


@task(name="train-challenger", task_run_name="train-challenger-{night.sid}", cache_key_fn=challenger_cache_key,
      cache_expiration=dt.timedelta(days=30), persist_result=True, result_serializer="json",
      timeout_seconds=4 * 3600, tags=(*TAGS, "gpu"))
def train_challenger(night: Night) -> dict:
    """Train on CUDA when this worker has it (``device='auto'``), score challenger and champion on
    the same recent holdout, promote only through the gates. Returns ``RetrainOutcome.to_dict()``."""
    outcome = pipeline.retrain_and_gate(night.table, night.session, night.root, night.cfg, night.data_info)
    return json.loads(json.dumps(outcome.to_dict(), default=_plain))  # JSON-safe: persisted as JSON


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars; anything else as text


@task(name="write-retrain-outcome", task_run_name="write-outcome-{night.sid}", cache_policy=NO_CACHE, tags=TAGS)
def write_outcome(night: Night, outcome: dict, request_id: str | None) -> Path:
    return atomic_write_json(outcome_path(night.root, night.sid),
                             {"session": night.sid, "request_id": request_id, "outcome": outcome})


@task(name="retrain-on-pool", task_run_name="retrain-on-pool-{night.sid}", cache_policy=NO_CACHE,
      timeout_seconds=6 * 3600, tags=TAGS)
def retrain_on_pool(night: Night, deployment: str, parameters: dict) -> dict:
    """Run the ``retrain`` deployment (its work pool: ``gpu``), wait for it, return its outcome."""
    run = run_deployment(name=deployment, parameters=parameters, timeout=None, poll_interval=2,
                         idempotency_key=f"retrain-{night.sid}-{night.run_id}", tags=["spywatch", "retrain"])
    if run.state is None or not run.state.is_completed():
        state = run.state.type.value if run.state else "unknown"
        raise RetrainFailed(f"{deployment} run {run.name} ({run.id}) ended {state}: "
                            f"{run.state.message if run.state else ''}")
    path = outcome_path(night.root, night.sid)
    if not path.exists():
        raise RetrainFailed(f"{deployment} run {run.name} completed but wrote no outcome at {path} "
                            f"(is the root shared between the nightly and the GPU workers?)")
    record = json.loads(path.read_text())
    if record.get("request_id") != parameters.get("request_id"):
        raise RetrainFailed(f"{path} answers request {record.get('request_id')!r}, not "
                            f"{parameters.get('request_id')!r}")
    return record["outcome"]
