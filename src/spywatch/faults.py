"""Scripted fake sources for injecting faults into the fetch path (tests and fire drills).

Each wraps a real source behind the same ``MarketDataSource`` interface, so the pipeline, the
Prefect retries and the alerts see exactly what a misbehaving provider would give them. The specs
that name them (``faulty:FAILS:INNER``, ``corrupt:KIND:INNER``,
``synthetic-regime:FROM:MULT[:TREND[:SEED]]``) are parsed by :mod:`spywatch.sources`:

:class:`FaultySource`
    raises :class:`MarketDataError` (a rate limit, say) on the first ``fails`` calls, then
    delegates to ``inner``; ``fails=-1``: always. The fetch task retries this kind.
:class:`CorruptSource`
    delegates to ``inner`` and damages the answer: ``bad-ohlc`` (the last bar's high below its
    low), ``stale`` (the last session missing: a short frame), ``empty`` (an empty frame, the
    silent failure of yfinance #2740). Validation must stop these; retrying would not help.
:class:`RegimeSource`
    the synthetic market with a regime change: volatility multiplied from a date on and, if
    given, an extra log drift per session (``-0.004``: a crash), for drift drills. The drift check
    is calibrated to stay quiet through 1998, 2001 and 2008, so a volatility change alone rarely
    raises the dataset alarm; a crash does.

Every fake keeps the inner source's ``name`` and ``synthetic`` flag: the data it hands over still
comes from there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

import numpy as np

from spywatch.market_data import (PRICE_COLUMNS, MarketDataError, MarketDataSource, SyntheticSource, empty_bars,
                                  synthetic_bars)

CORRUPTIONS = ("bad-ohlc", "stale", "empty")


@dataclass
class FaultySource:
    """Fails ``fails`` times with :class:`MarketDataError`, then answers like ``inner``."""

    inner: MarketDataSource
    fails: int  # -1: always
    calls: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def synthetic(self) -> bool:
        return self.inner.synthetic

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        self.calls += 1
        if self.fails < 0 or self.calls <= self.fails:
            limit = "always" if self.fails < 0 else str(self.fails)
            raise MarketDataError(f"injected fetch failure {self.calls}/{limit} for {ticker} "
                                  f"(simulated rate limit, HTTP 429)")
        return self.inner.fetch(ticker, start, end)


@dataclass
class CorruptSource:
    """Answers like ``inner``, then damages the frame the way providers do."""

    inner: MarketDataSource
    kind: str
    calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in CORRUPTIONS:
            raise ValueError(f"corruption {self.kind!r}; expected one of {list(CORRUPTIONS)}")

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def synthetic(self) -> bool:
        return self.inner.synthetic

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        self.calls += 1
        bars = self.inner.fetch(ticker, start, end)
        if self.kind == "empty" or len(bars) == 0:
            return empty_bars()
        if self.kind == "stale":
            return bars.iloc[:-1]
        bars = bars.copy()
        last = bars.index[-1]
        bars.loc[last, "high"] = bars.loc[last, "low"] * 0.99  # high below low: impossible bar
        return bars


@dataclass
class RegimeSource:
    """The synthetic market with a regime change from ``start``: volatility x ``vol_multiplier``
    and an extra log drift of ``trend`` per session (prices scaled by ``exp(trend * k)`` at the
    k-th session from ``start``, so bars stay consistent and a longer path extends a shorter one)."""

    start: dt.date
    vol_multiplier: float
    trend: float = 0.0
    seed: int = SyntheticSource.seed
    name: str = "synthetic"
    synthetic: bool = True

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        bars = synthetic_bars(end, self.seed, self.start, self.vol_multiplier)
        if self.trend:
            k = np.cumsum(bars.index >= pd.Timestamp(self.start))  # 0 before the regime, 1, 2, ... from it
            factor = np.exp(self.trend * k)
            bars = bars.assign(**{c: (bars[c] * factor).round(4) for c in PRICE_COLUMNS})
        lo = pd.Timestamp(start) if start is not None else bars.index.min()
        return bars.loc[(bars.index >= lo) & (bars.index <= pd.Timestamp(end))]
