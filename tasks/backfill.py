"""Backfill tasks over ``spywatch.backfill``: one replayed night, the scores, the policy table."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from spywatch import backfill
from spywatch.backfill import PolicyScores, PolicyTable, StepRecord
from spywatch.pipeline import PipelineConfig

TAGS = ("spywatch", "backfill")


def replay_schedule(start: str, end: str, frequency: str) -> list[str]:
    return [d.date().isoformat() for d in backfill.replay_sessions(start, end, frequency)]


@task(name="replay-night", task_run_name="replay-{session}", cache_policy=NO_CACHE, timeout_seconds=4 * 3600,
      tags=TAGS)
def replay_night(cfg: PipelineConfig, session: str) -> StepRecord:
    """The whole nightly pipeline for one past session (steps depend on each other: no caching)."""
    import pandas as pd

    return backfill.replay_step(cfg, pd.Timestamp(session))


@task(name="score-policy", cache_policy=NO_CACHE, timeout_seconds=4 * 3600, tags=TAGS)
def score_policy(cfg: PipelineConfig, steps: list[StepRecord], rf_trees: int) -> PolicyScores:
    return backfill.score_policy(Path(cfg.root), cfg.ticker, steps, rf_trees)


@task(name="write-policy-table", cache_policy=NO_CACHE, tags=TAGS)
def write_policy_table(cfg: PipelineConfig, steps: list[StepRecord], scores: PolicyScores, start: str, end: str,
                       frequency: str, out_dir: str) -> dict:
    """CSV/JSON/markdown on disk, and the same table on the run page."""
    table = PolicyTable(steps, scores, backfill.backfill_settings(cfg, start, end, frequency))
    paths = table.write(Path(out_dir))
    create_markdown_artifact(markdown=table.markdown(), key="spywatch-backfill-policy",
                             description=f"policy simulation {start}..{end} ({frequency})")
    create_table_artifact(table=[r.row() for r in steps], key="spywatch-backfill-steps",
                          description="one row per replayed night")
    return {"counts": table.counts, "scores": scores.to_dict(), "outputs": {k: str(v) for k, v in paths.items()}}
