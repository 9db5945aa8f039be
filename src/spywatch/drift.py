"""Input and prediction drift against the training reference, with Evidently, calibrated on history.

The original models collapsed because their inputs drifted 5-16x outside the training range and
nothing watched. Here every night the last ``window`` sessions of the (stationary) model features
are tested against the training-period rows, one Evidently test per feature.

Why the method and threshold are set per feature, from ``drift_thresholds.json``: Evidently's
default switches method with the reference size and a p-value test alarms on everything at our
sample sizes; worse, slow features (vol_60, dist_sma_200, drawdown_252) wander across most of their
range inside any 60-session window, so a threshold that suits ret_1 alarms on them every night.
``bench/drift_calibration.py`` replays SPY history to pick, per feature, the method and the threshold
that a genuinely in-distribution window crosses only rarely, and the dataset-level rule (at least
``drift_share`` of the features drifted; a retrain additionally wants ``persistence_k`` consecutive
drifted runs, see :func:`consecutive_drift_runs`).

Why a second comparison, against the recent past (the *regime* check): the training reference spans
calm years and crises alike, so a calm window whose moves have doubled still looks like an ordinary
window of that history to every per-feature marginal test. Against the sessions just before it the
same window has twice their volatility. When the caller passes those sessions (``recent``), a second
Evidently report tests the volatility family of the window against them (``regime`` in
``drift_thresholds.json``: per-feature method and threshold, and how many of the family must drift);
the dataset drifts when the training rule *or* the regime rule fires. How far this goes, and where
it stops (a market that genuinely doubles its volatility looks the same), is in
``bench/results/drift_calibration.md``.

The champion's predictions get the same treatment against its validation predictions: a collapsed
model piles its probabilities up at the prior, which moves their distribution even when the inputs
look fine.

The tests, thresholds and rules themselves are read by :mod:`spywatch.drift_config`; this module
cuts the windows, runs Evidently and reads its verdicts (:class:`DriftResult`). Evidently is
imported inside the functions that run it (it costs ~3 s to import).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spywatch.atomic import atomic_write, atomic_write_json
from spywatch.drift_config import MIN_CURRENT_ROWS, SCORE_KIND, ColumnTest, DriftConfig, RegimeRule


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's verdict on one column."""

    method: str
    threshold: float
    score: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "threshold": self.threshold, "score": self.score,
                "score_kind": SCORE_KIND[self.method], "drifted": self.drifted}


@dataclass(frozen=True)
class PredictionDrift(ColumnDrift):
    """A prediction column's verdict plus the spread that shows a collapse (current std << reference std)
    and where its threshold came from (``threshold_basis``, a phrase for people)."""

    reference_mean: float = math.nan
    current_mean: float = math.nan
    reference_std: float = math.nan
    current_std: float = math.nan
    threshold_basis: str = "fixed"

    @property
    def spread_ratio(self) -> float:
        return self.current_std / self.reference_std if self.reference_std > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"reference_mean": self.reference_mean, "current_mean": self.current_mean,
                                    "reference_std": self.reference_std, "current_std": self.current_std,
                                    "spread_ratio": self.spread_ratio, "threshold_basis": self.threshold_basis}


@dataclass(frozen=True)
class RegimeDrift:
    """The regime check's verdict: the volatility family of the window against the recent past."""

    drifted: bool
    n_drifted: int
    n_features: int
    min_drifted: int
    per_feature: Mapping[str, ColumnDrift]
    recent_start: str
    recent_end: str
    n_recent: int

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, d in self.per_feature.items() if d.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_drift": self.drifted, "n_drifted": self.n_drifted, "n_features": self.n_features,
                "min_drifted_features": self.min_drifted, "drifted_features": self.drifted_features,
                "per_feature": {k: v.to_dict() for k, v in self.per_feature.items()},
                "recent": {"start": self.recent_start, "end": self.recent_end, "rows": self.n_recent}}


