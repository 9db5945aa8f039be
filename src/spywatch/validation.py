"""Data validation with Great Expectations: the ``raw_bars`` and ``features`` suites.

The suites are reviewed JSON, never rebuilt in code: ``raw_bars`` lives in the repository's GX
project (``expectations/suites/raw_bars.json``); a ``features`` suite is generated from a model's
training statistics and stored in that model's folder. Validation runs them in one in-memory
(ephemeral) GX context, created on first use and reused, so nothing is written into
``expectations/`` at run time and the ~2 s GX import is paid once, and only by callers that validate.

Where GX has no built-in expectation, :func:`bars_table` adds a derived column in pandas
(log return, ratio to the previous close, zero-volume run length, NYSE-session flag) and the suite
puts a real GX expectation on it; the expectation's ``meta.column`` names the original column, so a
failure still reads "close" and the offending dates. Calendar completeness and freshness need the
whole date set at once and are computed in pandas, but are reported in the same result structure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spywatch import sessions
from spywatch.atomic import atomic_write_json
from spywatch.features import FeatureScaler
from spywatch.market_data import BAR_COLUMNS, CSV_COLUMNS, DataFormatError, read_bars_csv
from spywatch.text import LIMIT, cut

# The committed GX project (a file context root); runtime only reads its suite JSON.
GX_PROJECT_DIR = Path(__file__).resolve().parents[2] / "expectations"
RAW_BARS_SUITE = "raw_bars"
FEATURES_SUITE = "features"
FEATURES_SUITE_FILE = "features_suite.json"
SCALER_FILE = "scaler.json"
# Training-std band for unbounded features. Measured (bench/results/validation_timing.md): with the
# scaler fitted on 1994-2016, real 2017-2024 SPY peaks at 17 std (gap on 2020-03-16) and 1994-2024
# at 17; a x100 unit error puts the median row of every normalised feature at >= 42 std.
FEATURE_BAND_STD = 25.0
SHOWN = 3  # offending dates/values shown per failure before "and N more"

# Derived columns bars_table adds after the canonical ones (the suite's column list names them too).
DERIVED_COLUMNS = ("log_return", "open_to_prev_close", "high_to_prev_close", "low_to_prev_close",
                   "close_to_prev_close", "adj_close_to_prev_adj_close", "zero_volume_run",
                   "is_nyse_session")


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckFailure:
    """One failed check: which suite and expectation, on which original column, and why.

    ``dates`` holds the first few offending dates (ISO); ``count`` how many rows offend in all
    (0 for table-level checks such as the column list).
    """

    suite: str
    expectation: str
    column: str
    detail: str
    dates: tuple[str, ...] = ()
    count: int = 0

    def line(self) -> str:
        return f"{self.suite}: {self.expectation} [{self.column}]: {self.detail}"


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one suite on one frame; ``results_path`` is the JSON record, if one was kept."""

    suite: str
    success: bool
    failures: tuple[CheckFailure, ...]
    n_rows: int
    n_checks: int
    seconds: float
    results_path: Path | None = None

    @property
    def failed_checks(self) -> frozenset[str]:
        return frozenset(f.expectation for f in self.failures)

    def lines(self) -> list[str]:
        """One line per failed check: suite, expectation, column, offending dates or values."""
        return [f.line() for f in self.failures]

    def summary(self) -> str:
        state = "passed" if self.success else f"FAILED {len(self.failures)} check(s)"
        return (f"{self.suite}: {state} ({self.n_checks} checks, {self.n_rows} rows, "
                f"{self.seconds:.2f} s)")

    def format(self) -> str:
        return "\n".join([*self.lines(), self.summary()])

    def raise_if_failed(self) -> ValidationResult:
        if not self.success:
            raise ValidationFailed(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "success": self.success, "n_rows": self.n_rows,
                "n_checks": self.n_checks, "seconds": self.seconds,
                "failures": [dataclasses.asdict(f) for f in self.failures]}


class ValidationFailed(Exception):
    """Raised by callers that stop on bad data; carries the full :class:`ValidationResult`."""

    def __init__(self, result: ValidationResult):
        super().__init__(result.format())
        self.result = result


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


