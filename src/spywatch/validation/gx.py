"""Great Expectations' side: suites in, results out, failed expectations as CheckFailures.

A suite and GX's result are JSON; each is parsed once, where it enters, into small frozen views
(:class:`Suite`, :class:`Expectation`, :class:`ExpectationResult`) that the rest of the package
reads. Suites run in one in-memory (ephemeral) GX context, created on first use and reused, so
nothing is written into ``expectations/`` at run time and the ~2 s GX import is paid once, and only
by callers that validate. A failure names the original column: an expectation on a derived column
carries it in ``meta.column`` (``close`` for ``log_return``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from spywatch.text import LIMIT, cut
from spywatch.validation.results import SHOWN, CheckFailure, day_text, listing, num_text

# The committed GX project (a file context root); runtime only reads its suite JSON.
GX_PROJECT_DIR = Path(__file__).resolve().parents[3] / "expectations"


# ----------------------------------------------------------------------------- GX's JSON, read once


@dataclass(frozen=True)
class SuiteMeta:
    """A suite's ``meta``: what the code reads beside the expectations, and the dict as stored."""

    pandas_checks: tuple[str, ...]  # checks computed in pandas, reported and counted with GX's
    derived_columns: tuple[str, ...]  # the columns bars_table must add (raw_bars)
    scaler_sha256: str | None  # the scaler a features suite was generated from
    stored: dict[str, Any]  # as stored: handed to GX and kept in the features record

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> SuiteMeta:
        read = {"pandas_checks": {}, "derived_columns": {}, "scaler_sha256": None, **meta}
        return cls(tuple(read["pandas_checks"]), tuple(read["derived_columns"]), read["scaler_sha256"], meta)


@dataclass(frozen=True)
class Expectation:
    """One expectation's configuration, from a suite or echoed in GX's result."""

    type: str
    kwargs: dict[str, Any]
    name: str  # meta.name, the check's short name ("price_positive"), else the GX type
    rule: str  # meta.rule, the check in words, else the GX type
    column: str  # the original column a failure names: meta.column for derived checks, else the kwarg
    config: dict[str, Any]  # as GX takes it

    @classmethod
    def from_gx(cls, config: dict[str, Any]) -> Expectation:
        kind, kwargs = config["type"], config["kwargs"]
        meta = {"name": kind, "rule": kind, "column": None, **(config.get("meta") or {})}
        args = {"column": None, "column_A": None, **kwargs}
        column = meta["column"] or args["column"] or args["column_A"] or "*"
        return cls(kind, kwargs, meta["name"], meta["rule"], column, config)

    @property
    def key(self) -> tuple[str, str]:
        """What matches a result to its place in the suite (GX reorders its results)."""
        return self.name, self.column

    def runs_on(self, columns: set[str]) -> bool:
        """False when it names an absent column: the column check already names those."""
        if self.type == "expect_column_to_exist":
            return True
        return all(self.kwargs[k] in columns for k in ("column", "column_A", "column_B") if k in self.kwargs)


@dataclass(frozen=True)
class Suite:
    """An expectation suite (GX's own JSON format), parsed once where it enters."""

    name: str
    expectations: tuple[Expectation, ...]
    meta: SuiteMeta

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Suite:
        return cls(spec["name"], tuple(Expectation.from_gx(e) for e in spec["expectations"]),
                   SuiteMeta.from_dict(spec.get("meta") or {}))

    def runnable_json(self, columns: set[str]) -> str:
        """The suite as GX takes it (canonical JSON), without expectations on absent columns."""
        runnable = [e.config for e in self.expectations if e.runs_on(columns)]
        return json.dumps({"name": self.name, "expectations": runnable, "meta": self.meta.stored},
                          sort_keys=True)


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation's outcome in GX's result."""

    success: bool
    expectation: Expectation
    observed_value: Any
    unexpected_count: int | None
    unexpected_rows: tuple[dict[str, Any], ...] | None  # first offending rows: {"date": ..., column: value}
    error: str | None  # the message of a metric GX could not compute

    @classmethod
    def from_gx(cls, result: dict[str, Any]) -> ExpectationResult:
        outer = {"result": None, "exception_info": None, **result}
        res = {"observed_value": None, "unexpected_count": None, "partial_unexpected_index_list": None,
               **(outer["result"] or {})}
        rows = res["partial_unexpected_index_list"]
        return cls(result["success"], Expectation.from_gx(result["expectation_config"]),
                   res["observed_value"], res["unexpected_count"], None if rows is None else tuple(rows),
                   cls._raised(outer["exception_info"]))

    @staticmethod
    def _raised(info: Any) -> str | None:
        """GX reports a raised metric either flat or keyed by metric id; return the first message."""
        if not isinstance(info, dict):
            return None
        raised = [d for d in (info, *info.values()) if isinstance(d, dict) and d.get("raised_exception")]
        return str(raised[0].get("exception_message")) if raised else None


@dataclass(frozen=True)
class GxRun:
    """GX's result for one suite: its JSON (kept in the record) and each expectation's outcome."""

    json: dict[str, Any]
    results: tuple[ExpectationResult, ...]

    @classmethod
    def from_gx(cls, result: dict[str, Any]) -> GxRun:
        return cls(result, tuple(ExpectationResult.from_gx(r) for r in result["results"]))


def load_suite(name: str, suites_dir: Path | None = None) -> dict:
    """A committed suite's JSON (GX's own format), from ``expectations/suites/`` by default."""
    path = (suites_dir or GX_PROJECT_DIR / "suites") / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"expectation suite {name!r} not found at {path}")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- GX session


@dataclass(frozen=True)
class _GxSession:
    context: Any
    batch_definition: Any


@lru_cache(maxsize=1)
def _gx_session() -> _GxSession:
    """One ephemeral GX context for the process: nothing on disk, no analytics, no progress bars."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"  # read by GX at import: set before it
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX pins this module's logger at INFO; it would announce a temp docs dir on every run.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    # Same names as the committed project's datasource, so its validation definitions read alike.
    batch_definition = (context.data_sources.add_pandas("spywatch").add_dataframe_asset("frame")
                        .add_batch_definition_whole_dataframe("whole_frame"))
    return _GxSession(context, batch_definition)


