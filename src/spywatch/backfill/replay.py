"""The replay: every scheduled night in order on one root, its record rewritten after each step,
resumable, then scored. The same loop for ``spywatch backfill`` (plain functions) and the
``backfill`` flow (which passes its tasks as ``replay`` and ``score``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spywatch.backfill.schedule import BackfillSettings, backfill_settings, replay_sessions
from spywatch.backfill.scoring import PolicyScores, score_policy
from spywatch.backfill.step import StepRecord, replay_step
from spywatch.backfill.table import PolicyTable
from spywatch.lock import root_lock

if TYPE_CHECKING:
    from spywatch.night import PipelineConfig


@dataclass(frozen=True)
class StepProgress:
    """Where a replay stands after a step: for a progress line."""

    done: int  # steps recorded, resumed ones included
    total: int
    record: StepRecord
    eta_seconds: float  # the mean of this run's steps times the steps left

    def line(self) -> str:
        r = self.record
        if r.status == "error":
            what = f"ERROR {r.error}"
        else:
            what = f"{r.status}: " + (f"retrain ({', '.join(r.reasons)})" if r.retrain else "keep")
        if r.retrained:
            what += ", challenger " + ("PROMOTED" if r.promoted else "refused")
            what += f" [{r.gate.rule}]" if r.gate else ""
        return f"[{self.done}/{self.total}] {r.session} {what} {r.seconds:.0f}s ETA {_duration(self.eta_seconds)}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def run_backfill(cfg: PipelineConfig, start: str, end: str, frequency: str = "monthly", out_dir: Path | None = None,
                 rf_trees: int = 100, resume: bool = False,
                 on_step: Callable[[StepProgress], None] | None = None,
                 replay: Callable[[PipelineConfig, pd.Timestamp], StepRecord] = replay_step,
                 score: Callable[[Path, str, list[StepRecord], int, Path | None], PolicyScores] = score_policy,
                 ) -> PolicyTable:
    """Replay every step in order (plain Python; the ``backfill`` flow runs the same loop on its tasks).

    ``out_dir``: the record of the steps so far (``policy.json``, ``.csv``, ``.md``), rewritten after
    each step, then the whole table and the walk-forward frame (``walk_forward.parquet``).
    ``resume``: keep the steps recorded in ``out_dir/policy.json`` by an interrupted run with the
    same settings on the same root, and go on from the next session. A step cut short is simply
    replayed: its fetch and publish are idempotent, and a challenger it may have registered
    without a verdict stays an unused version.
    ``on_step``: called after each replayed step (and after its record is on disk).
    ``replay``, ``score``: one night (``replay_step``) and the scoring (``score_policy``); the flow
    passes its tasks, with the same signatures.
    """
    config = backfill_settings(cfg, start, end, frequency)
    schedule = replay_sessions(start, end, frequency)
    steps = resumed_steps(out_dir, config) if resume and out_dir is not None else []
    done = {r.session for r in steps}
    todo = [s for s in schedule if s.date().isoformat() not in done]
    spent = 0.0
    with root_lock(cfg.root, "backfill"):  # the whole replay: no nightly run may write this root meanwhile
        for i, session in enumerate(todo, start=1):
            record = replay(cfg, session)
            steps.append(record)
            spent += record.seconds
            if out_dir is not None:  # progress on disk: a long backfill can be watched and its partial table read
                PolicyTable(steps, None, config).write(out_dir)
            if on_step is not None:
                on_step(StepProgress(len(steps), len(schedule), record, spent / i * (len(todo) - i)))
    frame = out_dir / "walk_forward.parquet" if out_dir is not None else None
    table = PolicyTable(steps, score(cfg.root, cfg.ticker, steps, rf_trees, frame), config)
    if out_dir is not None:
        table.write(out_dir)
    return table


def run_fleet_backfill(cfgs: dict[str, PipelineConfig], start: str, end: str, frequency: str = "monthly",
                       out_dirs: dict[str, Path] | None = None, rf_trees: int = 100, resume: bool = False,
                       on_step: Callable[[str, StepProgress], None] | None = None,
                       score: Callable[[Path, str, list[StepRecord], int, Path | None], PolicyScores] = score_policy,
                       ) -> dict[str, PolicyTable]:
    """A fleet's replays in lock-step, session by session: every ticker's night for the session,
    the retrains they want fitted in one pass (``night.retrain.fit_fleet_challengers``, as the
    fleet night's ``one-pass`` mode), then those nights run again, each gating its own challenger.
    Each ticker keeps its own root, record (``out_dirs[T]``, rewritten after each session) and
    scores, as ``run_backfill`` gives it; a step's seconds are its two runs (not its share of the
    pass). ``resume``: each ticker keeps the steps its record holds (written with the same
    settings) and only the sessions it lacks are replayed, still in lock-step: an interruption
    between two tickers' records costs the others nothing."""
    import contextlib

    from spywatch.night.retrain import fit_fleet_challengers
    from spywatch.night.run import DEFERRED, GateFitted, defer_retrain

    configs = {t: backfill_settings(cfg, start, end, frequency) for t, cfg in cfgs.items()}
    schedule = replay_sessions(start, end, frequency)
    steps: dict[str, list[StepRecord]] = {
        t: resumed_steps(out_dirs[t], configs[t]) if resume and out_dirs is not None else [] for t in cfgs}
    done = {t: {r.session for r in s} for t, s in steps.items()}
    todo = [s for s in schedule if any(s.date().isoformat() not in done[t] for t in cfgs)]
    spent = 0.0
    with contextlib.ExitStack() as held:
        for cfg in cfgs.values():  # every replay's whole run, as run_backfill holds its one root
            held.enter_context(root_lock(cfg.root, "backfill"))
        for i, session in enumerate(todo, start=1):
            t0 = time.perf_counter()
            sid = session.date().isoformat()
            records = {t: replay_step(cfg, session, retrain=defer_retrain) for t, cfg in cfgs.items()
                       if sid not in done[t]}
            waiting = [t for t, r in records.items() if r.status == DEFERRED]
            if waiting:
                fitted = fit_fleet_challengers({t: cfgs[t] for t in waiting}, {t: session for t in waiting})
                for t in waiting:
                    v = fitted[t]
                    retrainer = GateFitted(v) if isinstance(v, str) else GateFitted(None, f"{type(v).__name__}: {v}")
                    again = replay_step(cfgs[t], session, retrain=retrainer)
                    records[t] = replace(again, seconds=round(again.seconds + records[t].seconds, 2))
            spent += time.perf_counter() - t0
            for t, record in records.items():
                steps[t].append(record)
                if out_dirs is not None:
                    PolicyTable(steps[t], None, configs[t]).write(out_dirs[t])
                if on_step is not None:
                    on_step(t, StepProgress(len(steps[t]), len(schedule), record, spent / i * (len(todo) - i)))
    tables = {}
    for t, cfg in cfgs.items():
        frame = out_dirs[t] / "walk_forward.parquet" if out_dirs is not None else None
        tables[t] = PolicyTable(steps[t], score(cfg.root, cfg.ticker, steps[t], rf_trees, frame), configs[t])
        if out_dirs is not None:
            tables[t].write(out_dirs[t])
    return tables


def resumed_steps(out_dir: Path, config: BackfillSettings) -> list[StepRecord]:
    """Steps of an interrupted run; refuses a record written with other settings."""
    path = out_dir / "policy.json"
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    old, new = record["config"], config.to_json()
    if old != new:
        named = lambda v: v["name"] if isinstance(v, dict) and "name" in v else v  # noqa: E731
        differ = [f"{k} {named(old.get(k))!r} (now {named(new.get(k))!r})" for k in sorted(set(old) | set(new))
                  if old.get(k) != new.get(k)]
        raise ValueError(f"{path} was written with other settings: {'; '.join(differ)}; resume with the same "
                         f"settings, or use a fresh root")
    return [StepRecord.from_dict(d) for d in record["steps"]]