def warm_up() -> float:
    """Pay the one-off costs now (GX import and context, the NYSE calendar); returns seconds taken.

    Validates three synthetic bars, so the first real validation is as fast as the later ones.
    """
    start = time.perf_counter()
    days = sessions.nyse_sessions("2024-01-02", "2024-01-04")
    bars = pd.DataFrame({c: [100.0, 101.0, 102.0] for c in BAR_COLUMNS}, index=days.rename("date"))
    validate_bars(bars, days[-1])
    return time.perf_counter() - start


@lru_cache(maxsize=8)
def _gx_suite(suite_json: str) -> Any:
    import great_expectations as gx

    spec = json.loads(suite_json)
    return gx.ExpectationSuite(name=spec["name"], expectations=spec["expectations"],
                               meta=spec.get("meta") or {})


def _run_suite(spec: dict, table: pd.DataFrame, parameters: dict[str, Any]) -> dict:
    """Validate ``table`` against a suite given as its JSON dict; returns GX's result as JSON."""
    session = _gx_session()
    suite = _gx_suite(json.dumps(spec, sort_keys=True))
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
    return result.to_json_dict()


def _runnable(spec: dict, columns: set[str]) -> dict:
    """The suite without expectations on absent columns: the column check already names those."""
    def present(exp: dict) -> bool:
        kw = exp["kwargs"]
        if exp["type"] == "expect_column_to_exist":
            return True
        return all(kw[k] in columns for k in ("column", "column_A", "column_B") if k in kw)

    return {**spec, "expectations": [e for e in spec["expectations"] if present(e)]}


def load_suite(name: str, suites_dir: Path | None = None) -> dict:
    """A committed suite's JSON (GX's own format), from ``expectations/suites/`` by default."""
    path = (suites_dir or GX_PROJECT_DIR / "suites") / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"expectation suite {name!r} not found at {path}")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- raw bars


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
    spec = load_suite(RAW_BARS_SUITE, suites_dir)
    _check_derived_columns(spec)
    table = bars_table(bars)
    gx_result = _run_suite(_runnable(spec, set(table.columns)), table, {"as_of": as_of_ts})
    failures = _failures(RAW_BARS_SUITE, spec, gx_result, table)
    dates = _naive_dates(table["date"]) if "date" in table else pd.Series(dtype="datetime64[ns]")
    failures += [f for f in (_calendar_failure(dates, as_of_ts), _freshness_failure(dates, as_of_ts))
                 if f is not None]
    n_checks = len(gx_result["results"]) + len(spec.get("meta", {}).get("pandas_checks", {}))
    return _finish(RAW_BARS_SUITE, failures, len(table), n_checks, start, results_dir,
                   {"as_of": as_of_ts.date().isoformat(), "gx": gx_result})


