"""GX's JSON read once into typed views: defaults, column naming and raised metrics, without GX."""

from __future__ import annotations

import json

from spywatch.validation.gx import Expectation, ExpectationResult, Suite


def _config(kind: str = "expect_column_values_to_be_between", meta: dict | None = None, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, **({"meta": meta} if meta is not None else {})}


def test_expectation_names_the_original_column_and_falls_back_to_the_type():
    derived = Expectation.from_gx(_config(meta={"name": "level_jump", "rule": "r", "column": "close"},
                                          column="close_to_prev_close"))
    assert (derived.name, derived.rule, derived.column) == ("level_jump", "r", "close")
    pair = Expectation.from_gx(_config("expect_column_pair_values_a_to_be_greater_than_b",
                                       column_A="high", column_B="low"))
    assert (pair.name, pair.rule, pair.column) == (pair.type, pair.type, "high")
    table = Expectation.from_gx(_config("expect_table_row_count_to_be_between", meta=None, min_value=1))
    assert table.column == "*" and table.key == (table.type, "*")


def test_result_reads_rows_counts_and_raised_metrics_flat_or_keyed():
    config = _config(meta={"name": "price_positive"}, column="low")
    rows = ExpectationResult.from_gx({"success": False, "expectation_config": config,
                                      "result": {"unexpected_count": 2,
                                                 "partial_unexpected_index_list": [{"date": "2008-10-10"}]}})
    assert rows.unexpected_rows == ({"date": "2008-10-10"},) and rows.unexpected_count == 2
    assert rows.error is None
    basic = ExpectationResult.from_gx({"success": False, "expectation_config": config, "result": None,
                                       "exception_info": {"raised_exception": False}})
    assert basic.unexpected_rows is None and basic.observed_value is None and basic.error is None
    keyed = {"metric-1": {"raised_exception": False},
             "metric-2": {"raised_exception": True, "exception_message": "boom"}}
    raised = ExpectationResult.from_gx({"success": False, "expectation_config": config,
                                        "exception_info": keyed})
    assert raised.error == "boom"


def test_suite_meta_defaults_and_runnable_suite_skips_absent_columns():
    suite = Suite.from_dict({"name": "s", "expectations": [
        _config("expect_column_to_exist", column="gone"), _config(column="gone"), _config(column="here")]})
    assert suite.meta.pandas_checks == () and suite.meta.scaler_sha256 is None and suite.meta.stored == {}
    runnable = json.loads(suite.runnable_json({"here"}))
    assert [e["kwargs"]["column"] for e in runnable["expectations"]] == ["gone", "here"]
    assert runnable["meta"] == {} and runnable["name"] == "s"
