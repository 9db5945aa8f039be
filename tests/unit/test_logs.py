"""What the run log says: one traceback per failure, the task engine's bare completions gone, Dask's
chatter kept below warnings, and a retrain told in one line with its device warning."""

from __future__ import annotations

import logging
import os

import pytest

from spywatch.audit_schema import Retrain
from spywatch.night.story import retrain_line


def _record(logger: str, level: int, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(logger, level, __file__, 1, message, (), exc_info)


def test_a_told_failure_keeps_its_line_and_loses_its_traceback_and_bare_completions_go():
    from flows.fleet import FleetFailed
    from flows.nightly import NightFailed
    from tasks.night import quiet_task_completions

    quiet_task_completions()
    quiet_task_completions()  # once per process, however often the flows call it
    flow_log, task_log = logging.getLogger("prefect.flow_runs"), logging.getLogger("prefect.task_runs")
    assert len(flow_log.filters) == len({type(f) for f in flow_log.filters})

    for told in (NightFailed("session 2024-06-28: fetch_failed in fetch"), FleetFailed("1 of 3 tickers failed")):
        record = _record("prefect.flow_runs", logging.ERROR, "Encountered exception during execution:", told)
        assert flow_log.filter(record) and record.exc_info is None  # the line stays, without its traceback
    crash = _record("prefect.flow_runs", logging.ERROR, "Encountered exception during execution:", KeyError("x"))
    assert flow_log.filter(crash) and crash.exc_info is not None  # an unexpected error keeps its traceback

    assert not task_log.filter(_record("prefect.task_runs", logging.INFO, "Finished in state Completed()"))
    assert task_log.filter(_record("prefect.task_runs", logging.ERROR, "Finished in state Failed('boom')"))


def test_dask_says_only_its_warnings_here_and_in_its_workers(monkeypatch):
    from flows.fleet import quiet_dask

    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    logger = logging.getLogger("distributed")
    monkeypatch.setattr(logger, "level", logging.INFO)
    quiet_dask()
    assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "warning"  # what a worker process reads at start
    assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    nanny = logging.getLogger("distributed.nanny")
    assert not nanny.filter(_record("distributed.nanny", logging.WARNING,
                                    "Worker process still alive after 4.0 seconds, killing"))
    assert nanny.filter(_record("distributed.nanny", logging.WARNING, "Worker exceeded 95% memory budget"))


@pytest.mark.parametrize("warning", [None, "the retrain ran on work pool 'gpu' but trained on cpu: no CUDA"])
def test_a_retrain_is_one_line_with_its_gate_and_its_device_warning(warning):
    r = Retrain.model_validate({
        "challenger": "20241231T000000Z-abc", "promoted": False, "members": 3, "device": "cpu",
        "train_seconds": 41.2, "device_warning": warning,
        "gate": {"promote": False, "rule": "refused", "reasons": ["no better"],
                 "details": {"rule": "refused", "comparison": {"estimate": -0.004, "ci_low": -0.02, "ci_high": 0.011,
                                                               "p_a_better": 0.31}}}})
    line = retrain_line(r)
    assert line.startswith("challenger 20241231T000000Z-abc (3 member(s), trained on cpu in 41 s;")
    assert "not promoted (rule refused, challenger - champion mean AUC -0.0040 [-0.0200, +0.0110], P(better) 0.31)" \
        in line
    if warning:
        assert line.endswith(f"; WARNING: {warning}")
    else:
        assert "WARNING" not in line
