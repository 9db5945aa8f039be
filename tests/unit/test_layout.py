"""RootLayout names the folders existing roots already have: a moved name would orphan them."""

from __future__ import annotations

from pathlib import Path

import pytest

from spywatch import names
from spywatch.layout import RootLayout

ROOT = Path("/data/spywatch")


def test_a_root_keeps_the_folders_and_files_it_always_had():
    layout = RootLayout(ROOT)
    assert layout.bars_file("spy") == ROOT / "bars" / "SPY.parquet"
    assert layout.revisions_file("SPY") == ROOT / "bars" / "SPY.revisions.jsonl"
    assert layout.models == ROOT / "models"
    assert layout.validation == ROOT / "validation"
    assert layout.baselines == ROOT / "cache" / "baselines.npz"
    assert layout.published == ROOT / "published"
    assert layout.session("2024-06-28") == ROOT / "published" / "sessions" / "2024-06-28"
    assert layout.attempts("2024-06-28") == ROOT / "published" / "sessions" / "2024-06-28" / "attempts"
    assert layout.runs == ROOT / "published" / ".runs"
    assert layout.predictions == ROOT / "published" / "predictions.parquet"
    assert layout.latest == ROOT / "published" / "latest.json"
    assert layout.journal == ROOT / "published" / ".journal.json"
    assert layout.last_run == ROOT / "state" / "last_run.json"
    assert layout.drift_history == ROOT / "state" / "drift_history.json"
    assert layout.retrain_outcome("2024-06-28") == ROOT / "state" / "retrain" / "2024-06-28.json"
    assert layout.serve_record == ROOT / "state" / "serve.json"
    assert layout.backfill == ROOT / "backfill"
    assert layout.prefect == ROOT / "prefect"
    assert (layout.lock, layout.lock_holder) == (ROOT / ".lock", ROOT / ".lock.json")


def test_a_fleet_root_holds_one_root_per_ticker_and_its_page():
    fleet = RootLayout(ROOT)
    qqq = fleet.ticker("qqq")
    assert qqq == RootLayout(ROOT / "tickers" / "QQQ")
    assert qqq.published == ROOT / "tickers" / "QQQ" / "published"
    assert qqq.bars_file("QQQ") == ROOT / "tickers" / "QQQ" / "bars" / "QQQ.parquet"
    assert fleet.tickers == ROOT / "tickers" and fleet.fleet_page == ROOT / "fleet.html"
    # the fleet page's links are relative to the fleet root
    assert RootLayout(Path()).ticker("QQQ").session("2024-06-28") == Path("tickers/QQQ/published/sessions/2024-06-28")


@pytest.mark.parametrize("bad", ["../x", "a/b", ".."])
def test_a_name_that_would_leave_the_root_is_refused(bad):
    with pytest.raises(names.BadName):
        RootLayout(ROOT).ticker(bad)
    with pytest.raises(names.BadName):
        RootLayout(ROOT).bars_file(bad)


def test_the_root_is_a_path_taken_at_the_edge():
    with pytest.raises(TypeError, match="root must be a pathlib.Path"):
        RootLayout("workspace")  # type: ignore[arg-type]
