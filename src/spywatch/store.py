"""Parquet store of daily bars: one file per ticker, schema enforced, incremental, atomic.

Each update re-fetches the last ``refetch_sessions`` stored sessions to catch revised bars,
logs every revision (to the logger and to ``<ticker>.revisions.jsonl``), and replaces the
file atomically: a kill at any point leaves the old complete file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spywatch.atomic import atomic_write, atomic_write_text
from spywatch.layout import RootLayout
from spywatch.market_data import BAR_COLUMNS, DataFormatError, MarketDataSource, empty_bars

log = logging.getLogger(__name__)

BAR_SCHEMA = pa.schema(
    [pa.field("date", pa.date32(), nullable=False)]
    + [pa.field(c, pa.float64(), nullable=False) for c in ("open", "high", "low", "close", "adj_close")]
    + [pa.field("volume", pa.int64(), nullable=False)]
)


@dataclass(frozen=True)
class Revision:
    date: str
    column: str
    old: float
    new: float


@dataclass(frozen=True)
class UpdateResult:
    ticker: str
    path: Path
    source: str
    synthetic: bool
    fetched_rows: int
    new_sessions: list[str]
    revisions: list[Revision] = field(default_factory=list)
    first_session: str | None = None
    last_session: str | None = None


class ParquetStore:
    """Bars under ``root/bars/<TICKER>.parquet`` (:class:`spywatch.layout.RootLayout`)."""

    def __init__(self, root: Path) -> None:
        self.layout = RootLayout(root)

    def path(self, ticker: str) -> Path:
        return self.layout.bars_file(ticker)

    def revisions_path(self, ticker: str) -> Path:
        return self.layout.revisions_file(ticker)

    # -------------------------------------------------------------- read / write

    def read(self, ticker: str) -> pd.DataFrame:
        path = self.path(ticker)
        if not path.exists():
            return empty_bars()
        table = pq.read_table(path)
        if not table.schema.remove_metadata().equals(BAR_SCHEMA):
            raise DataFormatError(f"{path}: schema {table.schema.remove_metadata()} != expected {BAR_SCHEMA}")
        frame = table.to_pandas()
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("date")), name="date")
        return frame.astype({"volume": "float64"})

    def metadata(self, ticker: str) -> dict[str, str]:
        path = self.path(ticker)
        if not path.exists():
            return {}
        meta = pq.read_schema(path).metadata or {}
        return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"spywatch.")}

    def write(self, ticker: str, bars: pd.DataFrame, source: str, synthetic: bool) -> Path:
        table = to_table(bars, ticker)
        table = table.replace_schema_metadata({
            "spywatch.ticker": ticker.upper(), "spywatch.source": source,
            "spywatch.synthetic": str(bool(synthetic)).lower(),
        })
        return atomic_write(self.path(ticker), lambda tmp: pq.write_table(table, tmp))

    # -------------------------------------------------------------- incremental update

    def update(self, ticker: str, source: MarketDataSource, end: dt.date, refetch_sessions: int = 10,
               check: Callable[[pd.DataFrame], None] | None = None, rel_tol: float = 1e-6) -> UpdateResult:
        """Fetch what is missing up to ``end`` (plus the last sessions again) and store it.

        ``check`` sees the merged candidate before it is written (e.g. the raw-bars validation)
        and raises to keep the stored file as it was.
        """
        old = self.read(ticker)
        meta = self.metadata(ticker)
        if meta and meta.get("spywatch.synthetic") != str(bool(source.synthetic)).lower():
            raise DataFormatError(
                f"{self.path(ticker)} holds {'synthetic' if meta['spywatch.synthetic'] == 'true' else 'real'} "
                f"data from {meta.get('spywatch.source')!r}; refusing to mix in source {source.name!r}; use another root")
        # Re-fetch the last stored sessions up to `end` (a replay of an earlier date fetches little).
        upto = old.loc[:pd.Timestamp(end)]
        start = None if upto.empty else upto.index[-min(refetch_sessions, len(upto))].date()
        fetched = source.fetch(ticker, start, end)
        revisions = find_revisions(old, fetched, rel_tol)
        for rev in revisions:
            log.warning("revised bar %s %s %s: %r -> %r", ticker, rev.date, rev.column, rev.old, rev.new)
        merged = pd.concat([old, fetched])
        merged = merged[~merged.index.duplicated(keep="last")].sort_index()
        new_sessions = [d.date().isoformat() for d in fetched.index.difference(old.index)]
        if check is not None:
            check(merged)
        path = self.path(ticker)
        if new_sessions or revisions or not path.exists():
            self.write(ticker, merged, source.name, source.synthetic)
        if revisions:
            self._log_revisions(ticker, revisions)
        return UpdateResult(
            ticker=ticker.upper(), path=path, source=source.name, synthetic=source.synthetic,
            fetched_rows=len(fetched), new_sessions=new_sessions, revisions=revisions,
            first_session=merged.index[0].date().isoformat() if len(merged) else None,
            last_session=merged.index[-1].date().isoformat() if len(merged) else None,
        )

    def _log_revisions(self, ticker: str, revisions: list[Revision]) -> None:
        path = self.revisions_path(ticker)
        previous = path.read_text() if path.exists() else ""
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        lines = "".join(json.dumps({"logged_at": stamp, **rev.__dict__}) + "\n" for rev in revisions)
        atomic_write_text(path, previous + lines)


def to_table(bars: pd.DataFrame, ticker: str = "") -> pa.Table:
    """Canonical bars -> Arrow table with :data:`BAR_SCHEMA`; nulls and bad volume are refused."""
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise DataFormatError(f"bars for {ticker or '?'} lack column(s) {missing}")
    nulls = bars[list(BAR_COLUMNS)].isna()
    if nulls.any().any():
        col = nulls.any().idxmax()
        dates = [d.date().isoformat() for d in bars.index[nulls[col]]][:3]
        raise DataFormatError(f"bars for {ticker or '?'}: column {col} has {int(nulls[col].sum())} "
                              f"missing value(s), e.g. on {dates}; refusing to store them")
    volume = bars["volume"].to_numpy(dtype="float64")
    if not np.all(np.isfinite(volume)) or np.any(volume != np.round(volume)):
        raise DataFormatError(f"bars for {ticker or '?'}: column volume is not integral")
    data = {"date": pa.array(bars.index.date, type=pa.date32())}
    for c in ("open", "high", "low", "close", "adj_close"):
        data[c] = pa.array(bars[c].to_numpy(dtype="float64"), type=pa.float64())
    data["volume"] = pa.array(volume.astype("int64"), type=pa.int64())
    return pa.table(data, schema=BAR_SCHEMA)


def find_revisions(old: pd.DataFrame, new: pd.DataFrame, rel_tol: float = 1e-6) -> list[Revision]:
    """Cells of sessions present in both frames whose values changed by more than ``rel_tol``."""
    common = old.index.intersection(new.index)
    out: list[Revision] = []
    for col in BAR_COLUMNS:
        a = old.loc[common, col].to_numpy(dtype="float64")
        b = new.loc[common, col].to_numpy(dtype="float64")
        changed = np.abs(a - b) > rel_tol * np.maximum(np.abs(a), 1e-12)
        out.extend(Revision(common[i].date().isoformat(), col, float(a[i]), float(b[i]))
                   for i in np.flatnonzero(changed))
    return out
