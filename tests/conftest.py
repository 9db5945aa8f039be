"""Shared fixtures. Tests run offline on CPU; the real SPY file lives beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPY_CSV = REPO / "data" / "spy_daily.csv"


@pytest.fixture(scope="session")
def spy_csv() -> Path:
    if not SPY_CSV.exists():
        pytest.fail(f"real SPY data expected at {SPY_CSV} (the project carries it under data/)")
    return SPY_CSV


@pytest.fixture(scope="session")
def spy_bars(spy_csv):
    from spywatch.market_data import read_bars_csv

    return read_bars_csv(spy_csv)
