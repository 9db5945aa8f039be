"""Parquet store: incremental updates, revision log, schema, and atomic writes under SIGKILL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pandas as pd
import pyarrow.parquet as pq
import pytest

from spywatch.market_data import DataFormatError, synthetic_bars
from spywatch.store import ParquetStore

D = lambda s: pd.Timestamp(s).date()  # noqa: E731


@dataclass
class ScriptedSource:
    """A fake source behind the real interface: serves a frame, optionally revised, and records calls."""

    bars: pd.DataFrame
    name: str = "scripted"
    synthetic: bool = True
    calls: list = field(default_factory=list)

    def fetch(self, ticker, start, end):
        self.calls.append((start, end))
        lo = pd.Timestamp(start) if start else self.bars.index[0]
        return self.bars.loc[lo:pd.Timestamp(end)].copy()


@pytest.fixture(scope="module")
def bars():
    return synthetic_bars("2020-12-31").loc["2020-01-01":]


def test_first_update_fetches_everything_then_only_the_tail(tmp_path, bars):
    store = ParquetStore(tmp_path)
    src = ScriptedSource(bars)
    first = store.update("SPY", src, D("2020-06-30"))
    assert src.calls[0][0] is None
    assert first.last_session == "2020-06-30" and len(first.new_sessions) == len(bars.loc[:"2020-06-30"])
    second = store.update("SPY", src, D("2020-07-31"), refetch_sessions=10)
    stored = store.read("SPY")
    # re-fetched from the 10th-last stored session, to catch revised bars
    assert src.calls[1][0] == bars.loc[:"2020-06-30"].index[-10].date()
    assert second.new_sessions[0] == "2020-07-01" and second.last_session == "2020-07-31"
    pd.testing.assert_frame_equal(stored, bars.loc[:"2020-07-31"].astype({"volume": "float64"}), check_freq=False)
    assert store.metadata("SPY")["spywatch.synthetic"] == "true"


def test_revised_bars_are_applied_and_logged(tmp_path, bars, caplog):
    store = ParquetStore(tmp_path)
    store.update("SPY", ScriptedSource(bars), D("2020-06-30"))
    revised = bars.copy()
    revised.loc["2020-06-29", "close"] += 0.5
    revised.loc["2020-06-26", "volume"] += 1000
    result = store.update("SPY", ScriptedSource(revised), D("2020-06-30"))
    assert {(r.date, r.column) for r in result.revisions} == {("2020-06-29", "close"), ("2020-06-26", "volume")}
    assert store.read("SPY").loc["2020-06-29", "close"] == pytest.approx(bars.loc["2020-06-29", "close"] + 0.5)
    log_lines = store.revisions_path("SPY").read_text().splitlines()
    assert len(log_lines) == 2 and '"column": "close"' in log_lines[1] + log_lines[0]
    assert any("revised bar SPY 2020-06-29 close" in r.message for r in caplog.records)


def test_failed_check_keeps_the_stored_file(tmp_path, bars):
    store = ParquetStore(tmp_path)
    store.update("SPY", ScriptedSource(bars), D("2020-06-30"))
    before = store.path("SPY").read_bytes()

    def reject(frame):
        raise DataFormatError("raw_bars: rejected for the test")

    with pytest.raises(DataFormatError, match="rejected"):
        store.update("SPY", ScriptedSource(bars), D("2020-09-30"), check=reject)
    assert store.path("SPY").read_bytes() == before


def test_nulls_refused_and_real_and_synthetic_never_mixed(tmp_path, bars):
    store = ParquetStore(tmp_path)
    bad = bars.copy()
    bad.loc["2020-03-16", "close"] = float("nan")
    with pytest.raises(DataFormatError, match=r"column close has 1 missing value\(s\), e.g. on \['2020-03-16'\]"):
        store.update("SPY", ScriptedSource(bad), D("2020-06-30"))
    assert not store.path("SPY").exists()
    store.update("SPY", ScriptedSource(bars), D("2020-06-30"))
    with pytest.raises(DataFormatError, match="holds synthetic data.*refusing to mix"):
        store.update("SPY", ScriptedSource(bars, name="yfinance", synthetic=False), D("2020-07-31"))


def test_schema_is_enforced_on_disk(tmp_path, bars):
    store = ParquetStore(tmp_path)
    store.update("SPY", ScriptedSource(bars), D("2020-03-31"))
    schema = pq.read_schema(store.path("SPY"))
    assert str(schema.field("date").type) == "date32[day]" and str(schema.field("volume").type) == "int64"


WRITER = r"""
import sys, pandas as pd
from pathlib import Path
from spywatch.market_data import synthetic_bars
from spywatch.store import ParquetStore
store = ParquetStore(Path(sys.argv[1]))
full = synthetic_bars("2024-12-31")
print("ready", flush=True)
i = 0
while True:
    i += 1
    store.write("SPY", full.iloc[: 4000 + (i % 2) * 4000], "synthetic", True)
"""


def test_kill_mid_write_leaves_old_or_new_file(tmp_path):
    store = ParquetStore(tmp_path)
    full = synthetic_bars("2024-12-31")
    store.write("SPY", full.iloc[:4000], "synthetic", True)
    for delay in (0.05, 0.13, 0.29, 0.41, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        bars = store.read("SPY")  # must parse: never a torn file
        assert len(bars) in (4000, 8000)
        assert bars.index[-1] == full.index[len(bars) - 1]
    leftovers = [p for p in store.path("SPY").parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 5  # a killed writer may leave its temp file, never the target torn
