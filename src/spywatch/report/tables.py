"""The report's rows: each horizon's models against each other, every drift test, the inputs
furthest from training, the stage timings and the failed validation suites. The HTML page and the
run page (``report.run_page``) list the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from spywatch.audit_schema import Blob, ColumnDrift, Validation
from spywatch.report.text import drift_severity, finite, fmt, is_p_value, sig

MODEL_LABELS = {"champion": "PatchTST (champion)", "random_forest": "Random forest",
                "logistic": "Logistic regression", "prior": "Prior (constant)"}
TOP_FEATURE_SHIFTS = 8


# ----------------------------------------------------------------------------- metrics tables


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False


@dataclass(frozen=True)
class MetricRow:
    model: str
    label: str
    cells: list[Cell]


@dataclass(frozen=True)
class MetricsTable:
    horizon: str
    columns: list[str]
    rows: list[MetricRow]
    base_rate: float | None


# (audit key, header, higher is better? None: not ranked, digits)
METRIC_COLUMNS = (("auc", "AUC ↑", True, 3), ("pr_auc", "PR-AUC ↑", True, 3), ("brier", "Brier ↓", False, 4),
                  ("bss", "Brier skill ↑", True, 3), ("ece", "ECE ↓", False, 3),
                  ("pred_std", "pred std", None, 3), ("pred_mean", "pred mean", None, 3), ("n", "n", None, 0))


def _model_metrics(models: Mapping[str, Blob]) -> dict[str, dict[str, float | None]]:
    """Numbers per model; the prior row is derived: a constant has AUC 0.5 and no spread."""
    prior = models.get("prior") or {}
    prior_brier, rate = finite(prior.get("brier")), finite(prior.get("rate"))
    out: dict[str, dict[str, float | None]] = {}
    for model in ("champion", "random_forest", "logistic"):
        m = models.get(model)
        if m is not None:
            row = {key: finite(m.get(key)) for key, *_ in METRIC_COLUMNS}
            row["bss"] = (1 - row["brier"] / prior_brier) if row["brier"] is not None and prior_brier else None
            out[model] = row
    if prior:
        out["prior"] = {"auc": 0.5, "pr_auc": None, "brier": prior_brier, "bss": 0.0 if prior_brier else None,
                        "ece": None, "pred_std": 0.0, "pred_mean": rate, "n": None}
    return out


def metrics_table(horizon: str, models: Mapping[str, Blob]) -> MetricsTable:
    """One horizon's models against each other, the best value of each ranked column marked."""
    values = _model_metrics(models)
    best: dict[str, float] = {}
    for key, _, higher, _ in METRIC_COLUMNS:
        ranked = [v[key] for v in values.values() if v[key] is not None]
        if higher is not None and len(ranked) > 1:
            best[key] = max(ranked) if higher else min(ranked)
    rows = [MetricRow(model, MODEL_LABELS[model],
                      [Cell(fmt(v[key], digits), key in best and v[key] == best[key])
                       for key, _, _, digits in METRIC_COLUMNS])
            for model, v in values.items()]
    return MetricsTable(horizon, [header for _, header, _, _ in METRIC_COLUMNS], rows,
                        finite((models.get("champion") or {}).get("base_rate")))


# ----------------------------------------------------------------------------- the other rows


@dataclass(frozen=True)
class DriftRow:
    feature: str
    method: str
    rule: str  # when this test calls drift, e.g. "≥ 1.15" or "p < 0.000238"
    score: str
    drifted: bool
    fill: float  # severity as a bar width in %: 50 = at the threshold, 100 = twice as far


def drift_rows(per_feature: Mapping[str, ColumnDrift]) -> list[DriftRow]:
    """Drifted features first, then by how close each score is to its threshold."""
    items = sorted(per_feature.items(), key=lambda kv: (not kv[1].drifted, -drift_severity(kv[1]), kv[0]))
    return [DriftRow(k, t.method, _rule(t), sig(t.score), t.drifted, round(min(drift_severity(t), 2.0) * 50, 1))
            for k, t in items]


def _rule(test: ColumnDrift) -> str:
    return f"p < {sig(test.threshold)}" if is_p_value(test) else f"≥ {sig(test.threshold)}"


@dataclass(frozen=True)
class Shift:
    feature: str
    value: float
    left: float  # bar geometry in % of a track centred on zero
    width: float


def top_shifts(shift: Mapping[str, float], most: int = TOP_FEATURE_SHIFTS) -> list[Shift]:
    """The features furthest from their training mean, as bars on a track symmetric about zero."""
    numbers = {k: finite(v) for k, v in shift.items()}
    known = sorted(((k, v) for k, v in numbers.items() if v is not None), key=lambda kv: -abs(kv[1]))[:most]
    scale = max([3.0] + [abs(v) for _, v in known])  # 3 std is the collapse check's default limit
    return [Shift(k, v, round(50 + min(v, 0) / scale * 50, 1), round(abs(v) / scale * 50, 1)) for k, v in known]


@dataclass(frozen=True)
class Timing:
    stage: str
    seconds: float
    fill: float  # share of the slowest stage, in %


def timing_rows(timings: Mapping[str, float]) -> list[Timing]:
    numbers = {k: finite(v) for k, v in timings.items()}
    known = [(k, v) for k, v in numbers.items() if v is not None]
    slowest = max([v for _, v in known] + [1e-9])
    return [Timing(k, v, round(100 * v / slowest, 1)) for k, v in known]


@dataclass(frozen=True)
class SuiteFailures:
    suite: str
    lines: list[str]


def failed_suites(validation: Validation) -> list[SuiteFailures]:
    """The suites that failed, each failure as one readable line; shown first on a bad night."""
    return [SuiteFailures(name.replace("_", " "), list(s.failures)) for name, s in validation.suites() if not s.success]
