"""Bars as a provider's CSV, for the tests that feed a night through ``csv:PATH``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_csv(path: Path, bars: pd.DataFrame) -> Path:
    """``bars`` (the store's lower-case columns) written as Yahoo's CSV columns, dates as ISO days."""
    frame = bars.rename(columns={"open": "Open", "high": "High", "low": "Low", "close": "Close",
                                 "adj_close": "Adj Close", "volume": "Volume"})
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.index.name = "Date"
    frame.astype({"Volume": "int64"}).to_csv(path)
    return path
