"""Source specs: the one place a string such as ``csv:data/spy_daily.csv`` becomes a market data source.

A spec is what ``--source``, the flows' ``source`` and a fleet file's ``source:`` take:

``synthetic`` | ``synthetic:SEED``
    the seeded synthetic market (:class:`spywatch.market_data.SyntheticSource`).
``csv:PATH``
    one bars CSV; ``csv-dir:DIR``: one ``DIR/<TICKER>.csv`` per ticker (the fleet's offline source).
``yfinance``
    Yahoo Finance through yfinance.
``faulty:FAILS:INNER``
    fails the first ``FAILS`` fetches (``always``: every one) with a rate limit, then answers like
    ``INNER`` (:class:`spywatch.faults.FaultySource`).
``corrupt:KIND:INNER``
    answers like ``INNER``, damaged: ``KIND`` is ``bad-ohlc``, ``stale`` or ``empty``
    (:class:`spywatch.faults.CorruptSource`).
``synthetic-regime:FROM:MULT[:TREND[:SEED]]``
    the synthetic market with volatility x ``MULT`` from date ``FROM`` on and an extra log drift of
    ``TREND`` per session (:class:`spywatch.faults.RegimeSource`).

``INNER`` is any spec, so faults compose (``faulty:2:synthetic-regime:2023-09-01:3:-0.004``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from spywatch.faults import CORRUPTIONS, CorruptSource, FaultySource, RegimeSource
from spywatch.market_data import CsvDirSource, CsvSource, MarketDataSource, SyntheticSource, YFinanceSource

FAULT_KINDS = ("faulty", "corrupt", "synthetic-regime")


def source_from_spec(spec: str) -> MarketDataSource:
    """The source a spec names (see the module docstring); ``ValueError`` naming the spec otherwise."""
    kind, _, arg = spec.partition(":")
    if kind in FAULT_KINDS:
        return _fault_source(spec)
    if kind == "synthetic":
        return SyntheticSource(seed=int(arg)) if arg else SyntheticSource()
    if kind == "csv":
        if not arg:
            raise ValueError("source 'csv' needs a path: csv:PATH")
        return CsvSource(Path(arg).expanduser().resolve())
    if kind == "csv-dir":
        if not arg:
            raise ValueError("source 'csv-dir' needs a folder: csv-dir:DIR (one DIR/<TICKER>.csv per ticker)")
        return CsvDirSource(Path(arg).expanduser().resolve())
    if kind == "yfinance":
        return YFinanceSource()
    raise ValueError(f"unknown source {spec!r}; expected synthetic, csv:PATH, csv-dir:DIR, yfinance or a fault spec "
                     f"({', '.join(FAULT_KINDS)})")


def _fault_source(spec: str) -> MarketDataSource:
    """Parse a spec of one of :data:`FAULT_KINDS` (the inner spec may contain colons)."""
    kind, _, rest = spec.partition(":")
    if kind == "faulty":
        fails, _, inner = rest.partition(":")
        if not inner:
            raise ValueError(f"source {spec!r}: expected faulty:FAILS:INNER, e.g. faulty:2:synthetic")
        if fails == "always":
            count = -1
        else:
            try:
                count = int(fails)
            except ValueError:
                raise ValueError(f"source {spec!r}: FAILS must be an integer or 'always', got {fails!r}") from None
            if count < 0:
                raise ValueError(f"source {spec!r}: FAILS must be >= 0, got {count}")
        return FaultySource(source_from_spec(inner), count)
    if kind == "corrupt":
        what, _, inner = rest.partition(":")
        if not inner:
            raise ValueError(f"source {spec!r}: expected corrupt:KIND:INNER with KIND in {list(CORRUPTIONS)}")
        return CorruptSource(source_from_spec(inner), what)
    parts = rest.split(":")  # synthetic-regime
    if len(parts) not in (2, 3, 4):
        raise ValueError(f"source {spec!r}: expected synthetic-regime:FROM:MULT[:TREND[:SEED]], "
                         f"e.g. synthetic-regime:2023-09-01:3:-0.004")
    try:
        start = dt.date.fromisoformat(parts[0])
        mult = float(parts[1])
        trend = float(parts[2]) if len(parts) > 2 else 0.0
        seed = int(parts[3]) if len(parts) > 3 else SyntheticSource.seed
    except ValueError as exc:
        raise ValueError(f"source {spec!r}: {exc}") from None
    if not mult > 0:
        raise ValueError(f"source {spec!r}: the volatility multiplier must be > 0, got {mult}")
    if not abs(trend) < 0.05:
        raise ValueError(f"source {spec!r}: the trend is a log return per session, |TREND| < 0.05, got {trend}")
    return RegimeSource(start=start, vol_multiplier=mult, trend=trend, seed=seed)