@dataclass(frozen=True)
class DriftResult:
    """One night's drift check: the dataset verdict, per-feature verdicts, prediction drift, the windows.

    ``dataset_drift`` is the training rule (``share`` of features drifted >= ``drift_share``, kept in
    ``training_drift``) or the regime rule (``regime``, None when no recent sessions were tested).
    ``share``, ``n_drifted`` and ``per_feature`` are always the training-reference figures.
    """

    dataset_drift: bool
    share: float
    n_drifted: int
    n_features: int
    drift_share: float
    per_feature: Mapping[str, ColumnDrift]
    prediction_drift: Mapping[str, PredictionDrift] | None
    reference_start: str
    reference_end: str
    current_start: str
    current_end: str
    n_reference: int
    n_current: int
    notes: tuple[str, ...] = field(default=())
    training_drift: bool | None = None  # None: same as dataset_drift (no regime check ran)
    regime: RegimeDrift | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, d in self.per_feature.items() if d.drifted]

    @property
    def regime_drift(self) -> bool:
        return self.regime is not None and self.regime.drifted

    @property
    def reasons(self) -> list[str]:
        """Which rules raised the dataset alarm: 'training', 'regime' (empty when quiet)."""
        training = self.dataset_drift if self.training_drift is None else self.training_drift
        return [name for name, fired in (("training", training), ("regime", self.regime_drift)) if fired]

    @property
    def predictions_drifted(self) -> bool:
        return bool(self.prediction_drift) and any(d.drifted for d in self.prediction_drift.values())

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_drift": self.dataset_drift, "share": self.share, "n_drifted": self.n_drifted,
                "n_features": self.n_features, "drift_share": self.drift_share,
                "drifted_features": self.drifted_features,
                "per_feature": {k: v.to_dict() for k, v in self.per_feature.items()},
                "prediction_drift": (None if self.prediction_drift is None else
                                     {k: v.to_dict() for k, v in self.prediction_drift.items()}),
                "predictions_drifted": self.predictions_drifted,
                "reference": {"start": self.reference_start, "end": self.reference_end, "rows": self.n_reference},
                "current": {"start": self.current_start, "end": self.current_end, "rows": self.n_current},
                "notes": list(self.notes),
                "training_drift": "training" in self.reasons, "regime_drift": self.regime_drift,
                "drift_reasons": self.reasons,
                "regime": self.regime.to_dict() if self.regime is not None else None}

    def summary(self) -> str:
        """A few human lines for logs and the CLI."""
        verdict = "DRIFT" if self.dataset_drift else "no drift"
        lines = [f"{verdict}: {self.n_drifted}/{self.n_features} features drifted (share {self.share:.2f}, "
                 f"rule >= {self.drift_share:.2f}); current {self.current_start}..{self.current_end} "
                 f"({self.n_current} sessions) vs reference {self.reference_start}..{self.reference_end} "
                 f"({self.n_reference} rows)"]
        if self.regime is not None:
            r = self.regime
            lines.append(f"regime {'CHANGED' if r.drifted else 'steady'}: {r.n_drifted}/{r.n_features} volatility "
                         f"features drifted vs the {r.n_recent} sessions before the window "
                         f"({r.recent_start}..{r.recent_end}; rule >= {r.min_drifted})")
        for name, d in self.per_feature.items():
            mark = "DRIFT" if d.drifted else "ok"
            lines.append(f"  {name:<18}{d.method:<12}{SCORE_KIND[d.method]:<9} score {d.score:<11.4g}"
                         f"threshold {d.threshold:<11.4g}{mark}")
        if self.regime is not None:
            for name, d in self.regime.per_feature.items():
                mark = "DRIFT" if d.drifted else "ok"
                lines.append(f"  regime {name:<11}{d.method:<12}{SCORE_KIND[d.method]:<9} score {d.score:<11.4g}"
                             f"threshold {d.threshold:<11.4g}{mark}")
        if self.prediction_drift:
            for name, d in self.prediction_drift.items():
                mark = "DRIFT" if d.drifted else "ok"
                lines.append(f"  prediction {name:<7}{d.method:<12} score {d.score:<11.4g}threshold "
                             f"{d.threshold:<8.4g}std {d.current_std:.4f} vs {d.reference_std:.4f} {mark}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class DriftReport:
    """A result and the Evidently snapshots it was read from (for the HTML)."""

    result: DriftResult
    snapshot: Any  # evidently Snapshot of the feature report
    prediction_snapshot: Any | None
    config: DriftConfig
    regime_snapshot: Any | None = None  # evidently Snapshot of the window vs the recent past


@dataclass(frozen=True)
class DriftArtifacts:
    html: Path
    json: Path
    prediction_html: Path | None
    regime_html: Path | None = None


# ----------------------------------------------------------------------------- windows


def reference_rows(features: pd.DataFrame, columns: Sequence[str], start: dt.date | str | None = None,
                   end: dt.date | str | None = None) -> pd.DataFrame:
    """Complete training-period rows of ``columns`` in [start, end] (the drift reference)."""
    frame = _complete(features, columns)
    frame = frame.loc[_between(frame.index, start, end)]
    if frame.empty:
        raise ValueError(f"no complete feature rows in the reference period {start or 'start'}..{end}")
    return frame


def current_window(features: pd.DataFrame, columns: Sequence[str], window: int,
                   start: dt.date | str | None = None, end: dt.date | str | None = None) -> pd.DataFrame:
    """The last ``window`` complete sessions in [start, end] (end defaults to the last row)."""
    frame = _complete(features, columns)
    frame = frame.loc[_between(frame.index, start, end)].iloc[-window:]
    if len(frame) < MIN_CURRENT_ROWS:
        raise ValueError(f"current window {start or 'start'}..{end or 'end'} has {len(frame)} complete sessions; "
                         f"need at least {MIN_CURRENT_ROWS}")
    return frame


def recent_rows(features: pd.DataFrame, columns: Sequence[str], current: pd.DataFrame, sessions: int) -> pd.DataFrame:
    """The ``sessions`` complete rows just before the first session of ``current`` (the regime reference)."""
    if sessions < MIN_CURRENT_ROWS:
        raise ValueError(f"recent sessions must be at least {MIN_CURRENT_ROWS}, got {sessions}")
    if current.empty:
        raise ValueError("the current window is empty; nothing comes before it")
    frame = _complete(features, columns)
    frame = frame.loc[frame.index < current.index[0]].iloc[-sessions:]
    if len(frame) < sessions:
        raise ValueError(f"only {len(frame)} complete sessions before {_date(current.index[0])}; the regime check "
                         f"needs {sessions}")
    return frame


def _complete(features: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"features lack drift column(s) {missing}")
    return features.loc[:, list(columns)].dropna()


def _between(index: pd.Index, start: dt.date | str | None, end: dt.date | str | None) -> np.ndarray:
    mask = np.ones(len(index), dtype=bool)
    if start is not None:
        mask &= index >= pd.Timestamp(start)
    if end is not None:
        mask &= index <= pd.Timestamp(end)
    return mask


def _date(ts: Any) -> str:
    return pd.Timestamp(ts).date().isoformat() if isinstance(ts, (pd.Timestamp, dt.date)) else str(ts)


# ----------------------------------------------------------------------------- running Evidently


def run_drift_report(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig, *,
                     recent: pd.DataFrame | None = None,
                     reference_predictions: pd.DataFrame | None = None,
                     current_predictions: pd.DataFrame | None = None) -> DriftReport:
    """Run Evidently on the feature window (and the prediction window, when given) and read its verdicts.

    Args:
        reference: training-period feature rows (raw values; every config feature present, no NaN).
        current: the current window's feature rows.
        recent: the sessions just before the current window (see :func:`recent_rows`); at least
            ``config.recent_sessions`` rows, the last that many are used. Without it the regime
            check does not run and only the training rule can raise the dataset alarm.
        reference_predictions: the champion's validation probabilities, one column per horizon.
        current_predictions: its probabilities over the current window, same columns.
    """
    columns = config.features
    ref = _checked(reference, columns, "reference features", MIN_CURRENT_ROWS)
    cur = _checked(current, columns, "current features", MIN_CURRENT_ROWS)
    notes = []
    if len(cur) != config.calibrated_window:
        notes.append(f"current window has {len(cur)} sessions; thresholds were calibrated for "
                     f"{config.calibrated_window}")
    if (reference_predictions is None) != (current_predictions is None):
        raise ValueError("prediction drift needs both reference_predictions and current_predictions")
    rec = None
    if recent is not None and config.regime is None:
        notes.append(f"recent sessions passed but {config.source} defines no regime rule; not tested")
    elif recent is None and config.regime is not None:
        notes.append("regime check not run: no recent sessions passed")
    elif recent is not None:
        rec = _checked_recent(recent, cur, config.regime)
    snapshot = _evidently_run(ref, cur, config.tests, config.drift_share)
    per_feature, n_drifted, share, training_drift = _read_verdicts(snapshot, config.features)
    regime_snapshot, regime = None, None
    if rec is not None:
        regime_snapshot, regime = _regime_drift(rec, cur, config.regime)
    prediction_snapshot, prediction_drift = None, None
    if reference_predictions is not None:
        prediction_snapshot, prediction_drift = _prediction_drift(reference_predictions, current_predictions, config)
    result = DriftResult(
        dataset_drift=training_drift or (regime is not None and regime.drifted), share=share,
        n_drifted=n_drifted, n_features=len(columns), drift_share=config.drift_share, per_feature=per_feature,
        prediction_drift=prediction_drift,
        reference_start=_date(ref.index[0]), reference_end=_date(ref.index[-1]),
        current_start=_date(cur.index[0]), current_end=_date(cur.index[-1]),
        n_reference=len(ref), n_current=len(cur), notes=tuple(notes), training_drift=training_drift, regime=regime)
    return DriftReport(result=result, snapshot=snapshot, prediction_snapshot=prediction_snapshot, config=config,
                       regime_snapshot=regime_snapshot)


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig, *,
                 recent: pd.DataFrame | None = None,
                 reference_predictions: pd.DataFrame | None = None,
                 current_predictions: pd.DataFrame | None = None) -> DriftResult:
    """The verdicts only (see :func:`run_drift_report`)."""
    return run_drift_report(reference, current, config, recent=recent, reference_predictions=reference_predictions,
                            current_predictions=current_predictions).result


