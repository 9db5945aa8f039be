"""The raw_bars suite against the real SPY file and one known corruption of it per test.

Each corruption must fail with its own check named (suite, expectation, column, dates), through
the library and, for the file-level ones, through ``spywatch validate`` with exit code 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spywatch import cli
from spywatch.validation import (
    RAW_BARS_SUITE,
    ValidationFailed,
    ValidationResult,
    read_bars_for_validation,
    validate_bars,
)

AS_OF = "2024-12-31"
PRICES = ["open", "high", "low", "close", "adj_close"]


def _failure(result: ValidationResult, check: str, column: str | None = None):
    """The failure of ``check`` (on ``column``), with a readable assertion message if absent."""
    matches = [f for f in result.failures if f.expectation == check and column in (None, f.column)]
    assert matches, f"expected {check} [{column}] to fail; got:\n{result.format()}"
    return matches[0]


def _corrupt(bars: pd.DataFrame, edit: Callable[[pd.DataFrame], pd.DataFrame | None]) -> ValidationResult:
    frame = bars.copy()
    edited = edit(frame)
    return validate_bars(frame if edited is None else edited, AS_OF)


def _write_csv(spy_csv: Path, tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    raw = pd.read_csv(spy_csv, dtype=str, keep_default_na=False)
    path = tmp_path / "bars.csv"
    edit(raw).to_csv(path, index=False)
    return path


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["validate", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out


# ----------------------------------------------------------------------------- real data passes


def test_real_spy_passes(spy_bars):
    result = validate_bars(spy_bars, AS_OF)
    assert result.success, result.format()
    assert result.suite == RAW_BARS_SUITE
    assert result.n_rows == len(spy_bars) == 8038
    assert result.n_checks >= 40 and result.failures == ()


def test_cli_real_spy_exits_0(spy_csv, capsys, tmp_path):
    code, out = _cli(capsys, "--data", str(spy_csv), "--as-of", AS_OF, "--results", str(tmp_path))
    assert code == 0, out
    assert "raw_bars: passed" in out
    record = json.loads(next(tmp_path.glob("raw_bars-*.json")).read_text())
    assert record["success"] is True and record["as_of"] == AS_OF
    assert record["gx"]["success"] is True  # GX's own result is kept beside ours


# ----------------------------------------------------------------------------- one corruption each


def test_negative_price(spy_bars):
    def edit(b):
        b.loc["2008-10-10", "low"] = -1.0

    failure = _failure(_corrupt(spy_bars, edit), "price_positive", "low")
    assert failure.dates == ("2008-10-10",) and "low=-1" in failure.detail


def test_high_below_low(spy_bars):
    def edit(b):
        b.loc["2015-06-01", "high"] = b.loc["2015-06-01", "low"] - 1.0

    failure = _failure(_corrupt(spy_bars, edit), "high_ge_low", "high")
    assert failure.dates == ("2015-06-01",) and failure.count == 1


def test_close_above_high(spy_bars):
    def edit(b):
        b.loc["2019-03-04", "close"] = b.loc["2019-03-04", "high"] * 1.02

    failure = _failure(_corrupt(spy_bars, edit), "close_le_high", "close")
    assert failure.dates == ("2019-03-04",)


def test_duplicated_date(spy_bars):
    result = _corrupt(spy_bars, lambda b: pd.concat([b, b.loc[["2024-12-30"]]]).sort_index())
    assert _failure(result, "dates_unique", "date").dates == ("2024-12-30", "2024-12-30")
    assert _failure(result, "dates_increasing", "date").dates == ("2024-12-30",)


def test_unsorted_dates(spy_bars):
    def edit(b):
        order = np.arange(len(b))
        order[[4000, 4001]] = order[[4001, 4000]]
        return b.iloc[order]

    result = _corrupt(spy_bars, edit)
    failure = _failure(result, "dates_increasing", "date")
    assert failure.count == 1 and failure.dates == (spy_bars.index[4000].date().isoformat(),)
    assert "dates_unique" not in result.failed_checks


def test_nan_close(spy_bars):
    def edit(b):
        b.loc["2001-04-30", "close"] = np.nan

    result = _corrupt(spy_bars, edit)
    assert _failure(result, "not_null", "close").dates == ("2001-04-30",)
    # a missing value is named once, by not_null; the comparisons skip it
    assert result.failed_checks == {"not_null"}, result.format()


def test_fifteen_missing_sessions(spy_bars):
    dropped = spy_bars.index[5000:5060:4][:15]
    result = _corrupt(spy_bars, lambda b: b.drop(dropped))
    failure = _failure(result, "calendar_complete", "date")
    assert failure.count == 15
    assert failure.dates == tuple(d.date().isoformat() for d in dropped[:3])
    assert "and 12 more" in failure.detail


def test_tenfold_level_jump(spy_bars):
    def edit(b):
        b.loc["2020-06-01":, PRICES] *= 10.0

    result = _corrupt(spy_bars, edit)
    for column in PRICES:
        assert _failure(result, "level_jump", column).dates == ("2020-06-01",)
    assert _failure(result, "daily_log_return", "close").dates == ("2020-06-01",)


def test_block_of_zero_volume(spy_bars):
    def edit(b):
        b.iloc[7000:7030, b.columns.get_loc("volume")] = 0.0

    failure = _failure(_corrupt(spy_bars, edit), "zero_volume_block", "volume")
    assert failure.count == 26  # sessions 5..30 of the block
    assert failure.dates[0] == spy_bars.index[7004].date().isoformat()


def test_date_in_the_future(spy_bars):
    def edit(b):
        return pd.concat([b, b.iloc[[-1]].set_axis(pd.DatetimeIndex(["2025-01-02"], name="date"))])

    result = _corrupt(spy_bars, edit)
    assert _failure(result, "no_future_dates", "date").dates == ("2025-01-02",)
    assert "fresh" not in result.failed_checks  # 2024-12-31 is still there


def test_stale_last_bar(spy_bars):
    failure = _failure(_corrupt(spy_bars, lambda b: b.iloc[:-2]), "fresh", "date")
    assert "last bar 2024-12-27" in failure.detail and "expected 2024-12-31" in failure.detail


def test_bar_on_a_weekend(spy_bars):
    friday, saturday = pd.Timestamp("2024-06-07"), pd.Timestamp("2024-06-08")
    result = _corrupt(spy_bars, lambda b: b.rename(index={friday: saturday}))
    assert _failure(result, "nyse_sessions_only", "date").dates == ("2024-06-08",)
    assert _failure(result, "calendar_complete", "date").dates == ("2024-06-07",)


def test_wrong_dtype_and_missing_column_in_memory(spy_bars):
    result = _corrupt(spy_bars, lambda b: b.astype({"volume": "int64"}).drop(columns=["adj_close"]))
    assert _failure(result, "dtype", "volume")
    assert "missing ['adj_close']" in _failure(result, "columns_exact", "adj_close").detail
    # checks on the absent column are not run (the column check already names it)
    assert {f.column for f in result.failures} == {"volume", "adj_close"}


# ----------------------------------------------------------------------------- files that do not parse


def test_cli_non_numeric_value(spy_csv, tmp_path, capsys):
    def edit(raw):
        raw.loc[raw["Date"] == "2010-05-06", "Close"] = "11O.2"
        return raw

    code, out = _cli(capsys, "--data", str(_write_csv(spy_csv, tmp_path, edit)), "--as-of", AS_OF)
    assert code == 1
    line = out.splitlines()[0]
    assert line.startswith("raw_bars: values_numeric [close]:")
    assert "2010-05-06" in line and "'11O.2'" in line


def test_cli_missing_column(spy_csv, tmp_path, capsys):
    path = _write_csv(spy_csv, tmp_path, lambda raw: raw.drop(columns=["Volume"]))
    code, out = _cli(capsys, "--data", str(path), "--as-of", AS_OF)
    assert code == 1
    assert out.splitlines()[0].startswith("raw_bars: columns_exact [volume]:")


def test_cli_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("")
    code, out = _cli(capsys, "--data", str(path), "--as-of", AS_OF)
    assert code == 1 and out.startswith("raw_bars: non_empty [*]:")


def test_cli_unparsable_date(spy_csv, tmp_path, capsys):
    def edit(raw):
        raw.loc[raw["Date"] == "2016-02-29", "Date"] = "2016-02-30"
        return raw

    code, out = _cli(capsys, "--data", str(_write_csv(spy_csv, tmp_path, edit)), "--as-of", AS_OF)
    assert code == 1
    assert out.startswith("raw_bars: dates_parseable [date]:") and "2016-02-30" in out


def test_cli_duplicated_date_is_named_by_the_suite(spy_csv, tmp_path, capsys):
    path = _write_csv(spy_csv, tmp_path, lambda raw: pd.concat([raw, raw.iloc[[-1]]], ignore_index=True))
    code, out = _cli(capsys, "--data", str(path), "--as-of", AS_OF)
    assert code == 1
    assert "raw_bars: dates_unique [date]:" in out and "2024-12-31" in out


def test_unparsable_file_raises_validation_failed_with_record(tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n")
    with pytest.raises(ValidationFailed) as caught:
        read_bars_for_validation(path, results_dir=tmp_path / "results")
    result = caught.value.result
    assert result.failed_checks == {"non_empty"} and not result.success
    assert json.loads(result.results_path.read_text())["failures"][0]["expectation"] == "non_empty"


# ----------------------------------------------------------------------------- results and side effects


def test_result_lines_and_raise(spy_bars):
    def edit(b):
        b.loc["2008-10-10", "low"] = -1.0

    result = _corrupt(spy_bars, edit)
    assert all(line.startswith("raw_bars: ") for line in result.lines())
    assert len(result.lines()) == len(result.failures)
    with pytest.raises(ValidationFailed, match="price_positive"):
        result.raise_if_failed()
    # the one-line reason a failed night and the fleet carry: the first check, its column and dates
    first = result.failures[0]
    assert result.reason().startswith(f"raw_bars validation failed: {first.expectation} [{first.column}]: ")
    assert "2008-10-10" in result.reason()
    more = len(result.failures) - 1
    assert result.reason().endswith(f"(and {more} more check(s))") if more else "more check" not in result.reason()


def test_validation_writes_nothing_into_the_gx_project(spy_bars, tmp_path):
    project = Path(__file__).resolve().parents[2] / "expectations"
    before = {p: p.stat().st_mtime_ns for p in project.rglob("*")}
    result = validate_bars(spy_bars, AS_OF, results_dir=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in project.rglob("*")} == before
    assert result.results_path is not None and result.results_path.parent == tmp_path
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_importing_validation_loads_no_great_expectations():
    """GX costs ~2 s to import: only a validation may pay it, never ``import`` or ``--help``."""
    import subprocess
    import sys

    code = ("import sys, spywatch.validation, spywatch.cli; spywatch.cli.build_parser(); "
            "print('great_expectations' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
