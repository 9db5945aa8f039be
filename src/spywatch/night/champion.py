"""The champion: the verified model the night predicts with, and where its age and decay window start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spywatch.dataset import FeatureTable
from spywatch.layout import RootLayout
from spywatch.promotion import PromotionPolicy
from spywatch.registry import ModelRegistry, NoChampionError


@dataclass
class Champion:
    version: str
    path: Path
    bundle: object  # ModelBundle
    confirmations: tuple[pd.Timestamp, ...] = ()  # sessions it held against a challenger (registry history)

    def trained_session(self) -> pd.Timestamp:
        """The session it was trained at (in data time, so replays age too)."""
        trained = self.bundle.data.get("trained_session")
        return pd.Timestamp(trained) if trained else self.bundle.data_end

    def last_confirmation(self, session: pd.Timestamp) -> pd.Timestamp | None:
        """The last night up to ``session`` the champion held against a challenger, if any."""
        earlier = [c for c in self.confirmations if c <= session]
        return max(earlier) if earlier else None

    def age_start(self, session: pd.Timestamp) -> pd.Timestamp:
        """Where the champion's age counts from at ``session``: its training, or the last night it held
        against a challenger trained on fresher data (else a refused max-age retrain would fire every night)."""
        confirmed = self.last_confirmation(session)
        trained = self.trained_session()
        return trained if confirmed is None else max(trained, confirmed)

    def decay_window_start(self, table: FeatureTable, session: pd.Timestamp) -> pd.Timestamp:
        """The first session of the decay window: after the holdout the champion was selected on (its
        labels matured by the night it was trained), and after the last night it held against a
        challenger (the test restarts there: the champion was just shown to be as good as a fresh model)."""
        bundle = self.bundle
        h = bundle.targets.max_horizon
        end = bundle.data_end
        pos = int(table.index.searchsorted(end, side="right")) + h  # an embargo after the model's data
        starts = [table.index[pos] if pos < len(table.index) else end + pd.Timedelta(days=1),
                  self.trained_session() + pd.Timedelta(days=1)]
        confirmed = self.last_confirmation(session)
        if confirmed is not None:
            starts.append(confirmed + pd.Timedelta(days=1))
        first = int(table.index.searchsorted(max(starts)))  # the first session on or after
        return table.index[first] if first < len(table.index) else max(starts)


def load_champion(root: Path, promotion: PromotionPolicy = PromotionPolicy()) -> Champion | None:
    """The verified champion, or None when nothing has been promoted yet."""
    from spywatch.bundle import ModelBundle

    registry = ModelRegistry(RootLayout(root).models)
    try:
        mv = registry.load_champion()
    except NoChampionError:
        return None
    confirmations = tuple(pd.Timestamp(s) for s in registry.confirmations(mv.version, promotion.auc_floor))
    return Champion(version=mv.version, path=mv.path, bundle=ModelBundle.load(mv.path), confirmations=confirmations)