def _check_derived_columns(spec: dict) -> None:
    declared = sorted(spec.get("meta", {}).get("derived_columns", {}))  # GX stores keys sorted
    if declared != sorted(DERIVED_COLUMNS):
        raise ValueError(f"suite {spec['name']!r} declares derived columns {declared}; "
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
                        f"{end.date()}: {_listing(shown, len(missing))}", shown, len(missing))


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
        raise ValidationFailed(_finish(RAW_BARS_SUITE, [failure], 0, 1, start, results_dir,
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


# ----------------------------------------------------------------------------- features


def scaler_fingerprint(scaler: FeatureScaler) -> str:
    """SHA-256 of the scaler's canonical JSON: ties a features suite to the statistics it came from."""
    return hashlib.sha256(json.dumps(scaler.to_dict(), sort_keys=True).encode()).hexdigest()


def build_features_suite(scaler: FeatureScaler, band_std: float = FEATURE_BAND_STD) -> dict:
    """The ``features`` suite (GX JSON) from a model's training statistics.

    Per feature: it exists, is never null, is not constant over the window (a stale upstream
    repeats its last value), stays inside its natural bounds if it has any, and, unless bounded
    on both sides, inside training mean +- ``band_std`` training std.
    """
    exps: list[dict] = []
    for name, s in scaler.stats.items():
        exps.append(_exp("expect_column_to_exist", name, "column_exists", f"column {name} present"))
        exps.append(_exp("expect_column_values_to_not_be_null", name, "not_null", f"{name} not null"))
        exps.append(_exp("expect_column_unique_value_count_to_be_between", name, "not_constant",
                         f"{name} not constant over the window (stale upstream)", min_value=2))
        lo, hi = s.lower_bound, s.upper_bound
        if lo is not None or hi is not None:
            exps.append(_exp("expect_column_values_to_be_between", name, "natural_bounds",
                             f"{name} within natural bounds [{_num(lo)}, {_num(hi)}]",
                             min_value=lo, max_value=hi))
        if lo is None or hi is None:
            band_lo, band_hi = s.mean - band_std * s.std, s.mean + band_std * s.std
            exps.append(_exp("expect_column_values_to_be_between", name, "training_band",
                             f"{name} within training mean +- {band_std:g} std = "
                             f"[{band_lo:.6g}, {band_hi:.6g}]", min_value=band_lo, max_value=band_hi))
    meta = {"scaler_sha256": scaler_fingerprint(scaler), "train_start": scaler.train_start,
            "train_end": scaler.train_end, "train_rows": scaler.n_rows, "band_std": band_std,
            "notes": "Generated by spywatch.validation.build_features_suite from the model's scaler; "
                     "leading warm-up rows (all features NaN) are dropped before validation."}
    return {"name": FEATURES_SUITE, "meta": meta, "expectations": exps}


def _exp(kind: str, column: str, name: str, rule: str, **kwargs: Any) -> dict:
    kw = {"column": column, **{k: v for k, v in kwargs.items() if v is not None}}
    return {"type": kind, "kwargs": kw, "meta": {"name": name, "rule": rule}}


def write_features_suite(scaler: FeatureScaler, model_dir: Path) -> Path:
    """Store the features suite beside the model's ``scaler.json`` (atomically); returns its path."""
    return atomic_write_json(Path(model_dir) / FEATURES_SUITE_FILE, build_features_suite(scaler))


def load_features_suite(model_dir: Path) -> dict:
    """A model's stored features suite, refused if it no longer matches the folder's scaler."""
    path = Path(model_dir) / FEATURES_SUITE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: write it with write_features_suite(scaler, model_dir)")
    spec = json.loads(path.read_text())
    scaler_path = Path(model_dir) / SCALER_FILE
    if scaler_path.exists():
        actual = scaler_fingerprint(FeatureScaler.load(scaler_path))
        if spec.get("meta", {}).get("scaler_sha256") != actual:
            raise ValueError(f"{path} was generated from another scaler than {scaler_path} "
                             f"(sha256 {actual[:12]}); regenerate it with write_features_suite")
    return spec


def validate_features(features: pd.DataFrame, model: Path | FeatureScaler,
                      results_dir: Path | None = None) -> ValidationResult:
    """Check model features against a model's training statistics.

    Args:
        features: features indexed by session date (e.g. ``build_table(bars).features``); leading
            warm-up rows where every feature is NaN are dropped first. Pass a window of a few weeks
            or more: the constant-feature check is about the whole window.
        model: a model folder holding ``features_suite.json`` (and ``scaler.json``), or a scaler
            whose suite is built in memory.
        results_dir: if given, the JSON record is written there atomically.
    """
    start = time.perf_counter()
    spec = build_features_suite(model) if isinstance(model, FeatureScaler) else load_features_suite(model)
    started = features.notna().any(axis=1).cummax()
    table = features.loc[started].rename_axis("date").reset_index()
    gx_result = _run_suite(_runnable(spec, set(table.columns)), table, {})
    failures = _failures(FEATURES_SUITE, spec, gx_result, table)
    return _finish(FEATURES_SUITE, failures, len(table), len(gx_result["results"]), start, results_dir,
                   {"suite_meta": spec.get("meta", {}), "gx": gx_result})


# ----------------------------------------------------------------------------- reporting


def _failures(suite: str, spec: dict, gx_result: dict, table: pd.DataFrame) -> list[CheckFailure]:
    """Failed expectations as CheckFailures, in the suite's order (GX reorders its results)."""
    def key(config: dict) -> tuple[str, str]:
        return (config.get("meta") or {}).get("name", config["type"]), _reported_column(config)

    position: dict[tuple[str, str], int] = {}
    for i, exp in enumerate(spec["expectations"]):
        position.setdefault(key(exp), i)
    failed = [r for r in gx_result["results"] if not r["success"]]
    failed.sort(key=lambda r: position.get(key(r["expectation_config"]), len(position)))
    return [_failure(suite, r, table) for r in failed]


def _reported_column(config: dict) -> str:
    """The original column a failure names: meta.column for derived checks, else the kwarg."""
    meta, kwargs = config.get("meta") or {}, config["kwargs"]
    return meta.get("column") or kwargs.get("column") or kwargs.get("column_A") or "*"


def _failure(suite: str, result: dict, table: pd.DataFrame) -> CheckFailure:
    """A failed GX expectation result as a CheckFailure naming the original column and dates."""
    config = result["expectation_config"]
    meta, kwargs = config.get("meta") or {}, config["kwargs"]
    name, column = meta.get("name", config["type"]), _reported_column(config)
    rule = meta.get("rule", config["type"])
    res = result.get("result") or {}
    error = _exception_message(result.get("exception_info"))
    if error:
        return CheckFailure(suite, name, column, f"{rule}: not evaluated: {error}")
    if "partial_unexpected_index_list" in res:
        return _rows_failure(suite, name, column, rule, res, table)
    if config["type"] == "expect_table_columns_to_match_ordered_list":
        observed = list(res.get("observed_value") or [])
        wrong = [c for c in kwargs["column_list"] if c not in observed] + \
            [c for c in observed if c not in kwargs["column_list"]]
        return CheckFailure(suite, name, ", ".join(wrong) or column,
                            f"{rule}: {_column_diff(kwargs['column_list'], observed)}")
    if config["type"] == "expect_column_to_exist":
        return CheckFailure(suite, name, column, f"{rule}: column not found")
    detail = f"{rule}: observed {_num(res.get('observed_value'))}"
    if config["type"] == "expect_column_unique_value_count_to_be_between" and column in table and len(table):
        detail += (f" (value {_num(table[column].iloc[-1])} on all {len(table)} rows, "
                   f"{_day(table['date'].iloc[0])}..{_day(table['date'].iloc[-1])})")
    return CheckFailure(suite, name, column, detail)


def _rows_failure(suite: str, name: str, column: str, rule: str, res: dict,
                  table: pd.DataFrame) -> CheckFailure:
    items = res["partial_unexpected_index_list"][:SHOWN]
    count = int(res.get("unexpected_count") or len(items))
    by_date = table.drop_duplicates("date").set_index("date") if "date" in table else None
    shown, dates = [], []
    for item in items:
        values = dict(item)
        day = _day(values.pop("date", None))
        if by_date is not None and column not in values and column in by_date:
            values = {column: _lookup(by_date, day, column), **values}  # the original column's value
        dates.append(day)
        shown.append(f"{day} ({', '.join(f'{k}={_num(v)}' for k, v in values.items())})" if values else day)
    return CheckFailure(suite, name, column, f"{rule}: {count} row(s): {_listing(shown, count)}",
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


def _exception_message(info: Any) -> str | None:
    """GX reports a raised metric either flat or keyed by metric id; return the first message."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return str(nested[0].get("exception_message")) if nested else None


def _listing(items: tuple[str, ...] | list[str], total: int) -> str:
    more = f" and {total - len(items)} more" if total > len(items) else ""
    return ", ".join(items) + more


def _day(value: Any) -> str:
    return "NaT" if value is None else str(value)[:10]


def _num(value: Any) -> str:
    if value is None:
        return "missing"  # GX writes NaN as JSON null
    if isinstance(value, (float, np.floating)) and not math.isnan(value):
        return f"{value:.6g}"
    return cut(str(value))


def _finish(suite: str, failures: list[CheckFailure], n_rows: int, n_checks: int, start: float,
            results_dir: Path | None, record: dict) -> ValidationResult:
    result = ValidationResult(suite=suite, success=not failures, failures=tuple(failures),
                              n_rows=n_rows, n_checks=n_checks, seconds=time.perf_counter() - start)
    if results_dir is None:
        return result
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = atomic_write_json(Path(results_dir) / f"{suite}-{stamp}.json", {**result.to_dict(), **record})
    return dataclasses.replace(result, results_path=path)
