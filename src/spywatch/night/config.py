"""The night's configuration: one frozen value, built once at the edge (the CLI, the flow, the backfill)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spywatch import names, sessions
from spywatch.audit import CollapsePolicy
from spywatch.decision import RetrainPolicy
from spywatch.layout import RootLayout
from spywatch.policy import FitSettings, policy_named
from spywatch.promotion import PromotionPolicy

# A failure's reason as quoted in the audit, latest.json, the report, the log and the alerts: long
# enough for a few values already cut at their source (``spywatch.text``), never the input itself.
REASON_LIMIT = 1000


@dataclass(frozen=True)
class PipelineConfig:
    source: str = "synthetic"
    root: Path = Path("workspace")
    ticker: str = "SPY"
    as_of: str | None = None  # None: the last settled NYSE session
    drift_window: int = 60  # sessions of current features compared with the training reference
    performance_window: int = 250  # sessions of matured labels shown in the report
    # The decay test reads every matured label since the champion was selected (or confirmed), up
    # to this many sessions: the CUSUM is a running sum, so its window must not slide.
    decay_window_max: int = 1000
    retrain: str = "inline"  # "inline": train here when the decision says so; "never": only record it
    model: dict = field(default_factory=dict)  # PatchTSTConfig overrides
    max_epochs: int | None = None  # training override (tests, quick runs)
    device: str = "auto"
    threads: int | None = None  # CPU training threads (None: train.cpu_threads' rule); 1 when benches share a host
    policy: str = "default"  # the name the three settings below came from (recorded in the audit)
    retrain_policy: RetrainPolicy = RetrainPolicy()
    promotion: PromotionPolicy = PromotionPolicy()
    fit: FitSettings = FitSettings()
    collapse: CollapsePolicy = CollapsePolicy()
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.retrain not in ("inline", "never"):
            raise ValueError(f"retrain={self.retrain!r}; expected 'inline' or 'never'")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs={self.max_epochs}; expected >= 1")
        names.ticker(self.ticker)  # the names that become paths (``spywatch.names``): BadName, before any work
        if self.run_id is not None:
            names.run_id(self.run_id)
        object.__setattr__(self, "root", Path(self.root))  # a Path from here inward

    @classmethod
    def for_policy(cls, name: str, **kwargs) -> PipelineConfig:
        """A config whose retrain, promotion and fit settings are the named policy's."""
        p = policy_named(name)
        return cls(policy=p.name, retrain_policy=p.retrain, promotion=p.promotion, fit=p.fit, **kwargs)

    @property
    def layout(self) -> RootLayout:
        """The root's folders and files (``spywatch.layout``)."""
        return RootLayout(self.root)

    @property
    def holdout(self) -> int:
        return self.fit.holdout

    def session(self) -> pd.Timestamp:
        """The settled NYSE session on or before ``as_of`` (``sessions.settled_session``: a later
        date raises ``UnsettledSession``)."""
        return sessions.settled_session(self.as_of)
