"""Property-based: any plausible generated bars pass raw_bars; any single corruption fails its check.

Bars are a random walk on real NYSE sessions. Every example reuses the one GX context of the
process (created on the first validation), so 15 examples take a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spywatch import sessions
from spywatch.validation import validate_bars

POOL = sessions.nyse_sessions("2005-01-03", "2023-12-29")
PROFILE = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_bars(draw) -> pd.DataFrame:
    """30-80 consecutive sessions with daily moves under 8% and consistent OHLC."""
    n = draw(st.integers(30, 80))
    start = draw(st.integers(0, len(POOL) - n))
    ret = draw(arrays(np.float64, n, elements=st.floats(-0.08, 0.08)))
    gap = draw(arrays(np.float64, n, elements=st.floats(-0.02, 0.02)))
    wick = draw(arrays(np.float64, (2, n), elements=st.floats(0.0, 0.02)))
    volume = draw(arrays(np.float64, n, elements=st.integers(1, 10**9).map(float)))
    close = 50.0 * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[50.0], close[:-1]]) * np.exp(gap)
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "adj_close": close * 0.8, "volume": volume},
                        index=POOL[start:start + n].rename("date"))


def _set(bars: pd.DataFrame, row: int, column: str, value: float) -> pd.DataFrame:
    bars.iloc[row, bars.columns.get_loc(column)] = value
    return bars


def _next_session(day: pd.Timestamp) -> pd.Timestamp:
    return sessions.nyse_sessions(day + pd.Timedelta(days=1), day + pd.Timedelta(days=10))[0]


def _weekend_bar(b: pd.DataFrame, row: int) -> pd.DataFrame:
    """Insert a bar on the first calendar gap (a weekend or holiday) at or after ``row``."""
    gaps = np.flatnonzero(np.diff(b.index.values).astype("timedelta64[D]").astype(int) > 1)
    at = gaps[gaps >= row - 1][0] if (gaps >= row - 1).any() else gaps[0]
    extra = b.iloc[[at]].set_axis(pd.DatetimeIndex([b.index[at] + pd.Timedelta(days=1)], name="date"))
    return pd.concat([b, extra]).sort_index()


def _swap(b: pd.DataFrame, row: int) -> pd.DataFrame:
    order = np.arange(len(b))
    order[[row, row + 1]] = order[[row + 1, row]]
    return b.iloc[order]


# name -> (corrupt(bars, row) -> bars, the check that must fail); row is in [1, n - 6]
CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame, int], pd.DataFrame], str]] = {
    "negative_close": (lambda b, i: _set(b, i, "close", -b["close"].iloc[i]), "price_positive"),
    "zero_open": (lambda b, i: _set(b, i, "open", 0.0), "price_positive"),
    "negative_volume": (lambda b, i: _set(b, i, "volume", -1.0), "volume_non_negative"),
    "nan_high": (lambda b, i: _set(b, i, "high", np.nan), "not_null"),
    "high_below_low": (lambda b, i: _set(b, i, "high", b["low"].iloc[i] * 0.99), "high_ge_low"),
    "close_above_high": (lambda b, i: _set(b, i, "close", b["high"].iloc[i] * 1.01), "close_le_high"),
    "open_below_low": (lambda b, i: _set(b, i, "open", b["low"].iloc[i] * 0.99), "low_le_open"),
    "duplicated_date": (lambda b, i: b.rename(index={b.index[i]: b.index[i - 1]}), "dates_unique"),
    "swapped_dates": (_swap, "dates_increasing"),
    "missing_session": (lambda b, i: b.drop(b.index[i]), "calendar_complete"),
    "weekend_bar": (_weekend_bar, "nyse_sessions_only"),
    "future_bar": (lambda b, i: pd.concat([b, b.iloc[[-1]].set_axis(
        pd.DatetimeIndex([_next_session(b.index[-1])], name="date"))]), "no_future_dates"),
    "stale_feed": (lambda b, i: b.iloc[:-1], "fresh"),
    "outlier_return": (lambda b, i: b.assign(close=b["close"].where(b.index != b.index[i], b["high"] * 1.4),
                                             high=b["high"].where(b.index != b.index[i], b["high"] * 1.4)),
                       "daily_log_return"),
    "x100_high": (lambda b, i: _set(b, i, "high", b["high"].iloc[i] * 100), "level_jump"),
    "x10_from_here": (lambda b, i: b.assign(**{c: b[c].where(b.index < b.index[i], b[c] * 10)
                                               for c in ("open", "high", "low", "close", "adj_close")}),
                      "level_jump"),
    "zero_volume_block": (lambda b, i: b.assign(volume=b["volume"].where(
        (np.arange(len(b)) < i) | (np.arange(len(b)) >= i + 5), 0.0)), "zero_volume_block"),
    "volume_as_int": (lambda b, i: b.astype({"volume": "int64"}), "dtype"),
    "extra_column": (lambda b, i: b.assign(ticker=1.0), "columns_exact"),
}


@PROFILE
@given(valid_bars())
def test_valid_bars_pass(bars):
    result = validate_bars(bars, bars.index[-1])
    assert result.success, result.format()


@PROFILE
@given(valid_bars(), st.sampled_from(sorted(CORRUPTIONS)), st.data())
def test_single_corruption_fails_its_check(bars, name, data):
    corrupt, check = CORRUPTIONS[name]
    row = data.draw(st.integers(1, len(bars) - 6), label="row")
    as_of = bars.index[-1]
    result = validate_bars(corrupt(bars.copy(), row), as_of)
    assert check in result.failed_checks, f"{name} at row {row}:\n{result.format()}"