def _checked_recent(recent: pd.DataFrame, current: pd.DataFrame, rule: RegimeRule) -> pd.DataFrame:
    """The last ``rule.recent_sessions`` complete rows of ``recent``; they must come before the window."""
    rec = _checked(recent, rule.features, "recent features", rule.recent_sessions).iloc[-rule.recent_sessions:]
    if isinstance(rec.index, pd.DatetimeIndex) and isinstance(current.index, pd.DatetimeIndex) \
            and rec.index[-1] >= current.index[0]:
        raise ValueError(f"recent sessions must end before the current window: recent ends {_date(rec.index[-1])}, "
                         f"current starts {_date(current.index[0])}")
    return rec


def _regime_drift(rec: pd.DataFrame, cur: pd.DataFrame, rule: RegimeRule) -> tuple[Any, RegimeDrift]:
    """The window's volatility family against the recent past (checked by :func:`_checked_recent`)."""
    columns = rule.features
    snapshot = _evidently_run(rec, cur.loc[:, columns], rule.tests, rule.drift_share)
    per_feature, n_drifted, _, drifted = _read_verdicts(snapshot, columns)
    return snapshot, RegimeDrift(drifted=drifted, n_drifted=n_drifted, n_features=len(columns),
                                 min_drifted=rule.min_drifted, per_feature=per_feature,
                                 recent_start=_date(rec.index[0]), recent_end=_date(rec.index[-1]),
                                 n_recent=len(rec))


