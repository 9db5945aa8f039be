"""The night's decision: tonight's signals (drift and its persistence, collapse, decay, the
baseline verdict, age) read into ``decision.decide``; and the drift history it counts from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from spywatch.decision import (BaselineSignal, CollapseSignal, DriftSignal, PerformanceSignal, RetrainDecision,
                               RetrainPolicy, decide)
from spywatch.layout import RootLayout
from spywatch.night.champion import Champion
from spywatch.night.monitor import PredictionAudit
from spywatch.vs_baseline import phrase


def consecutive_drift(history: list[dict], session: str, drifted: bool, since: str | None = None) -> int:
    """Consecutive drifted runs ending tonight (tonight counted), from the drift history; only runs
    after ``since`` (the champion's promotion) count: a new champion starts its own count."""
    from spywatch.drift import consecutive_drift_runs

    return consecutive_drift_runs([h["dataset_drift"] for h in history
                                   if h["session"] < session and (since is None or h["session"] > since)]
                                  + [drifted])


def make_decision(drift_result, audit: PredictionAudit | None, champion: Champion | None,  # noqa: ANN001
                  session: pd.Timestamp, drift_history: list[dict], policy: RetrainPolicy) -> RetrainDecision:
    if champion is None:
        return decide(None, None, None, None, policy)
    drift_signal = None
    if drift_result is not None:
        runs = consecutive_drift(drift_history, session.date().isoformat(), drift_result.dataset_drift,
                                 since=champion.trained_session().date().isoformat())
        drift_signal = DriftSignal(drift_result.dataset_drift, float(drift_result.share), runs)
    collapse = perf = baseline = None
    performance = audit.performance if audit is not None else None
    if audit is not None:
        collapse = CollapseSignal(audit.collapse.collapsed, audit.collapse.verdict, audit.collapse.cause)
    if performance is not None:
        d = performance.decay
        if d is not None and d.sessions:
            perf = PerformanceSignal(d.auc_by_horizon, d.rf_auc_by_horizon, d.n,
                                     loss_diff=tuple(d.loss_diff), sessions=tuple(d.sessions))
        vs = performance.vs_baseline
        if vs is not None:
            baseline = BaselineSignal(vs.verdict, vs.difference, tuple(vs.ci) if vs.ci else None, vs.sessions,
                                      phrase(vs))
    # a session re-run after the champion was trained or confirmed later counts it as new (age 0)
    age = max(0, (session - champion.age_start(session)).days)
    return decide(drift_signal, collapse, perf, float(age), policy, baseline)


def read_drift_history(root: Path) -> list[dict]:
    path = RootLayout(root).drift_history
    return json.loads(path.read_text()) if path.exists() else []


def write_drift_history(root: Path, history: list[dict], session: str, drifted: bool) -> None:
    from spywatch.atomic import atomic_write_json

    kept = [h for h in history if h["session"] != session] + [{"session": session, "dataset_drift": bool(drifted)}]
    atomic_write_json(RootLayout(root).drift_history, sorted(kept, key=lambda h: h["session"])[-500:])
