"""From bars to the model's table: features, raw indicators and targets, with date splits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from spywatch.features import FEATURES, FeatureScaler, ShiftTable, compute_features, raw_indicators, shift_table
from spywatch.targets import TargetConfig, make_targets


@dataclass(frozen=True)
class FeatureTable:
    """Everything derived from one bars frame, aligned on its session dates."""

    features: pd.DataFrame  # FEATURES, NaN during warm-up
    raw: pd.DataFrame  # Close, MACD, ATR, RSI, Volume (unscaled; for the shift table and the raw ablation)
    targets: pd.DataFrame  # y_h1, y_h3, ..., NaN until matured
    targets_config: TargetConfig
    bars: pd.DataFrame | None = None  # the bars it was built from (what the data hash covers)

    @property
    def index(self) -> pd.DatetimeIndex:
        return self.features.index

    def mask(self, start: dt.date | str | None = None, end: dt.date | str | None = None) -> pd.Series:
        idx = self.index
        m = pd.Series(True, index=idx)
        if start is not None:
            m &= idx >= pd.Timestamp(start)
        if end is not None:
            m &= idx <= pd.Timestamp(end)
        return m & self.features.notna().all(axis=1)


def build_table(bars: pd.DataFrame, targets: TargetConfig = TargetConfig()) -> FeatureTable:
    if len(bars) == 0:
        raise ValueError("no bars to build features from")
    return FeatureTable(features=compute_features(bars), raw=raw_indicators(bars),
                        targets=make_targets(bars["close"], targets), targets_config=targets, bars=bars)


def fit_and_shift(table: FeatureTable, train_end: str, test_start: str, test_end: str | None = None,
                  train_start: str | None = None) -> tuple[FeatureScaler, ShiftTable]:
    """Fit the scaler on [train_start, train_end] and measure the test period against it."""
    train = table.mask(train_start, train_end)
    test = table.mask(test_start, test_end)
    if not train.any():
        raise ValueError(f"no complete feature rows up to train end {train_end}")
    if not test.any():
        raise ValueError(f"no complete feature rows in the test period {test_start}..{test_end or 'end'}")
    scaler = FeatureScaler.fit(table.features.loc[train, list(FEATURES)])
    # Raw columns are compared over the whole date ranges, warm-up included, as the original audit did.
    idx = table.index
    by_date = lambda lo, hi: (idx >= pd.Timestamp(lo or idx[0])) & (idx <= pd.Timestamp(hi or idx[-1]))  # noqa: E731
    return scaler, shift_table(table.features, table.raw, scaler, by_date(train_start, train_end),
                               by_date(test_start, test_end))