def detect_prediction_drift(reference_predictions: pd.DataFrame, current_predictions: pd.DataFrame,
                            config: DriftConfig) -> dict[str, PredictionDrift]:
    """Prediction drift alone: the champion's probabilities over the current window against its
    validation probabilities, one Evidently ValueDrift per shared column (horizon)."""
    return _prediction_drift(reference_predictions, current_predictions, config)[1]


def _checked(frame: pd.DataFrame, columns: Sequence[str], what: str, min_rows: int) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}")
    out = frame.loc[:, list(columns)].astype("float64")
    bad = [c for c in columns if not np.isfinite(out[c].to_numpy()).all()]
    if bad:
        raise ValueError(f"{what} has NaN or infinite values in {bad}; pass complete rows")
    if len(out) < min_rows:
        raise ValueError(f"{what} has {len(out)} rows; need at least {min_rows} to test a distribution")
    return out


def _evidently_run(reference: pd.DataFrame, current: pd.DataFrame, tests: Sequence[ColumnTest],
                   drift_share: float) -> Any:
    """One Evidently Report: the drifted-columns count with its share test, one ValueDrift per column.

    These are the metrics ``DataDriftPreset`` generates; listing them directly skips the preset's
    summary table, which re-renders every column's plots a second time (~0.5 s of the 3 s budget).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    columns = [t.column for t in tests]
    definition = DataDefinition(numerical_columns=columns)  # explicit: never inferred as categorical
    count = DriftedColumnsCount(columns=columns, drift_share=drift_share,
                                per_column_method={t.column: t.method for t in tests},
                                per_column_threshold={t.column: t.threshold for t in tests})
    report = Report([count, *(ValueDrift(column=t.column, method=t.method, threshold=t.threshold) for t in tests)],
                    include_tests=True)
    return report.run(current_data=Dataset.from_pandas(current.reset_index(drop=True), data_definition=definition),
                      reference_data=Dataset.from_pandas(reference.reset_index(drop=True),
                                                         data_definition=definition))


def _test_failed(doc: Mapping[str, Any]) -> dict[str, bool]:
    """metric id -> whether its Evidently test failed (FAIL = drift detected)."""
    return {t["metric_config"]["metric_id"]: str(t["status"]).upper().endswith("FAIL") for t in doc["tests"]}


def _value_drift_verdicts(doc: Mapping[str, Any]) -> dict[str, tuple[str, float, float, bool]]:
    """column -> (method, threshold, score, drifted) from a snapshot's ValueDrift metrics and their tests."""
    failed = _test_failed(doc)
    out = {}
    for metric in doc["metrics"]:
        cfg = metric["config"]
        if not cfg["type"].endswith(":ValueDrift"):
            continue
        if metric["id"] not in failed:
            raise RuntimeError(f"Evidently returned no drift test for column {cfg['column']}")
        out[cfg["column"]] = (cfg["method"], float(cfg["threshold"]), float(metric["value"]), failed[metric["id"]])
    return out


