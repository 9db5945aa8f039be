"""The ``backfill`` flow: replay the nightly pipeline over a date range (walk-forward, monthly by
default) as a policy simulation, and write the policy table: how often it would have retrained,
alarmed and promoted, and the AUC of its predictions against a Random Forest refitted each step.

Run it on its own root: it trains and promotes models there as the nights go by. ``policy``
names the retrain policy replayed (``spywatch.policy``: default, never, calendar, legacy). The
loop is ``spywatch backfill``'s (``run_backfill``), each night a ``replay-night`` task; the
record is rewritten after each night, so ``resume=True`` goes on from an interrupted run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from prefect import flow

from spywatch.backfill import backfill_config, run_backfill
from spywatch.objectroot import local_root_only
from tasks.backfill import publish_policy_table, replay_night, score_nights


@flow(name="backfill", flow_run_name="backfill-{policy}-{start}-{end}", timeout_seconds=48 * 3600, log_prints=True)
def backfill(root: str, start: dt.date, end: dt.date, source: str = "yfinance", ticker: str = "SPY",
             policy: str = "default", frequency: Literal["monthly", "weekly", "daily"] = "monthly",
             model: dict[str, int] | None = None, max_epochs: int | None = None, device: str = "auto",
             retrain: Literal["inline", "never"] = "inline", rf_trees: int = 100, out_dir: str | None = None,
             resume: bool = False) -> dict:
    """Replay nights ``start``..``end`` in order on ``root``; the table goes to ``out_dir``
    (default ``<root>/backfill``). ``retrain="never"`` only counts the decisions (no training:
    the champion at ``start`` is kept throughout). ``resume``: keep the nights an interrupted run
    with the same settings recorded in ``out_dir`` and replay the rest."""
    # the policy's retrain, promotion and fit settings are part of every night's config
    local_root_only(root, "a backfill")
    cfg = backfill_config(Path(root), source, ticker, policy, model, max_epochs, device, retrain)
    record_dir = Path(out_dir) if out_dir else cfg.layout.backfill
    table = run_backfill(cfg, start.isoformat(), end.isoformat(), frequency, out_dir=record_dir, rf_trees=rf_trees,
                         resume=resume, on_step=lambda progress: print(progress.line()),
                         replay=replay_night, score=score_nights)
    return publish_policy_table(table, record_dir)
