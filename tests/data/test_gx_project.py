"""The committed GX project in ``expectations/`` is a working file context, not just loose JSON.

Opened with GX on a copy (a file context writes results and backend ids under its root, and the
repository's copy must stay clean), its ``raw_bars`` checkpoint passes the real data and its
suite is the very JSON that ``validate_bars`` loads.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd

from spywatch.validation import GX_PROJECT_DIR, RAW_BARS_SUITE, bars_table, load_suite


def test_checkpoint_of_the_committed_project_passes_real_data(spy_bars, tmp_path):
    import great_expectations as gx

    root = tmp_path / "expectations"
    shutil.copytree(GX_PROJECT_DIR, root, ignore=shutil.ignore_patterns("uncommitted"))
    context = gx.get_context(mode="file", context_root_dir=str(root))

    checkpoint = context.checkpoints.get(RAW_BARS_SUITE)
    result = checkpoint.run(batch_parameters={"dataframe": bars_table(spy_bars)},
                            expectation_parameters={"as_of": pd.Timestamp("2024-12-31")})
    assert result.success
    suite = context.suites.get(RAW_BARS_SUITE)
    assert len(suite.expectations) == len(load_suite(RAW_BARS_SUITE)["expectations"])


def test_project_files_reference_each_other():
    suite = load_suite(RAW_BARS_SUITE)
    definition = json.loads((GX_PROJECT_DIR / "validation_definitions" / "raw_bars.json").read_text())
    checkpoint = json.loads((GX_PROJECT_DIR / "checkpoints" / "raw_bars.json").read_text())
    assert definition["suite"] == {"id": suite["id"], "name": RAW_BARS_SUITE}
    assert checkpoint["validation_definitions"] == [{"id": definition["id"], "name": definition["name"]}]
    names = {e["meta"]["name"] for e in suite["expectations"]}
    assert {"columns_exact", "price_positive", "high_ge_low", "close_le_high", "dates_unique",
            "dates_increasing", "no_future_dates", "daily_log_return", "level_jump",
            "zero_volume_block", "nyse_sessions_only"} <= names
    assert set(suite["meta"]["pandas_checks"]) == {"calendar_complete", "fresh"}