def _read_verdicts(snapshot: Any, columns: Sequence[str]) -> tuple[dict[str, ColumnDrift], int, float, bool]:
    """Per-column verdicts, Evidently's drifted count and share, and its share test (True = drifted)."""
    doc = snapshot.dict()
    verdicts = _value_drift_verdicts(doc)
    missing = [c for c in columns if c not in verdicts]
    if missing:
        raise RuntimeError(f"Evidently returned no drift verdict for {missing}")
    per_feature = {c: ColumnDrift(*verdicts[c]) for c in columns}
    counts = [m for m in doc["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount")]
    if len(counts) != 1:
        raise RuntimeError(f"expected one DriftedColumnsCount in the Evidently report, found {len(counts)}")
    n_drifted, share = int(counts[0]["value"]["count"]), float(counts[0]["value"]["share"])
    if n_drifted != sum(d.drifted for d in per_feature.values()):
        raise RuntimeError(f"Evidently's drifted count {n_drifted} disagrees with its per-column tests "
                           f"{[c for c, d in per_feature.items() if d.drifted]}")
    # the share test ("share < drift_share") fails when the dataset drifted
    dataset_drift = _test_failed(doc).get(counts[0]["id"])
    if dataset_drift is None:
        raise RuntimeError("Evidently returned no test for the share of drifted columns")
    return per_feature, n_drifted, share, dataset_drift


