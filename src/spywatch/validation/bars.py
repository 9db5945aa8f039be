"""The ``raw_bars`` suite: canonical bars, their derived columns, the NYSE calendar and freshness.

Where GX has no built-in expectation, :func:`bars_table` adds a derived column in pandas
(log return, ratio to the previous close, zero-volume run length, NYSE-session flag) and the suite
puts a real GX expectation on it; the expectation's ``meta.column`` names the original column, so a
failure still reads "close" and the offending dates. Calendar completeness and freshness need the
whole date set at once and are computed in pandas, but are reported in the same result structure.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch import sessions
from spywatch.market_data import BAR_COLUMNS, CSV_COLUMNS, DataFormatError, read_bars_csv
from spywatch.validation.gx import Suite, check_failures, load_suite, run_suite
from spywatch.validation.results import (SHOWN, CheckFailure, ValidationFailed, ValidationResult, finish,
                                         listing)

RAW_BARS_SUITE = "raw_bars"

# Derived columns bars_table adds after the canonical ones (the suite's column list names them too).
DERIVED_COLUMNS = ("log_return", "open_to_prev_close", "high_to_prev_close", "low_to_prev_close",
                   "close_to_prev_close", "adj_close_to_prev_adj_close", "zero_volume_run",
                   "is_nyse_session")


# ----------------------------------------------------------------------------- raw bars


def warm_up() -> float:
    """Pay the one-off costs now (GX import and context, the NYSE calendar); returns seconds taken.

    Validates three synthetic bars, so the first real validation is as fast as the later ones.
    """
    start = time.perf_counter()
    days = sessions.nyse_sessions("2024-01-02", "2024-01-04")
    bars = pd.DataFrame({c: [100.0, 101.0, 102.0] for c in BAR_COLUMNS}, index=days.rename("date"))
    validate_bars(bars, days[-1])
    return time.perf_counter() - start


def bars_table(bars: pd.DataFrame) -> pd.DataFrame:
    """The frame the ``raw_bars`` suite runs on: bars with ``date`` as a column, then derived columns.

    Derived columns turn row-to-row rules GX cannot express into per-row values it can bound.
    Missing or non-numeric source columns give NaN derived values (the schema checks report them).
    """
    table = bars.reset_index()
    col = {c: pd.to_numeric(table[c], errors="coerce") if c in table else pd.Series(np.nan, index=table.index)
           for c in BAR_COLUMNS}
    prev_close = col["close"].shift(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["log_return"] = np.log(col["close"] / prev_close)
        for name in ("open", "high", "low", "close"):
            table[f"{name}_to_prev_close"] = col[name] / prev_close
        table["adj_close_to_prev_adj_close"] = col["adj_close"] / col["adj_close"].shift(1)
    zero = col["volume"].eq(0)
    table["zero_volume_run"] = zero.groupby((~zero).cumsum()).cumsum().astype("float64")
    dates = _naive_dates(table["date"]) if "date" in table else pd.Series(pd.NaT, index=table.index)
    known = sessions.nyse_sessions(dates.min(), dates.max()) if dates.notna().any() else pd.DatetimeIndex([])
    table["is_nyse_session"] = dates.isin(known)
    return table


def validate_bars(bars: pd.DataFrame, as_of: dt.date | str, results_dir: Path | None = None,
                  suites_dir: Path | None = None) -> ValidationResult:
    """Run the ``raw_bars`` suite plus the NYSE calendar and freshness checks on canonical bars.

    Args:
        bars: canonical bars (index ``date``; open, high, low, close, adj_close, volume as float64).
        as_of: the run's date: no bar may be later, and the last bar must be the last NYSE session
            on or before it.
        results_dir: if given, the JSON record (GX's result included) is written there atomically.
        suites_dir: where ``raw_bars.json`` lives (default: the committed ``expectations/suites``).
    """
    start = time.perf_counter()
    as_of_ts = pd.Timestamp(as_of).normalize()
    suite = Suite.from_dict(load_suite(RAW_BARS_SUITE, suites_dir))
    _check_derived_columns(suite)
    table = bars_table(bars)
    run = run_suite(suite, table, {"as_of": as_of_ts})
    failures = check_failures(suite, run, table)
    dates = _naive_dates(table["date"]) if "date" in table else pd.Series(dtype="datetime64[ns]")
    failures += [f for f in (_calendar_failure(dates, as_of_ts), _freshness_failure(dates, as_of_ts))
                 if f is not None]
    n_checks = len(run.results) + len(suite.meta.pandas_checks)
    return finish(RAW_BARS_SUITE, failures, len(table), n_checks, start, results_dir,
                  {"as_of": as_of_ts.date().isoformat(), "gx": run.json})


def _check_derived_columns(suite: Suite) -> None:
    declared = sorted(suite.meta.derived_columns)  # GX stores keys sorted
    if declared != sorted(DERIVED_COLUMNS):
        raise ValueError(f"suite {suite.name!r} declares derived columns {declared}; "
                         f"the code computes {list(DERIVED_COLUMNS)}: update one to match the other")


def _naive_dates(values: pd.Series) -> pd.Series:
    dates = pd.to_datetime(values, errors="coerce")
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_localize(None)
    return dates.dt.normalize()


def _calendar_failure(dates: pd.Series, as_of: pd.Timestamp) -> CheckFailure | None:
    """Every NYSE session between the first bar and min(last bar, as-of) must have a bar."""
    dates = dates.dropna()
    if dates.empty:
        return None
    end = min(dates.max(), as_of)
    missing = sessions.nyse_sessions(dates.min(), end).difference(pd.DatetimeIndex(dates))
    if missing.empty:
        return None
    shown = tuple(d.date().isoformat() for d in missing[:SHOWN])
    return CheckFailure(RAW_BARS_SUITE, "calendar_complete", "date",
                        f"{len(missing)} NYSE session(s) missing between {dates.min().date()} and "
                        f"{end.date()}: {listing(shown, len(missing))}", shown, len(missing))


def _freshness_failure(dates: pd.Series, as_of: pd.Timestamp) -> CheckFailure | None:
    """The latest bar on or before as-of must be the last NYSE session on or before as-of.

    Bars after as-of are the ``no_future_dates`` check's finding, not this one's.
    """
    expected = sessions.last_session_on_or_before(as_of)
    known = dates.dropna()
    known = known[known <= as_of]
    if not known.empty and known.max() == expected:
        return None
    last = "no bar" if known.empty else f"last bar {known.max().date()}"
    hint = ("" if known.empty else f"; a file that ends on {known.max().date()} (a csv: source) is run with "
            f"--as-of {known.max().date()} (the flow's as_of)")
    return CheckFailure(RAW_BARS_SUITE, "fresh", "date",
                        f"{last} on or before as-of {as_of.date()}; expected {expected.date()} "
                        f"(the last NYSE session on or before it){hint}", (expected.date().isoformat(),), 1)


# ----------------------------------------------------------------------------- CSV input


# DataFormatError message -> the check it stands for (the messages name column and row/date).
_PARSE_CHECKS = (
    (re.compile(r"missing column\(s\) \[([^\]]*)\]"), "columns_exact"),
    (re.compile(r"column (\S+): unparsable date"), "dates_parseable"),
    (re.compile(r"column (.+?): non-numeric value"), "values_numeric"),
    (re.compile(r"file is empty|header only"), "non_empty"),
    (re.compile(r"file not found"), "file_readable"),
)


def read_bars_for_validation(path: Path | str, results_dir: Path | None = None) -> pd.DataFrame:
    """Parse a bars CSV, leaving date order to the suite; an unparsable file raises ValidationFailed.

    The failure names the check (``columns_exact``, ``values_numeric``, ``dates_parseable``,
    ``non_empty``, ``csv_parseable``), the column and the row/date, like any other failed check.
    """
    start = time.perf_counter()
    try:
        return read_bars_csv(path, strict=False)
    except DataFormatError as exc:
        failure = _parse_failure(Path(path), exc)
        raise ValidationFailed(finish(RAW_BARS_SUITE, [failure], 0, 1, start, results_dir,
                                      {"file": str(path)})) from None


def _parse_failure(path: Path, exc: DataFormatError) -> CheckFailure:
    message = str(exc).removeprefix(f"{path}: ")
    for pattern, check in _PARSE_CHECKS:
        match = pattern.search(message)
        if match:
            column = match.group(1).replace("'", "") if match.groups() else "*"
            column = ", ".join(CSV_COLUMNS.get(c.strip(), c.strip()) for c in column.split(","))
            return CheckFailure(RAW_BARS_SUITE, check, column, f"{path.name}: {message}")
    return CheckFailure(RAW_BARS_SUITE, "csv_parseable", "*", f"{path.name}: {message}")
