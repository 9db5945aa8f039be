"""The nightly stages of ``spywatch.pipeline`` as Prefect tasks.

Each task takes the night's state (``pipeline.Night``) and calls one stage function, which
records what it did in ``night.audit``. Tasks run in the flow's process and thread, so the
stages share one ``Night`` object; none of them is cached (``NO_CACHE``): they read and write
the store, the registry and the published folder, and tonight's data may still be revised.

No tags on these tasks but the fetch's ``market-data`` (an operator can cap concurrent provider
calls with ``prefect concurrency-limit create market-data 1``). Each tagged task run asks the
server for its tags' concurrency slots before it starts: a round trip per task run, and on the
SQLite server that request meets the writes of the run's own events. With a tag on every task,
three nights in six of a ``bench/nightly_timing.py`` run (and one in six of a later series) got a
503 from a locked database on the first tagged task and retried after the client's 2 s back-off;
with the fetch's tag alone, none in six. The runs are labelled by their flow and deployment
instead (``prefect.yaml``: ``spywatch``, ``nightly``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from spywatch import pipeline
from spywatch.artifact import ArtifactError
from spywatch.decision import RetrainDecision
from spywatch.market_data import MarketDataError
from spywatch.pipeline import Night, NightlyResult, PipelineConfig
from spywatch.publish import Publisher
from spywatch.validation import ValidationFailed

__all__ = ["ArtifactError", "MarketDataError", "ValidationFailed", "night_config", "session_label", "open_night",
           "already_published", "fetch_and_validate", "build_features", "load_champion", "validate_features", "audit_champion",
           "decide", "record_retrain", "publish", "publish_failure"]

def night_config(root: str, as_of: dt.date | None, source: str, ticker: str, model: dict[str, int] | None,
                 max_epochs: int | None, device: str, run_id: str | None, retrain: str = "never",
                 policy: str = "default") -> PipelineConfig:
    """The stage configuration, built once from the flow's typed parameters. ``retrain`` is what
    ``run_nightly`` does (the backfill uses it); the nightly flow branches on the decision itself.
    ``policy`` names the retrain, promotion and fit settings (``spywatch.policy.POLICIES``)."""
    return PipelineConfig.for_policy(policy, source=source, root=Path(root).expanduser().resolve(), ticker=ticker,
                                     as_of=as_of.isoformat() if as_of else None, model=dict(model or {}),
                                     max_epochs=max_epochs, device=device, retrain=retrain, run_id=run_id)


def session_label(as_of: dt.date | str | None) -> str:
    """The NYSE session a run is for (runs are named after it): the last one on or before ``as_of``,
    or the last settled one."""
    from spywatch import sessions

    if as_of in (None, ""):
        return sessions.last_closed_session().date().isoformat()
    return sessions.last_session_on_or_before(as_of).date().isoformat()


def retry_only_market_data_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a fetch that failed on the provider (rate limit, network, short or empty frame);
    never one that failed validation or parsing: the same bad data would come back."""
    try:
        state.result()
    except MarketDataError:
        return True
    except Exception:  # ValidationFailed, DataFormatError, bugs: final
        return False
    return False


@task(name="open-night", task_run_name="open-{cfg.as_of}", cache_policy=NO_CACHE)
def open_night(cfg: PipelineConfig) -> Night:
    return pipeline.start_night(cfg)


@task(name="already-published", task_run_name="already-published-{night.sid}", cache_policy=NO_CACHE)
def already_published(night: Night) -> bool:
    """A Late run after a worker outage finds its session done and stops (idempotent by session)."""
    publisher = Publisher(night.root)
    if night.sid not in publisher.published_sessions():
        return False
    return publisher.read_audit(night.sid).get("status") == "published"


@task(name="fetch-and-validate", task_run_name="fetch-{night.sid}", cache_policy=NO_CACHE,  # never cache a fetch
      retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5,
      retry_condition_fn=retry_only_market_data_errors, timeout_seconds=600, tags=("market-data",))
def fetch_and_validate(night: Night) -> None:
    """New bars into the store, checked by the raw-bars suite first (``ValidationFailed``: store untouched)."""
    pipeline.stage_fetch(night)


@task(name="build-features", task_run_name="features-{night.sid}", cache_policy=NO_CACHE, timeout_seconds=300)
def build_features(night: Night) -> None:
    pipeline.stage_features(night)


@task(name="load-champion", task_run_name="champion-{night.sid}", cache_policy=NO_CACHE, timeout_seconds=120)
def load_champion(night: Night) -> str | None:
    """The champion's version (verified on load), or None before the first promotion."""
    champion = pipeline.stage_champion(night)
    return champion.version if champion is not None else None


@task(name="validate-features", task_run_name="validate-features-{night.sid}", cache_policy=NO_CACHE,
      timeout_seconds=300)
def validate_features(night: Night) -> bool:
    return pipeline.stage_validate_features(night)


@task(name="audit-champion", task_run_name="audit-{night.sid}", cache_policy=NO_CACHE, timeout_seconds=900)
def audit_champion(night: Night) -> None:
    """Predict with the champion, the collapse and decay audit, and Evidently drift."""
    pipeline.stage_audit(night)


@task(name="decide", task_run_name="decide-{night.sid}", cache_policy=NO_CACHE)
def decide(night: Night) -> RetrainDecision:
    return pipeline.stage_decide(night)


@task(name="record-retrain", task_run_name="record-retrain-{night.sid}", cache_policy=NO_CACHE,
      timeout_seconds=900)
def record_retrain(night: Night, outcome: dict) -> None:
    """Record the retrain's outcome; a promoted challenger re-runs the audit as the new champion."""
    pipeline.record_retrain(night, outcome)


@task(name="publish", task_run_name="publish-{night.sid}", cache_policy=NO_CACHE, timeout_seconds=300)
def publish(night: Night) -> NightlyResult:
    return pipeline.publish_night(night)


@task(name="publish-failure", task_run_name="publish-failure-{night.sid}", cache_policy=NO_CACHE,
      timeout_seconds=300)
def publish_failure(night: Night, reason: str) -> NightlyResult:
    """Only the failure audit: the last good predictions stay in place, marked stale."""
    return pipeline.publish_failure(night, reason)
