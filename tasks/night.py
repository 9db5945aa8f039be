"""The nightly stages of ``spywatch.night`` as Prefect tasks, and the runner that runs
``night.run_night`` (the one definition of the night) through them.

Each task wraps one stage function of plain values and returns its value (a FeatureTable, the
champion, the predictions and their audit, the drift report, the decision): the flow's sequence,
failure semantics and audit are the plain path's, and a task's retry re-runs a function of its
inputs. None of them is cached (``NO_CACHE``): they read and write the store, the registry and the
published folder, and tonight's data may still be revised.

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
import logging
import os
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from spywatch.market_data import MarketDataError
from spywatch.night.config import PipelineConfig

__all__ = ["STAGE_TASKS", "TaskRunner", "night_config", "session_label", "retry_only_market_data_errors"]


def night_config(root: Path | str, as_of: dt.date | None, source: str, ticker: str, model: dict[str, int] | None,
                 max_epochs: int | None, device: str, run_id: str | None, retrain: str = "never",
                 policy: str = "default") -> PipelineConfig:
    """The stage configuration, built once from the flow's typed parameters. ``retrain`` is what
    ``run_night`` does by default (the backfill uses it); the nightly flow passes its own retrain.
    ``policy`` names the retrain, promotion and fit settings (``spywatch.policy.POLICIES``)."""
    use_signing_key_block()
    return PipelineConfig.for_policy(policy, source=source, root=Path(root).expanduser().resolve(), ticker=ticker,
                                     as_of=as_of.isoformat() if as_of else None, model=dict(model or {}),
                                     max_epochs=max_epochs, device=device, retrain=retrain, run_id=run_id)


def use_signing_key_block() -> None:
    """Deployments keep the model signing key in the Prefect Secret block ``spywatch-signing-key``
    (``deployments/automations.py --signing-key-from-env`` saves it): loaded into this worker's
    ``SPYWATCH_SIGNING_KEY`` unless the environment sets it already. No block: models are not
    signed (``spywatch.artifact``); a block that cannot be read fails the run (never unsigned by
    accident)."""
    from spywatch.artifact import SIGNING_KEY_BLOCK, SIGNING_KEY_ENV

    if os.environ.get(SIGNING_KEY_ENV) or not os.environ.get("PREFECT_API_URL"):
        return
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(SIGNING_KEY_BLOCK, _sync=True).get()
    except ValueError as exc:
        if "Unable to find block document" in str(exc):
            return
        raise
    os.environ[SIGNING_KEY_ENV] = str(value)


def session_label(as_of: dt.date | str | None) -> str:
    """The NYSE session a run is for (runs are named after it): the last one on or before ``as_of``,
    or the last settled one."""
    from spywatch import sessions

    try:
        return sessions.settled_session(as_of).date().isoformat()
    except sessions.UnsettledSession:  # the run is named after the date asked for; the night refuses it
        return str(as_of)


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


# Stage -> task options. The fetch is retried on provider errors only (``MarketDataError``): the
# same bad data would come back; every other stage fails at once and ``run_night`` handles it.
STAGE_TASKS: dict[str, dict] = {
    "fetch": {"retries": 2, "retry_delay_seconds": exponential_backoff(backoff_factor=10), "retry_jitter_factor": 0.5,
              "retry_condition_fn": retry_only_market_data_errors, "timeout_seconds": 600, "tags": ("market-data",)},
    "features": {"timeout_seconds": 300},
    "champion": {"timeout_seconds": 120},
    "validate_features": {"timeout_seconds": 300},
    "audit": {"timeout_seconds": 900},
    "drift": {"timeout_seconds": 900},
    "decide": {},
    "publish": {"timeout_seconds": 300},
    "publish_failure": {"timeout_seconds": 300},
}


class _NoBareCompletions(logging.Filter):
    """Drops the task engine's "Finished in state Completed()" line: the task's state says it, and
    the night's own line for the stage says what it found. Retries, failures and crashes stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.getMessage().startswith("Finished in state Completed"))


class Told(RuntimeError):
    """A failure whose story is already in the log: the flow raises it only to end its run Failed
    (the failed-run automation, the UI's state). Its traceback says nothing the log does not."""


class _OneTraceback(logging.Filter):
    """Keeps the engine's "Encountered exception during execution" line for a :class:`Told` failure
    and drops its traceback: the stage that failed logged its own, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], Told):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_task_completions() -> None:
    """Install the filters on Prefect's run loggers, once per process (the run log and the console)."""
    for name, kind in (("prefect.task_runs", _NoBareCompletions), ("prefect.flow_runs", _OneTraceback)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


class TaskRunner:
    """``night.run_night``'s runner inside a flow: each stage runs as its Prefect task (the UI
    shows one task run per stage, named after the session). ``retrain`` is the caller's own
    (a subflow or a deployment run), called as is."""

    def __init__(self, fetch_backoff_s: float = 10.0) -> None:
        self.fetch_backoff_s = fetch_backoff_s

    @staticmethod
    def say(line: str) -> None:
        """A line of the night's story in the flow run's log (the UI's Logs tab)."""
        get_run_logger().info(line)

    def call(self, stage: str, session: str, fn, *args):  # noqa: ANN001
        if stage not in STAGE_TASKS:
            return fn(*args)
        options = dict(STAGE_TASKS[stage])
        if stage == "fetch":
            options["retry_delay_seconds"] = exponential_backoff(self.fetch_backoff_s)
        name = stage.replace("_", "-")
        t = task(fn, name=name, task_run_name=f"{name}-{session}", cache_policy=NO_CACHE, **options)
        return t(*args)
