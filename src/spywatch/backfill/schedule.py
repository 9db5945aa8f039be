"""The replay's schedule and settings: which past sessions a backfill replays, whether its source
can serve them (enough history for a first model), and the config every replayed night runs with."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spywatch import sessions

if TYPE_CHECKING:
    from spywatch.night import PipelineConfig

FREQUENCIES = ("monthly", "weekly", "daily")
FIT_SESSIONS = 500  # bundle.fit_periods refuses fewer sessions up to a model's train end
FIT_BEFORE_VALIDATION = 250  # ... and fewer fitted sessions before a validation span


# ----------------------------------------------------------------------------- replay schedule


def replay_sessions(start: str, end: str, frequency: str = "monthly") -> list[pd.Timestamp]:
    """The NYSE sessions a backfill replays: the last session of each month (or week), or every one."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency={frequency!r}; expected one of {list(FREQUENCIES)}")
    if pd.Timestamp(start) > pd.Timestamp(end):
        raise ValueError(f"start {start} is after end {end}")
    sessions.settled_session(end)  # an end after the last settled session: UnsettledSession (exit 2)
    days = sessions.nyse_sessions(start, end)
    if len(days) == 0:
        raise ValueError(f"no NYSE session in {start}..{end}")
    if frequency == "daily":
        return list(days)
    period = days.to_period("M" if frequency == "monthly" else "W")
    last = pd.Series(days, index=days).groupby(period).max()
    return [pd.Timestamp(d) for d in last.sort_values()]


def history_needed(fit, horizon: int) -> int:
    """Sessions with complete features, up to and including a first model's session, that training
    it under ``fit`` (``policy.FitSettings``) needs: the sessions ``night.retrain.holdout_span`` and
    ``bundle.fit_periods`` ask for, and at least one training batch of complete windows
    (``train.train_model``). The same arithmetic as those functions, kept in step by a test."""
    from spywatch.bundle import FitSpec
    from spywatch.train import TrainConfig

    spec = FitSpec(train_end="", recipe=fit.recipe)
    windows = TrainConfig().batch_size + spec.lookback - 1  # the first window ends lookback - 1 sessions in
    span = FIT_SESSIONS  # sessions up to the train end
    while True:
        n_val = {"full": 0, "recent_val": spec.val_sessions}.get(fit.recipe, int(span * 0.2))
        fitted = span - n_val - (horizon if n_val else 0)  # an embargo before the validation sessions
        if (n_val == 0 or fitted >= FIT_BEFORE_VALIDATION) and fitted >= windows:
            return span + 2 * horizon + fit.holdout  # + an embargo, the holdout, its last label's horizon
        span += 1


def check_replay_inputs(cfg: PipelineConfig, schedule: list[pd.Timestamp]) -> None:
    """Refuse a replay its source cannot serve, before anything is written: replay sessions the
    source has no bar for, or too little history before the first step to train a first model.

    Raises:
        ValueError: naming the source, the sessions it lacks or the first session it holds.
    """
    from spywatch.dataset import build_table
    from spywatch.sources import source_from_spec

    first, last = schedule[0], schedule[-1]
    bars = source_from_spec(cfg.source).fetch(cfg.ticker, None, last.date())
    if len(bars) == 0:
        raise ValueError(f"source {cfg.source!r} has no {cfg.ticker} bar up to {last.date()}")
    span = f"{bars.index[0].date()}..{bars.index[-1].date()}"
    missing = [d for d in schedule if d not in bars.index]
    if missing:
        shown = ", ".join(d.date().isoformat() for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(f"source {cfg.source!r} lacks {len(missing)} of the {len(schedule)} replay session(s) "
                         f"({shown}); its {cfg.ticker} bars span {span}")
    table = build_table(bars)
    complete = table.features.dropna().index  # features are causal: the rows up to `first` are what it sees
    needed = history_needed(cfg.fit, table.targets_config.max_horizon)
    have = int((complete <= first).sum())
    if have < needed:
        earliest = ""
        if len(complete):  # counted on the calendar from the first complete row (the source may end at `last`)
            days = sessions.nyse_sessions(complete[0], complete[0] + pd.DateOffset(years=5))
            earliest = f"; the first replay step must be on or after {days[needed - 1].date()}"
        raise ValueError(
            f"source {cfg.source!r}: the first session available is {bars.index[0].date()}, which leaves {have} "
            f"sessions with complete features up to the first replay step {first.date()}; a first model under "
            f"policy {cfg.policy!r} needs {needed} (to fit on, an embargo, a {cfg.fit.holdout}-session holdout), "
            f"after a year of feature warm-up{earliest}")


# ----------------------------------------------------------------------------- configuration


def backfill_config(root: Path, source: str, ticker: str = "SPY", policy: str = "default",
                    model: dict | None = None, max_epochs: int | None = None, device: str = "auto",
                    retrain: str = "inline") -> PipelineConfig:
    """The ``PipelineConfig`` every replayed night runs with: the named policy's retrain, promotion
    and fit settings (``PipelineConfig.for_policy``); raises ``ValueError`` for an unknown policy."""
    from spywatch.night import PipelineConfig

    return PipelineConfig.for_policy(policy, source=source, root=root.expanduser().resolve(), ticker=ticker,
                                     model=dict(model or {}), max_epochs=max_epochs, device=device, retrain=retrain)


def policy_settings(cfg: PipelineConfig) -> dict:
    """The policy in force, whole: the settings the config carries under the policy's name."""
    from spywatch.policy import POLICIES, Policy

    named = POLICIES.get(cfg.policy)
    return Policy(cfg.policy, named.description if named else "", cfg.retrain_policy, cfg.promotion,
                  cfg.fit).to_dict()


@dataclass(frozen=True)
class BackfillSettings:
    """What a replay's steps depend on (a resumed run must match it): ``config`` of its record."""

    ticker: str
    source: str
    root: str
    start: str
    end: str
    frequency: str
    model: dict
    max_epochs: int | None
    retrain: str
    policy: dict  # ``policy.Policy.to_dict()``: name, description and the settings

    @classmethod
    def from_dict(cls, d: dict) -> BackfillSettings:
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> dict:
        """As the record holds it (tuples as lists): what a resumed run compares."""
        return json.loads(json.dumps(self.to_dict(), default=str))


def backfill_settings(cfg: PipelineConfig, start: str, end: str, frequency: str) -> BackfillSettings:
    """What a replay of ``cfg`` over ``start``..``end`` depends on."""
    return BackfillSettings(ticker=cfg.ticker, source=cfg.source, root=str(cfg.root), start=str(start), end=str(end),
                            frequency=frequency, model=dict(cfg.model), max_epochs=cfg.max_epochs,
                            retrain=cfg.retrain, policy=policy_settings(cfg))
