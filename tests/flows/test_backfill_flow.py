"""The ``backfill`` flow: a short walk-forward replay writes its policy table, on disk and on the
run page (without retraining, to stay quick; the bench runs the real thing), one task run per
night, and resumes a recorded replay without replaying its nights."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.flows.support import MAX_EPOCHS, TINY_MODEL, artifacts, task_runs

pytestmark = pytest.mark.integration


def test_backfill_replays_month_ends_and_writes_the_policy_table(prefect_server, fresh_root, tmp_path):
    from flows.backfill import backfill
    from spywatch.backfill import StepRecord, check_outputs
    from spywatch.policy import POLICIES

    out_dir = tmp_path / "policy"
    params = dict(root=str(fresh_root), start=dt.date(2023, 7, 1), end=dt.date(2023, 8, 31), source="synthetic",
                  policy="never", model=TINY_MODEL, max_epochs=MAX_EPOCHS, retrain="never", rf_trees=20,
                  out_dir=str(out_dir))
    state = backfill(**params, return_state=True)

    assert state.is_completed(), state.message
    out = state.result()
    counts = out["counts"]
    assert counts["runs"] == 2 and counts["published"] == 2 and counts["errors"] == 0
    assert counts["retrains"] == 0 and counts["promotions"] == 0  # retrain="never"
    record = json.loads((out_dir / "policy.json").read_text())
    assert record["config"]["policy"] == json.loads(json.dumps(POLICIES["never"].to_dict()))  # passed through
    assert record["summary"]["policy"] == "never" and record["retrains"] == 0
    steps = record["steps"]
    assert [s["session"] for s in steps] == ["2023-07-31", "2023-08-31"]  # month-end sessions, in order
    assert all(s["champion_before"] == s["champion_after"] for s in steps)
    records = [StepRecord.from_dict(s) for s in steps]
    assert check_outputs(fresh_root, records) == []
    (fresh_root / "published" / "sessions" / "2023-08-31" / "report.html").unlink()
    records[0].champion_after = "not-the-model"
    assert check_outputs(fresh_root, records) == [
        "2023-07-31: predictions.parquet model ['" + steps[0]["champion_after"] + "'] != champion not-the-model",
        "2023-07-31: cumulative predictions model ['" + steps[0]["champion_after"] + "'] != champion not-the-model",
        "2023-08-31: report.html missing or empty"]
    walk = out["scores"]["walk_forward"]
    assert set(walk) == {"h1", "h3", "h5"}
    assert 15 <= walk["h5"]["n"] <= 23  # the sessions of August, predicted by the champion in force
    assert walk["h5"]["random_forest"] is not None and walk["h5"]["patchtst"] is not None
    auc = out["scores"]["auc"]["h1"]["patchtst"]  # with its interval, on the same sessions
    assert auc["n"] == walk["h1"]["n"] and auc["ci"][0] <= auc["auc"] <= auc["ci"][1]
    table = (out_dir / "policy.md").read_text()
    assert "| runs |" in table and "Random Forest" in table
    assert (out_dir / "policy_steps.csv").read_text().startswith("session,status,")
    assert (out_dir / "walk_forward.parquet").is_file()  # run_backfill's record, as `spywatch backfill` writes it
    found = artifacts(state.state_details.flow_run_id)
    assert {"spywatch-backfill-policy", "spywatch-backfill-steps"} <= set(found)
    assert {"replay-2023-07-31", "replay-2023-08-31"} <= set(task_runs(state.state_details.flow_run_id))

    # resumed: every night is recorded, so none is replayed; the table is scored and published again
    again = backfill(**params, resume=True, return_state=True)
    assert again.is_completed(), again.message
    assert not [name for name in task_runs(again.state_details.flow_run_id) if name.startswith("replay-")]
    assert json.loads((out_dir / "policy.json").read_text())["steps"] == steps
    assert again.result()["counts"] == counts
