"""NYSE trading sessions, from the maintained ``exchange_calendars`` XNYS calendar.

The settled-session rule: a session is *settled* once the wall clock in New York has passed its
day's 16:00 close plus ``SETTLE_AFTER``'s margin (16:30); before that its daily bar is partial,
and a later session has not happened. Every entry point resolves the session it runs for with
:func:`settled_session`, so a date after the last settled session is refused (``UnsettledSession``,
a usage error: exit 2, nothing written) whatever the source: a synthetic or CSV source would
otherwise happily provide bars for a day that has not happened.
"""

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


class UnsettledSession(ValueError):
    """A date after the last settled NYSE session: nothing can be run or published for it yet."""


def settled_session(as_of: dt.date | str | None, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The session a run for ``as_of`` is about: the last NYSE session on or before it (None: the
    last settled one), refused with ``UnsettledSession`` when that session has not settled at ``now``
    (default: the wall clock)."""
    settled = last_closed_session(now)
    if as_of is None or as_of == "":
        return settled
    day = pd.Timestamp(as_of).normalize()
    if day <= settled:
        return last_session_on_or_before(day)
    now_ny = _to_new_york(now)
    if day.date() > now_ny.date():
        why = "is in the future"
    else:  # today (or a day between the last settled session and today)
        session = last_session_on_or_before(day)
        if session <= settled:
            return session
        why = f"is today's session, which settles at {SETTLE_AFTER:%H:%M} New York time"
    raise UnsettledSession(f"{day.date()} {why}: the last settled NYSE session is {settled.date()} "
                           f"(now {now_ny:%Y-%m-%d %H:%M} in New York); nothing was run or written")


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
