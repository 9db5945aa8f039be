"""The ``backfill`` flow: replay the nightly pipeline over a date range (walk-forward, monthly by
default) as a policy simulation, and write the policy table: how often it would have retrained,
alarmed and promoted, and the AUC of its predictions against a Random Forest refitted each step.

Run it on its own root: it trains and promotes models there as the nights go by. ``policy``
names the retrain policy replayed (``spywatch.policy``: default, never, calendar, legacy).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from prefect import flow

from spywatch.backfill import backfill_config
from spywatch.lock import root_lock
from tasks.backfill import replay_night, replay_schedule, score_policy, write_policy_table


@flow(name="backfill", flow_run_name="backfill-{policy}-{start}-{end}", timeout_seconds=48 * 3600, log_prints=True)
def backfill(root: str, start: dt.date, end: dt.date, source: str = "yfinance", ticker: str = "SPY",
             policy: str = "default", frequency: Literal["monthly", "weekly", "daily"] = "monthly",
             model: dict[str, int] | None = None, max_epochs: int | None = None, device: str = "auto",
             retrain: Literal["inline", "never"] = "inline", rf_trees: int = 100, out_dir: str | None = None) -> dict:
    """Replay nights ``start``..``end`` in order on ``root``; the table goes to ``out_dir``
    (default ``<root>/backfill``). ``retrain="never"`` only counts the decisions (no training:
    the champion at ``start`` is kept throughout)."""
    # the policy's retrain, promotion and fit settings are part of every night's config
    cfg = backfill_config(root, source, ticker, policy, model, max_epochs, device, retrain)
    steps = []
    with root_lock(cfg.root, "backfill"):  # the whole replay: no nightly run may write this root meanwhile
        for session in replay_schedule(start.isoformat(), end.isoformat(), frequency):
            steps.append(replay_night(cfg, session))
    scores = score_policy(cfg, steps, rf_trees)
    return write_policy_table(cfg, steps, scores, start.isoformat(), end.isoformat(), frequency,
                              out_dir or str(cfg.root / "backfill"))
