"""NYSE trading sessions, from the maintained ``exchange_calendars`` XNYS calendar."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd

NEW_YORK = "America/New_York"
# Daily bars settle some minutes after the 16:00 close; before this, today's bar is partial.
SETTLE_AFTER = dt.time(16, 30)
CALENDAR_START = "1990-01-02"


@lru_cache(maxsize=1)
def _xnys():
    import exchange_calendars as xcals

    end = (pd.Timestamp.today() + pd.DateOffset(years=1)).strftime("%Y-%m-%d")
    return xcals.get_calendar("XNYS", start=CALENDAR_START, end=end)


def nyse_sessions(start: dt.date | str, end: dt.date | str) -> pd.DatetimeIndex:
    """Naive session dates in [start, end] (both inclusive)."""
    cal = _xnys()
    start_ts = max(pd.Timestamp(start), cal.first_session)
    end_ts = min(pd.Timestamp(end), cal.last_session)
    if end_ts < start_ts:
        return pd.DatetimeIndex([], name="date")
    idx = cal.sessions_in_range(start_ts, end_ts)
    return pd.DatetimeIndex(idx.tz_localize(None) if idx.tz is not None else idx, name="date")


def last_session_on_or_before(day: dt.date | str) -> pd.Timestamp:
    """The last NYSE session on or before ``day``."""
    day_ts = pd.Timestamp(day).normalize()
    sessions = nyse_sessions(day_ts - pd.Timedelta(days=14), day_ts)
    if len(sessions) == 0:
        raise ValueError(f"no NYSE session in the two weeks up to {day_ts.date()}")
    return sessions[-1]


def last_closed_session(now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The most recent session whose daily bar has settled at wall-clock time ``now``.

    ``now`` is tz-aware (any zone) or naive New York time; default: the current time.
    """
    now_ny = _to_new_york(now)
    today = pd.Timestamp(now_ny.date())
    sessions = nyse_sessions(today - pd.Timedelta(days=14), today)
    if len(sessions) and sessions[-1] == today and now_ny.time() < SETTLE_AFTER:
        sessions = sessions[:-1]
    if len(sessions) == 0:
        raise ValueError(f"no settled NYSE session in the two weeks up to {now_ny}")
    return sessions[-1]


def _to_new_york(now: pd.Timestamp | None) -> pd.Timestamp:
    if now is None:
        return pd.Timestamp.now(tz=NEW_YORK)
    now = pd.Timestamp(now)
    return now.tz_localize(NEW_YORK) if now.tzinfo is None else now.tz_convert(NEW_YORK)