@lru_cache(maxsize=8)
def _gx_suite(suite_json: str) -> Any:
    import great_expectations as gx

    return gx.ExpectationSuite(**json.loads(suite_json))


def run_suite(spec: Suite, table: pd.DataFrame, parameters: dict[str, Any]) -> GxRun:
    """Validate ``table`` against the suite's expectations on its columns; returns GX's result."""
    session = _gx_session()
    suite = _gx_suite(spec.runnable_json(set(table.columns)))
    batch = session.batch_definition.get_batch(batch_parameters={"dataframe": table})
    # BASIC (counts, percentages, observed values) on the nightly path; a failing suite runs again
    # with SUMMARY for the failing rows' dates that its error names. (SUMMARY's index lists cost
    # GX a metric per expectation: about 0.3 s of the 60-row features suite, for empty lists.)
    result = batch.validate(suite, expectation_parameters=parameters, result_format="BASIC")
    if not result.success:
        result = batch.validate(
            suite, expectation_parameters=parameters,
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": ["date"],
                           "partial_unexpected_count": 20})
    return GxRun.from_gx(result.to_json_dict())


# ----------------------------------------------------------------------------- reporting


def check_failures(suite: Suite, run: GxRun, table: pd.DataFrame) -> list[CheckFailure]:
    """Failed expectations as CheckFailures, in the suite's order (GX reorders its results)."""
    position: dict[tuple[str, str], int] = {}
    for i, exp in enumerate(suite.expectations):
        position.setdefault(exp.key, i)
    failed = [r for r in run.results if not r.success]
    failed.sort(key=lambda r: position.get(r.expectation.key, len(position)))
    return [_failure(suite.name, r, table) for r in failed]


def _failure(suite: str, result: ExpectationResult, table: pd.DataFrame) -> CheckFailure:
    """A failed GX expectation result as a CheckFailure naming the original column and dates."""
    exp = result.expectation
    name, column, rule = exp.name, exp.column, exp.rule
    if result.error:
        return CheckFailure(suite, name, column, f"{rule}: not evaluated: {result.error}")
    if result.unexpected_rows is not None:
        return _rows_failure(suite, exp, result.unexpected_rows, result.unexpected_count, table)
    if exp.type == "expect_table_columns_to_match_ordered_list":
        expected, observed = exp.kwargs["column_list"], list(result.observed_value or [])
        wrong = [c for c in expected if c not in observed] + [c for c in observed if c not in expected]
        return CheckFailure(suite, name, ", ".join(wrong) or column,
                            f"{rule}: {_column_diff(expected, observed)}")
    if exp.type == "expect_column_to_exist":
        return CheckFailure(suite, name, column, f"{rule}: column not found")
    detail = f"{rule}: observed {num_text(result.observed_value)}"
    if exp.type == "expect_column_unique_value_count_to_be_between" and column in table and len(table):
        detail += (f" (value {num_text(table[column].iloc[-1])} on all {len(table)} rows, "
                   f"{day_text(table['date'].iloc[0])}..{day_text(table['date'].iloc[-1])})")
    return CheckFailure(suite, name, column, detail)


def _rows_failure(suite: str, exp: Expectation, rows: tuple[dict[str, Any], ...], unexpected_count: Any,
                  table: pd.DataFrame) -> CheckFailure:
    """A failure listing GX's first offending rows, each with the original column's value."""
    items, column = rows[:SHOWN], exp.column
    count = int(unexpected_count or len(items))
    by_date = table.drop_duplicates("date").set_index("date") if "date" in table else None
    shown, dates = [], []
    for item in items:
        values = dict(item)
        day = day_text(values.pop("date", None))
        if by_date is not None and column not in values and column in by_date:
            values = {column: _lookup(by_date, day, column), **values}  # the original column's value
        dates.append(day)
        pairs = ", ".join(f"{k}={num_text(v)}" for k, v in values.items())
        shown.append(f"{day} ({pairs})" if values else day)
    return CheckFailure(suite, exp.name, column, f"{exp.rule}: {count} row(s): {listing(shown, count)}",
                        tuple(dates), count)


def _lookup(by_date: pd.DataFrame, day: str, column: str) -> Any:
    try:
        return by_date.loc[pd.Timestamp(day), column]
    except (KeyError, ValueError):
        return None


def _column_diff(expected: list[str], observed: list[str]) -> str:
    missing = [c for c in expected if c not in observed]
    extra = [c for c in observed if c not in expected]
    parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else ""]
    parts = [p for p in parts if p] or [f"order {observed}"]
    return cut("; ".join(parts), 4 * LIMIT)
