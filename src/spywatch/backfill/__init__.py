"""Backfill as a policy simulation: replay the nightly pipeline over past sessions, walk-forward,
and measure what a retrain policy would have done and what it would have been worth.

Each replay step is ``night.run_night`` for one past session (monthly by default), on its own
root, so the store, the registry and the drift history evolve exactly as they would have night
after night, with nothing from the future: a step sees only bars up to its session. The policy
(``spywatch.policy``: default, never, calendar, legacy) is part of the step's config.

The policy table answers: how often would it have retrained, alarmed and promoted, and how good
were the predictions it published, against a Random Forest refitted at every step on the same
data. By concern: ``schedule`` (which sessions, the replay's config), ``step`` (one replayed
night), ``replay`` (the loop, resumable), ``scoring`` (walk-forward scores, promotions reviewed,
outputs checked) and ``table`` (the record and its markdown).
"""

from spywatch.backfill.replay import StepProgress, resumed_steps, run_backfill, run_fleet_backfill
from spywatch.backfill.schedule import (BackfillSettings, backfill_config, backfill_settings, check_replay_inputs,
                                        history_needed, replay_sessions)
from spywatch.backfill.scoring import REVIEW_SESSIONS, PolicyScores, PromotionReview, check_outputs, score_policy
from spywatch.backfill.step import GateSummary, StepRecord, VerdictBrief, gate_summary, replay_step
from spywatch.backfill.table import PolicyTable, difference_cell, interval_cell

__all__ = ["REVIEW_SESSIONS", "BackfillSettings", "GateSummary", "PolicyScores", "PolicyTable", "PromotionReview",
           "StepProgress", "StepRecord", "VerdictBrief", "backfill_config", "backfill_settings", "check_outputs",
           "check_replay_inputs", "difference_cell", "gate_summary", "history_needed", "interval_cell",
           "replay_sessions", "replay_step", "resumed_steps", "run_backfill", "run_fleet_backfill", "score_policy"]
