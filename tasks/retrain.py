"""Retrain tasks: train a challenger and gate it (in the ``retrain`` flow, on whatever worker runs
it), and the nightly side of a retrain on the GPU pool: trigger the deployment, wait, read back
the outcome the retrain flow wrote under the shared root.

Not cached. A cache keyed on the session replayed a recorded "promoted" after the registry had
moved on (a rollback, a re-run), and what it saved is one retrain of a session that is re-run:
under the new loop a re-run finds the challenger already promoted (or its gate recorded) and
decides again from the registry, which is what should decide.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from spywatch.atomic import atomic_write_json
from spywatch.layout import RootLayout
from spywatch.night import retrain as night_retrain
from spywatch.night.config import PipelineConfig

TAGS = ("spywatch", "retrain")


class RetrainFailed(RuntimeError):
    """The retrain deployment's run did not complete, or left no outcome for this request."""


@task(name="train-challenger", task_run_name="train-challenger-{cfg.as_of}", cache_policy=NO_CACHE,
      timeout_seconds=4 * 3600, tags=(*TAGS, "gpu"))
def train_challenger(cfg: PipelineConfig) -> dict:
    """Train on CUDA when this worker has it (``device='auto'``), score challenger and champion on
    the same recent holdout, promote only through the gates. Returns ``RetrainOutcome.to_dict()``
    (JSON-safe: it crosses to the nightly run through the shared root)."""
    return json.loads(json.dumps(night_retrain.train_challenger(cfg).to_dict(), default=_plain))


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars; anything else as text


@task(name="write-retrain-outcome", task_run_name="write-outcome-{session}", cache_policy=NO_CACHE, tags=TAGS)
def write_outcome(root: Path, session: str, outcome: dict, request_id: str | None) -> Path:
    """Leave the outcome where the nightly run of ``session`` reads it (``RootLayout.retrain_outcome``)."""
    return atomic_write_json(RootLayout(root).retrain_outcome(session), {"session": session, "request_id": request_id,
                                                                         "outcome": outcome})


@task(name="retrain-on-pool", task_run_name="retrain-on-pool-{session}", cache_policy=NO_CACHE,
      timeout_seconds=6 * 3600, tags=TAGS)
def retrain_on_pool(root: Path, session: str, deployment: str, parameters: dict) -> dict:
    """Run the ``retrain`` deployment (its work pool: ``gpu``), wait for it, return its outcome."""
    return _outcome_of(deployment, parameters, f"retrain-{session}-{parameters.get('request_id')}",
                       RootLayout(root).retrain_outcome(session))


@task(name="fleet-retrain-on-pool", task_run_name="fleet-retrain-on-pool-{deployment}", cache_policy=NO_CACHE,
      timeout_seconds=6 * 3600, tags=TAGS)
def fleet_retrain_on_pool(root: Path | str, deployment: str, parameters: dict) -> dict:
    """Run the ``fleet-retrain`` deployment (the fleet's one pass, on the ``gpu`` pool), wait for
    it, return its outcome (read from the fleet root, where that run wrote it)."""
    request = parameters["request_id"]
    return _outcome_of(deployment, parameters, f"fleet-retrain-{request}",
                       RootLayout(Path(root)).fleet_retrain_outcome(request))


def _outcome_of(deployment: str, parameters: dict, idempotency_key: str, path: Path) -> dict:
    """Run ``deployment``, wait for it, and read the outcome it left at ``path`` for this request."""
    run = run_deployment(name=deployment, parameters=parameters, timeout=None, poll_interval=2,
                         idempotency_key=idempotency_key, tags=["spywatch", "retrain"])
    if run.state is None or not run.state.is_completed():
        state = run.state.type.value if run.state else "unknown"
        raise RetrainFailed(f"{deployment} run {run.name} ({run.id}) ended {state}: "
                            f"{run.state.message if run.state else ''}")
    if not path.exists():
        raise RetrainFailed(f"{deployment} run {run.name} completed but wrote no outcome at {path} "
                            f"(is the root shared between the nightly and the GPU workers?)")
    record = json.loads(path.read_text())
    if record.get("request_id") != parameters.get("request_id"):
        raise RetrainFailed(f"{path} answers request {record.get('request_id')!r}, not "
                            f"{parameters.get('request_id')!r}")
    return record["outcome"]