def _prediction_drift(reference: pd.DataFrame, current: pd.DataFrame,
                      config: DriftConfig) -> tuple[Any, dict[str, PredictionDrift]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    columns = [c for c in reference.columns if c in current.columns]
    if not columns:
        raise ValueError(f"prediction frames share no column: {list(reference.columns)} vs {list(current.columns)}")
    ref = _checked(reference, columns, "reference predictions", MIN_CURRENT_ROWS)
    cur = _checked(current, columns, "current predictions", MIN_CURRENT_ROWS)
    for name, frame in (("reference", ref), ("current", cur)):
        if ((frame < 0) | (frame > 1)).any().any():
            raise ValueError(f"{name} predictions must be probabilities in [0, 1]")
    calibrated = {c: prediction_threshold(ref[c].to_numpy(), len(cur), config) for c in columns}
    tests = [ColumnTest(c, config.prediction_method, calibrated[c][0]) for c in columns]
    definition = DataDefinition(numerical_columns=columns)
    report = Report([ValueDrift(column=t.column, method=t.method, threshold=t.threshold) for t in tests],
                    include_tests=True)
    snapshot = report.run(current_data=Dataset.from_pandas(cur.reset_index(drop=True), data_definition=definition),
                          reference_data=Dataset.from_pandas(ref.reset_index(drop=True), data_definition=definition))
    verdicts = _value_drift_verdicts(snapshot.dict())
    out = {c: PredictionDrift(*verdicts[c], reference_mean=float(ref[c].mean()), current_mean=float(cur[c].mean()),
                              reference_std=float(ref[c].std(ddof=0)), current_std=float(cur[c].std(ddof=0)),
                              threshold_basis=calibrated[c][1])
           for c in columns}
    return snapshot, out


def prediction_threshold(reference: np.ndarray, window: int, config: DriftConfig) -> tuple[float, str]:
    """The threshold of one prediction column tonight and a phrase saying where it came from.

    A model's probabilities follow the market's volatility, which clusters: a 60-session stretch of
    the validation year's own predictions already sits far from the whole year's distribution. A
    fixed threshold (0.5) fired on 75% of the monthly nights of the 2005-2024 replay (28% calibrated:
    bench/results/prediction_drift.md). Calibrated, the threshold is
    the ``config.prediction_quantile`` of the normed Wasserstein distance (Evidently's
    ``wasserstein``: the distance over the reference's std) between the reference and each
    ``window``-long stretch of it, and never below ``config.prediction_threshold``: tonight's
    predictions drift when they sit further from the validation predictions than those ever sat from
    themselves. The fixed threshold stays when no quantile is configured, the method is not this
    distance, or the reference holds fewer than two windows."""
    fixed = config.prediction_threshold
    if config.prediction_quantile is None or config.prediction_method != "wasserstein":
        return fixed, "fixed"
    reference = np.asarray(reference, dtype=float)
    n_windows = len(reference) - window + 1
    if len(reference) < 2 * window:
        return fixed, f"fixed: {len(reference)} validation predictions are too few to calibrate on"
    from scipy.stats import wasserstein_distance

    norm = max(float(np.std(reference)), 0.001)  # as Evidently norms it
    distances = [wasserstein_distance(reference, reference[i:i + window]) / norm for i in range(n_windows)]
    quantile = float(np.quantile(distances, config.prediction_quantile))
    basis = (f"{config.prediction_quantile:.0%} of the {n_windows} {window}-session stretches of the validation "
             f"predictions sit within {quantile:.3g} of them")
    if quantile < fixed:
        return fixed, basis + f"; the floor {fixed:g} applies"
    return quantile, basis


# ----------------------------------------------------------------------------- saving and persistence


def save_drift_report(report: DriftReport, out_dir: Path, stem: str = "drift") -> DriftArtifacts:
    """Write ``{stem}.html`` (Evidently's self-contained report), ``{stem}_predictions.html`` when
    predictions were tested, ``{stem}_regime.html`` when the regime check ran, and ``{stem}.json``
    (the summary), each atomically; JSON last, so a reader that finds the JSON finds the HTML it names."""
    html = atomic_write(out_dir / f"{stem}.html", lambda tmp: report.snapshot.save_html(str(tmp)))
    prediction_html = None
    if report.prediction_snapshot is not None:
        prediction_html = atomic_write(out_dir / f"{stem}_predictions.html",
                                       lambda tmp: report.prediction_snapshot.save_html(str(tmp)))
    regime_html = None
    if report.regime_snapshot is not None:
        regime_html = atomic_write(out_dir / f"{stem}_regime.html",
                                   lambda tmp: report.regime_snapshot.save_html(str(tmp)))
    summary = report.result.to_dict() | {
        "config": report.config.to_dict(),
        "files": {"html": html.name, "prediction_html": prediction_html.name if prediction_html else None,
                  "regime_html": regime_html.name if regime_html else None}}
    path = atomic_write_json(out_dir / f"{stem}.json", summary)
    return DriftArtifacts(html=html, json=path, prediction_html=prediction_html, regime_html=regime_html)


def consecutive_drift_runs(flags: Sequence[bool]) -> int:
    """How many runs at the end of ``flags`` (oldest first, tonight last) drifted in a row."""
    count = 0
    for flag in reversed(flags):
        if not flag:
            break
        count += 1
    return count


def is_drift_persistent(flags: Sequence[bool], k: int) -> bool:
    """True when the last ``k`` runs (``flags`` oldest first, tonight last) all drifted.

    One drifted night is often a single wild session; a regime change keeps drifting night after
    night, which is what should trigger a retrain.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return consecutive_drift_runs(flags) >= k
