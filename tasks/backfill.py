"""Backfill tasks over ``spywatch.backfill``: one replayed night, the scores, the policy table on
the run page. The loop that runs them is ``backfill.run_backfill``'s."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from spywatch.backfill import PolicyScores, PolicyTable, StepRecord, replay_step, score_policy
from spywatch.backfill.table import table_paths
from spywatch.night import PipelineConfig

TAGS = ("spywatch", "backfill")


@task(name="replay-night", task_run_name="replay-{session:%Y-%m-%d}", cache_policy=NO_CACHE,
      timeout_seconds=4 * 3600, tags=TAGS)
def replay_night(cfg: PipelineConfig, session: pd.Timestamp) -> StepRecord:
    """The whole nightly pipeline for one past session (steps depend on each other: no caching)."""
    return replay_step(cfg, session)


@task(name="score-policy", cache_policy=NO_CACHE, timeout_seconds=4 * 3600, tags=TAGS)
def score_nights(root: Path, ticker: str, steps: list[StepRecord], rf_trees: int,
                 frame_path: Path | None = None) -> PolicyScores:
    """The replayed nights scored against the baselines, their promotions reviewed."""
    return score_policy(root, ticker, steps, rf_trees, frame_path)


@task(name="publish-policy-table", cache_policy=NO_CACHE, tags=TAGS)
def publish_policy_table(table: PolicyTable, out_dir: Path) -> dict:
    """The table ``run_backfill`` wrote under ``out_dir``, on the run page: counts, scores, paths."""
    cfg = table.config
    create_markdown_artifact(markdown=table.markdown(), key="spywatch-backfill-policy",
                             description=f"policy simulation {cfg.start}..{cfg.end} ({cfg.frequency})")
    create_table_artifact(table=[r.row() for r in table.steps], key="spywatch-backfill-steps",
                          description="one row per replayed night")
    return {"counts": table.counts, "scores": table.scores.to_dict(),
            "outputs": {k: str(v) for k, v in table_paths(out_dir).items()}}
