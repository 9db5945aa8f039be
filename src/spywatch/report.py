"""The nightly audit as one self-contained HTML page a person would rather read than the JSON.

The page must open anywhere the audit folder is copied (an e-mail attachment, an archived run,
an offline laptop), so it loads nothing: CSS is inline, plots are inline SVG drawn from the
audit's own numbers, and no script runs. The only link is to the Evidently drift report, and it
must be relative so it travels with the run folder.

Python computes everything that needs arithmetic (verdicts, best-of-column, plot geometry) into
small view objects; ``templates/audit.html.j2`` only lays them out. Every section accepts its part
of the audit being missing or null, because the nights that matter most (bad data, a failed run)
are exactly the ones with the least in them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import numpy as np

from spywatch.atomic import atomic_write_text

TEMPLATE = "audit.html.j2"
# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies
HORIZON_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9")
MODEL_LABELS = {"champion": "PatchTST (champion)", "random_forest": "Random forest",
                "logistic": "Logistic regression", "prior": "Prior (constant)"}
TOP_FEATURE_SHIFTS = 8


# ----------------------------------------------------------------------------- curve points


def _usable(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Mask of rows with a matured 0/1 label and a probability; rejects anything else loudly."""
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y {y.shape} and p {p.shape} must be 1-D and the same length")
    keep = ~(np.isnan(y) | np.isnan(p))
    if not np.isin(y[keep], (0.0, 1.0)).all():
        raise ValueError(f"labels must be 0 or 1 (NaN for unmatured), got {np.unique(y[keep])[:5]}")
    if ((p[keep] < 0.0) | (p[keep] > 1.0)).any():
        raise ValueError(f"probabilities must lie in [0, 1], got min {p[keep].min()} max {p[keep].max()}")
    return keep


def roc_points(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray,
               max_points: int = 100) -> dict[str, list[float]]:
    """The ROC curve as ``{"fpr": [...], "tpr": [...]}``, the shape ``performance.roc[h]`` stores.

    One point per distinct threshold (ties move both rates at once, as sklearn's ``roc_curve``),
    starting at (0, 0) and ending at (1, 1), thinned evenly to ``max_points`` so a year of
    nights keeps the audit small. Unmatured labels (NaN) are left out. With only one class
    present the curve is undefined and both lists are empty: the report says so.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2 (both ends of the curve), got {max_points}")
    y_arr, p_arr = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    keep = _usable(y_arr, p_arr)
    order = np.argsort(-p_arr[keep], kind="mergesort")
    ys, ps = y_arr[keep][order], p_arr[keep][order]
    positives, negatives = ys.sum(), len(ys) - ys.sum()
    if positives == 0 or negatives == 0:
        return {"fpr": [], "tpr": []}
    last_of_tie = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tps = np.cumsum(ys)[last_of_tie]
    fpr = np.r_[0.0, (last_of_tie + 1 - tps) / negatives]
    tpr = np.r_[0.0, tps / positives]
    if len(fpr) > max_points:
        idx = np.unique(np.round(np.linspace(0, len(fpr) - 1, max_points)).astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": np.round(fpr, 4).tolist(), "tpr": np.round(tpr, 4).tolist()}


def calibration_points(y: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray,
                       bins: int = 10) -> dict[str, list[float]]:
    """Reliability-diagram points ``{"pred", "obs", "count"}`` for ``performance.calibration[h]``.

    Equal-width bins on [0, 1], binned exactly as ``audit.expected_calibration_error`` so the plot
    and the ECE in the metrics table describe the same thing. Empty bins are left out.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y_arr, p_arr = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    keep = _usable(y_arr, p_arr)
    ys, ps = y_arr[keep], p_arr[keep]
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(ps, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    filled = count > 0
    pred = np.bincount(which, weights=ps, minlength=bins)[filled] / count[filled]
    obs = np.bincount(which, weights=ys, minlength=bins)[filled] / count[filled]
    return {"pred": np.round(pred, 4).tolist(), "obs": np.round(obs, 4).tolist(),
            "count": count[filled].astype(int).tolist()}


# ----------------------------------------------------------------------------- small readers


def _number(x: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and non-numbers (JSON writes NaN as NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _part(audit: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = audit.get(key)
    return value if isinstance(value, dict) else None


def horizon_order(names: Iterable[str]) -> list[str]:
    """h1, h3, h5, ... in numeric order (h10 after h5), anything else after them by name."""
    def key(name: str) -> tuple[int, str]:
        digits = name[1:] if name[:1] == "h" else ""
        return (int(digits), name) if digits.isdigit() else (10**9, name)
    return sorted(set(names), key=key)


def line_text(item: Any) -> str:
    """A failure, reason or note as one sentence, whether the pipeline stored a string or a dict."""
    if not isinstance(item, dict):
        return str(item)
    if "message" in item:
        return str(item["message"])
    if "expectation" in item:  # validation.CheckFailure.asdict
        where = f" [{item['column']}]" if item.get("column") else ""
        dates = f" (first: {', '.join(item['dates'][:3])})" if item.get("dates") else ""
        rows = f", {item['count']} row(s)" if item.get("count") else ""
        return f"{item.get('suite', '')}: {item['expectation']}{where}: {item.get('detail', '')}{rows}{dates}"
    return json.dumps(item, sort_keys=True, default=str)


def fmt(x: Any, digits: int = 3) -> str:
    """Fixed-point number, or an em dash where the audit has nothing (null, NaN, missing); never
    "-0.000" (a value that rounds to zero is 0)."""
    value = _number(x)
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def readable(value: Any) -> str:
    """Any audit value as a person reads it: numbers to 4 significant digits, None as a dash,
    yes/no, a mapping as "key value" pairs (nested ones in parentheses), a list joined by commas.
    What the report shows where it used to print JSON (the gate's details, the alerts' payloads)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        text = f"{float(value):.4g}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    if isinstance(value, Mapping):
        parts = [f"{str(k).replace('_', ' ')} " + (f"({readable(v)})" if isinstance(v, Mapping) and v else readable(v))
                 for k, v in value.items()]
        return "; ".join(parts) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value) or "—"
    return str(value)


def pct(x: Any, digits: int = 0) -> str:
    value = _number(x)
    return "—" if value is None else f"{100 * value:.{digits}f}%"


# ----------------------------------------------------------------------------- verdict badges


@dataclass(frozen=True)
class Badge:
    label: str
    value: str
    tone: str  # ok | warn | bad | muted: the CSS class that colours it
    detail: str


def validation_badge(validation: dict | None) -> Badge:
    if validation is None:
        return Badge("Data validation", "not run", "muted", "no validation record in this audit")
    suites = {name: validation.get(name) for name in ("raw_bars", "features")}
    failed = {n: len(s.get("failures") or []) for n, s in suites.items() if s and not s.get("success")}
    if failed:
        return Badge("Data validation", "failed", "bad",
                     "; ".join(f"{n.replace('_', ' ')}: {k} failed check(s)" for n, k in failed.items()))
    checked = [n.replace("_", " ") for n, s in suites.items() if s]
    return Badge("Data validation", "passed", "ok", "checked: " + (", ".join(checked) or "nothing"))


def drift_badge(drift: dict | None) -> Badge:
    if drift is None:
        return Badge("Drift", "not measured", "muted", "no drift record in this audit")
    if drift.get("dataset_drift"):
        return Badge("Drift", "drift detected", "warn", drift_detail(drift))
    return Badge("Drift", "quiet", "ok", drift_detail(drift))


def drift_detail(drift: Mapping[str, Any], most: int = 5) -> str:
    """Which rule fired and on what: the training rule (share of features drifted against the
    training span), the regime rule (volatility features against the last year), the predictions.
    Feature lists longer than ``most`` are cut, and say so."""
    n_features = drift.get("n_features") or len(drift.get("per_feature") or {})
    parts = [f"vs training: {drift.get('n_drifted', '?')} of {n_features} features drifted "
             f"({pct(drift.get('share'))}"
             + (f"; rule ≥ {pct(drift['drift_share'])})" if _number(drift.get("drift_share")) is not None else ")")
             + _listed(drift.get("drifted_features"), most)]
    regime = drift.get("regime") or {}
    if regime:
        recent = regime.get("recent") or {}
        span = f" {recent['start']} → {recent['end']}" if recent.get("start") else ""
        parts.append(f"vs the last year{span}: {regime.get('n_drifted', '?')} of {regime.get('n_features', '?')} "
                     f"volatility features (rule ≥ {regime.get('min_drifted_features', '?')})"
                     + _listed(regime.get("drifted_features"), most))
    shifted = [h for h, t in (drift.get("prediction_drift") or {}).items() if isinstance(t, dict) and t.get("drifted")]
    if shifted:
        parts.append("predictions shifted on " + ", ".join(horizon_order(shifted)))
    reasons = drift.get("drift_reasons") or []
    if drift.get("dataset_drift") and reasons:
        parts.insert(0, "fired: " + " and ".join(str(r) for r in reasons) + " rule")
    return "; ".join(parts)


def _listed(names: Any, most: int) -> str:
    names = sorted(str(n) for n in names or [])
    if not names:
        return ""
    shown = ", ".join(names[:most])
    return f": {shown}" + (f" and {len(names) - most} more (list cut at {most})" if len(names) > most else "")


def health_badge(collapse: dict | None, vs_baseline: dict | None = None) -> Badge:
    """The collapse verdict and, beside it, the baseline verdict: healthy is not good when the
    champion ranks worse than the Random Forest on the same sessions (``vs_baseline``)."""
    if collapse is None:
        return Badge("Model health", "not checked", "muted", "no collapse check in this audit")
    verdict = str(collapse.get("verdict") or "unknown")
    tone = {"healthy": "ok", "collapsed": "bad", "inputs_out_of_range": "warn"}.get(verdict, "muted")
    value = verdict.replace("_", " ")
    parts = []
    if collapse.get("cause"):
        parts.append(f"cause: {collapse['cause']}")
    if collapse.get("collapsed_horizons"):
        parts.append("horizons " + ", ".join(collapse["collapsed_horizons"]))
    if vs_baseline:
        from spywatch.vs_baseline import phrase

        parts.insert(0, phrase(vs_baseline))
        if vs_baseline.get("verdict") in ("lagging", "ahead"):
            value += " · " + vs_baseline["verdict"]
        if vs_baseline.get("verdict") == "lagging" and tone == "ok":
            tone = "warn"
    return Badge("Model health", value, tone, " · ".join(parts) or "no collapse signals")


def decision_badge(decision: dict | None, retrain: dict | None) -> Badge:
    if decision is None:
        return Badge("Decision", "none", "muted", "no retrain decision was taken")
    codes = [str(r.get("code")) if isinstance(r, dict) else "reason" for r in decision.get("reasons") or []]
    if not decision.get("retrain"):
        return Badge("Decision", "keep champion", "ok", "no retrain trigger fired")
    outcome = ("" if retrain is None else " · the retrain failed" if retrain.get("error") else
               " · challenger promoted" if retrain.get("promoted") else " · challenger rejected by the gate")
    return Badge("Decision", "retrain", "warn", "because: " + (", ".join(codes) or "unstated") + outcome)


def status_badge(status: str, stale: dict | None, predictions: dict | None) -> Badge:
    if stale and stale.get("stale", True):
        last_good = stale.get("last_good_session")
        return Badge("Status", "stale", "bad", f"{status.replace('_', ' ')}; predictions stale since "
                     f"{stale.get('stale_since', '?')}, "
                     + (f"last good {last_good}" if last_good else "none published before"))
    if status != "published":
        return Badge("Status", status.replace("_", " "), "bad", "no predictions published")
    written = f"{predictions.get('file', 'predictions')}, {predictions.get('rows', '?')} row(s)" if predictions else ""
    return Badge("Status", "published", "ok", written or "predictions published")


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


def _model_metrics(models: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Numbers per model; the prior row is derived: a constant has AUC 0.5 and no spread."""
    prior = models.get("prior") if isinstance(models.get("prior"), dict) else None
    prior_brier = _number(prior.get("brier")) if prior else None
    out: dict[str, dict[str, float | None]] = {}
    for model in ("champion", "random_forest", "logistic"):
        m = models.get(model)
        if isinstance(m, dict):
            row = {key: _number(m.get(key)) for key, *_ in METRIC_COLUMNS}
            row["bss"] = (1 - row["brier"] / prior_brier) if row["brier"] is not None and prior_brier else None
            out[model] = row
    if prior:
        rate = _number(prior.get("rate"))
        out["prior"] = {"auc": 0.5, "pr_auc": None, "brier": prior_brier, "bss": 0.0 if prior_brier else None,
                        "ece": None, "pred_std": 0.0, "pred_mean": rate, "n": None}
    return out


def metrics_table(horizon: str, models: dict[str, Any]) -> MetricsTable:
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
    champion = models.get("champion") if isinstance(models.get("champion"), dict) else {}
    return MetricsTable(horizon, [header for _, header, _, _ in METRIC_COLUMNS], rows,
                        _number(champion.get("base_rate")))


# ----------------------------------------------------------------------------- SVG charts


@dataclass(frozen=True)
class Tick:
    at: float  # pixel position along its axis
    label: str


@dataclass(frozen=True)
class Polyline:
    colour: str
    points: str  # SVG "x,y x,y ..." in pixels
    dashed: bool = False
    width: float = 2.0


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    r: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    """Pixel geometry of one plot; the template turns it into an inline ``<svg>``."""

    title: str
    width: int
    height: int
    left: int
    top: int
    right: int  # pixel x of the plot area's right edge
    bottom: int  # pixel y of the plot area's bottom edge
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_label: str
    y_label: str
    lines: list[Polyline]
    dots: list[Dot]
    note: str = ""


@dataclass(frozen=True)
class _Frame:
    """Maps data coordinates to pixels inside a plot area."""

    left: int
    top: int
    right: int
    bottom: int
    x_max: float
    y_max: float
    x_min: float = 0.0
    y_min: float = 0.0

    def x(self, v: float) -> float:
        return round(self.left + (v - self.x_min) / (self.x_max - self.x_min or 1) * (self.right - self.left), 1)

    def y(self, v: float) -> float:
        return round(self.bottom - (v - self.y_min) / (self.y_max - self.y_min or 1) * (self.bottom - self.top), 1)

    def points(self, xs: Iterable[float], ys: Iterable[float]) -> str:
        return " ".join(f"{self.x(a)},{self.y(b)}" for a, b in zip(xs, ys))

    def chart(self, title: str, size: tuple[int, int], x_ticks: list[Tick], y_ticks: list[Tick],
              labels: tuple[str, str], lines: list[Polyline], dots: list[Dot], note: str = "") -> Chart:
        return Chart(title, size[0], size[1], self.left, self.top, self.right, self.bottom,
                     x_ticks, y_ticks, labels[0], labels[1], lines, dots, note)


def _unit_ticks(frame: _Frame, axis: str, step: float = 0.2, top: float = 1.0) -> list[Tick]:
    at = frame.x if axis == "x" else frame.y
    return [Tick(at(v), f"{v:.1f}") for v in np.arange(0.0, top + 1e-9, step)]


def _diagonal(frame: _Frame) -> Polyline:
    return Polyline("#9ca3af", frame.points([0, 1], [0, 1]), dashed=True, width=1.2)


def roc_chart(horizon: str, roc: dict | None, auc: float | None, colour: str) -> Chart | None:
    fpr, tpr = (roc or {}).get("fpr") or [], (roc or {}).get("tpr") or []
    if len(fpr) < 2 or len(fpr) != len(tpr):
        return None
    f = _Frame(left=40, top=10, right=210, bottom=180, x_max=1.0, y_max=1.0)
    return f.chart(f"ROC {horizon}", (220, 215), _unit_ticks(f, "x"), _unit_ticks(f, "y"),
                   ("false positive rate", "true positive rate"),
                   [_diagonal(f), Polyline(colour, f.points(fpr, tpr), width=2.2)], [],
                   note=f"AUC {fmt(auc)}")


def calibration_chart(horizon: str, cal: dict | None, ece: float | None, colour: str) -> Chart | None:
    """Reliability diagram; dot area grows with the bin's count so sparse bins look tentative."""
    pred, obs, count = ((cal or {}).get(k) or [] for k in ("pred", "obs", "count"))
    if not pred or not (len(pred) == len(obs) == len(count)):
        return None
    f = _Frame(left=40, top=10, right=210, bottom=180, x_max=1.0, y_max=1.0)
    biggest = max(max(count), 1)
    dots = [Dot(f.x(p), f.y(o), round(2.5 + 5.5 * math.sqrt(c / biggest), 1), colour,
                f"predicted {p:.3f}, observed {o:.3f}, n={c}") for p, o, c in zip(pred, obs, count)]
    return f.chart(f"Reliability {horizon}", (220, 215), _unit_ticks(f, "x"), _unit_ticks(f, "y"),
                   ("mean predicted probability", "observed frequency"),
                   [_diagonal(f), Polyline(colour, f.points(pred, obs), width=1.5)], dots,
                   note=f"ECE {fmt(ece)}")


def _month_ticks(frame: _Frame, dates: list[str], most: int = 8) -> list[Tick]:
    """A tick where the month changes, thinned to at most ``most`` labels."""
    starts = [(i, d) for i, d in enumerate(dates) if i == 0 or d[:7] != dates[i - 1][:7]]
    step = max(1, math.ceil(len(starts) / most))
    return [Tick(frame.x(i), d[:7]) for i, d in starts[::step]]


def history_chart(history: list[dict], horizons: list[str], prior: dict[str, Any]) -> Chart | None:
    """Probabilities per horizon over the stored history, the training prior dashed beside each.

    A collapsed model shows as a flat line on its dashed prior, which is the picture the original
    failure needed and nobody drew. Sessions are evenly spaced (no weekend gaps).
    """
    rows = sorted((r for r in history if isinstance(r, dict) and r.get("date")), key=lambda r: str(r["date"]))
    if len(rows) < 2:
        return None
    dates = [str(r["date"])[:10] for r in rows]
    peak = max([_number(r.get(h)) or 0.0 for r in rows for h in horizons] +
               [_number(prior.get(h)) or 0.0 for h in horizons])
    y_max = min(1.0, max(0.2, math.ceil((peak + 0.02) * 10) / 10))
    f = _Frame(left=46, top=12, right=1110, bottom=232, x_max=len(rows) - 1, y_max=y_max)
    lines: list[Polyline] = []
    for h, colour in zip(horizons, HORIZON_COLOURS):
        lines += _segments(f, [_number(r.get(h)) for r in rows], colour)
        if _number(prior.get(h)) is not None:
            lines.append(Polyline(colour, f.points([0, len(rows) - 1], [prior[h]] * 2), dashed=True, width=1.2))
    last = rows[-1]
    dots = [Dot(f.x(len(rows) - 1), f.y(v), 3.5, colour, f"{h} on {dates[-1]}: {v:.3f}")
            for h, colour in zip(horizons, HORIZON_COLOURS) if (v := _number(last.get(h))) is not None]
    return f.chart("Predicted probability per horizon", (1120, 262), _month_ticks(f, dates),
                   _unit_ticks(f, "y", step=0.1 if y_max <= 0.6 else 0.2, top=y_max),
                   ("session", "P(gain ≥ 1%)"), lines, dots)


def _segments(frame: _Frame, values: list[float | None], colour: str) -> list[Polyline]:
    """One polyline per run of known values, so a missing night is a gap, not an invented line."""
    out, run = [], []
    for i, v in enumerate([*values, None]):
        if v is not None:
            run.append((i, v))
        elif run:
            out.append(Polyline(colour, frame.points(*zip(*run)), width=1.8))
            run = []
    return out


# ----------------------------------------------------------------------------- the training panel

GROUP_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")


@dataclass(frozen=True)
class TrainingPanel:
    """The training audit of tonight's challenger, else of the champion (training_audit)."""

    whose: str
    verdict: str
    findings: list[str]
    loss_charts: list[Chart]
    grad_chart: Chart | None
    groups: list[tuple[str, str]]  # (group, colour)
    readings: list[str]
    refused: bool  # the gate refused the challenger on this verdict


def _epoch_ticks(frame: _Frame, n: int) -> list[Tick]:
    step = max(1, math.ceil(n / 10))
    return [Tick(frame.x(e), str(e)) for e in range(1, n + 1, step)]


def loss_chart(section: Mapping[str, Any], j: int, colour: str) -> Chart | None:
    """Horizon ``j``'s log loss over the epochs in units of the prior's (1 = predicting the training
    prior, dashed): each member's training loss solid, its holdout loss thin."""
    members = section.get("members") or []
    name = (section.get("horizons") or [f"h{j}"] * (j + 1))[j]
    lines, values, series = [], [], []
    for ev in members:
        epochs, prior = ev.get("epochs") or [], ev.get("prior_loss") or {}
        for key, ref, width in (("train_loss", prior.get("train"), 2.0), ("val_loss", prior.get("val"), 1.1)):
            if not ref or not epochs or epochs[0].get(key) is None:
                continue
            ys = [_number(e[key][j]) for e in epochs]
            ys = [y / ref[j] if y is not None and ref[j] else None for y in ys]
            series.append((ys, width))
            values += [y for y in ys if y is not None]
    n = max((len(ev.get("epochs") or []) for ev in members), default=0)
    if n < 1 or not values:
        return None
    lo = max(0.0, math.floor(min(min(values), 0.9) * 20) / 20)
    hi = min(3.0, math.ceil(max(max(values), 1.05) * 20) / 20)
    f = _Frame(left=44, top=10, right=270, bottom=170, x_min=1, x_max=max(2, n), y_min=lo, y_max=hi)
    lines.append(Polyline("#6b7280", f.points([1, max(2, n)], [1.0, 1.0]), dashed=True, width=1.2))
    for ys, width in series:  # epochs 1..n; a NaN epoch is left out, values clipped to the frame
        known = [(e + 1, min(hi, max(lo, y))) for e, y in enumerate(ys) if y is not None]
        if known:
            lines.append(Polyline(colour, f.points(*zip(*known)), width=width))
    step = 0.05 if hi - lo <= 0.3 else 0.1 if hi - lo <= 0.8 else 0.5
    ticks = [Tick(f.y(v), f"{v:.2f}") for v in np.arange(math.ceil(lo / step) * step, hi + 1e-9, step)]
    last = [ys[-1] for ys, w in series if w == 2.0 and ys and ys[-1] is not None]
    return f.chart(f"log loss {name} / the prior's", (280, 200), _epoch_ticks(f, n), ticks,
                   ("epoch", f"{name} loss ÷ prior's"), lines, [],
                   note=f"last {min(last):.3f}" if last else "")


def grad_chart(section: Mapping[str, Any]) -> tuple[Chart | None, list[tuple[str, str]]]:
    """Mean gradient norm per parameter group over the epochs (mean over members), log scale; a
    group no gradient reaches falls to the floor (1e-12)."""
    members = section.get("members") or []
    groups = list((members[0].get("groups") if members else None) or [])
    n = min((len(ev.get("epochs") or []) for ev in members), default=0)
    if not groups or n < 1:
        return None, []
    floor = 1e-12
    curves = {}
    for g in groups:
        ys = []
        for e in range(n):
            vals = [_number(ev["epochs"][e]["grad_norm"].get(g)) for ev in members]
            vals = [v for v in vals if v is not None]
            ys.append(math.log10(max(floor, float(np.mean(vals)))) if vals else None)
        curves[g] = ys
    known = [y for ys in curves.values() for y in ys if y is not None]
    if not known:
        return None, []
    lo, hi = math.floor(min(known)), math.ceil(max(known) + 1e-9)
    hi = max(hi, lo + 1)
    f = _Frame(left=52, top=10, right=560, bottom=170, x_min=1, x_max=max(2, n), y_min=lo, y_max=hi)
    colours = dict(zip(groups, GROUP_COLOURS * 4))
    lines = [Polyline(colours[g], f.points(*zip(*[(e + 1, y) for e, y in enumerate(ys) if y is not None])), width=1.8)
             for g, ys in curves.items() if any(y is not None for y in ys)]
    step = max(1, math.ceil((hi - lo) / 6))
    ticks = [Tick(f.y(v), f"1e{v:d}") for v in range(lo, hi + 1, step)]
    return (f.chart("gradient norm per parameter group", (570, 200), _epoch_ticks(f, n), ticks,
                    ("epoch", "mean grad norm (log)"), lines, []), list(colours.items()))


def training_panel(audit: Mapping[str, Any]) -> TrainingPanel | None:
    from spywatch.training_audit import finding_line, member_lines

    retrain, champion = _part(audit, "retrain") or {}, audit.get("champion") or {}
    if isinstance(retrain.get("training"), Mapping):
        section = retrain["training"]
        whose = f"challenger {retrain.get('challenger')} (trained tonight)"
    elif isinstance(champion.get("training"), Mapping):
        section = champion["training"]
        whose = f"champion {audit.get('model_version')} (trained for {champion.get('trained_session')})"
    else:
        return None
    names = list(section.get("horizons") or [])
    charts = [c for j, (h, colour) in enumerate(zip(names, HORIZON_COLOURS)) if (c := loss_chart(section, j, colour))]
    grads, groups = grad_chart(section)
    refused = (retrain.get("gate") or {}).get("rule") == "training_unhealthy" and section is retrain.get("training")
    return TrainingPanel(whose=whose, verdict=str(section.get("verdict")),
                         findings=[finding_line(f) for f in section.get("findings") or []],
                         loss_charts=charts, grad_chart=grads, groups=groups, readings=member_lines(section),
                         refused=refused)


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class HorizonPerformance:
    horizon: str
    colour: str
    table: MetricsTable | None
    roc: Chart | None
    calibration: Chart | None


def performance_views(performance: dict | None) -> list[HorizonPerformance]:
    if performance is None:
        return []
    by_h, roc, cal = ((performance.get(k) or {}) for k in ("horizons", "roc", "calibration"))
    out = []
    for i, h in enumerate(horizon_order([*by_h, *roc, *cal])):
        models = by_h.get(h) if isinstance(by_h.get(h), dict) else {}
        champion = models.get("champion") if isinstance(models.get("champion"), dict) else {}
        colour = HORIZON_COLOURS[i % len(HORIZON_COLOURS)]
        out.append(HorizonPerformance(h, colour, metrics_table(h, models) if models else None,
                                      roc_chart(h, roc.get(h), champion.get("auc"), colour),
                                      calibration_chart(h, cal.get(h), champion.get("ece"), colour)))
    return out


# Evidently methods whose score is a p-value: drifted when it falls *below* the threshold
P_VALUE_METHODS = frozenset({"ks", "t_test", "anderson", "cramer_von_mises", "chisquare", "z", "fisher_exact",
                             "mannw", "epps_singleton", "g_test", "empirical_mmd"})


def sig(x: Any) -> str:
    """Three significant digits: drift thresholds run from 0.4 (a distance) to 1e-46 (a p-value)."""
    value = _number(x)
    return "—" if value is None else f"{value:.3g}"


def drift_severity(test: Mapping[str, Any]) -> float:
    """Where a score sits relative to its threshold: 0 = no drift at all, 1 = at the threshold.

    Distances compare linearly; p-values on a log scale, because 1e-9 against a 1e-3 threshold
    is the signal and a linear ratio would squash every p-value to zero.
    """
    score, threshold = _number(test.get("score")), _number(test.get("threshold"))
    if score is None or threshold is None or threshold <= 0:
        return 0.0
    if test.get("score_kind") == "p_value" or test.get("method") in P_VALUE_METHODS:
        if threshold >= 1:
            return 0.0
        return 2.0 if score <= 0 else max(0.0, math.log(min(score, 1.0)) / math.log(threshold))
    return score / threshold


@dataclass(frozen=True)
class DriftRow:
    feature: str
    method: str
    rule: str  # when this test calls drift, e.g. "≥ 1.15" or "p < 0.000238"
    score: str
    drifted: bool
    fill: float  # severity as a bar width in %: 50 = at the threshold, 100 = twice as far


def drift_rows(per_feature: Mapping[str, Any]) -> list[DriftRow]:
    """Drifted features first, then by how close each score is to its threshold."""
    items = [(k, v) for k, v in per_feature.items() if isinstance(v, dict)]
    items.sort(key=lambda kv: (not kv[1].get("drifted"), -drift_severity(kv[1]), kv[0]))
    return [DriftRow(k, str(v.get("method", "?")), _rule(v), sig(v.get("score")), bool(v.get("drifted")),
                     round(min(drift_severity(v), 2.0) * 50, 1)) for k, v in items]


def _rule(test: Mapping[str, Any]) -> str:
    p_value = test.get("score_kind") == "p_value" or test.get("method") in P_VALUE_METHODS
    return f"p < {sig(test.get('threshold'))}" if p_value else f"≥ {sig(test.get('threshold'))}"


def drift_window(drift: Mapping[str, Any]) -> str | None:
    """'current → end vs reference start → end', from whichever form the drift record carries."""
    current, reference = drift.get("current") or {}, drift.get("reference") or {}
    window = drift.get("window") or ([current["start"], current["end"]] if current.get("start") else None)
    if not window:
        return None
    text = " → ".join(str(d) for d in window)
    if current.get("rows"):
        text += f" ({current['rows']} sessions)"
    if reference.get("start"):
        text += f" vs training {reference['start']} → {reference.get('end', '?')}"
    return text


@dataclass(frozen=True)
class Shift:
    feature: str
    value: float
    left: float  # bar geometry in % of a track centred on zero
    width: float


def top_shifts(shift: dict[str, Any], most: int = TOP_FEATURE_SHIFTS) -> list[Shift]:
    """The features furthest from their training mean, as bars on a track symmetric about zero."""
    numbers = {k: _number(v) for k, v in shift.items()}
    known = sorted(((k, v) for k, v in numbers.items() if v is not None), key=lambda kv: -abs(kv[1]))[:most]
    scale = max([3.0] + [abs(v) for _, v in known])  # 3 std is the collapse check's default limit
    return [Shift(k, v, round(50 + min(v, 0) / scale * 50, 1), round(abs(v) / scale * 50, 1)) for k, v in known]


@dataclass(frozen=True)
class Timing:
    stage: str
    seconds: float
    fill: float  # share of the slowest stage, in %


def timing_rows(timings: dict[str, Any] | None) -> list[Timing]:
    numbers = {k: _number(v) for k, v in (timings or {}).items()}
    known = [(k, v) for k, v in numbers.items() if v is not None]
    slowest = max([v for _, v in known] + [1e-9])
    return [Timing(k, v, round(100 * v / slowest, 1)) for k, v in known]


@dataclass(frozen=True)
class SuiteFailures:
    suite: str
    lines: list[str]


def failed_suites(validation: dict | None) -> list[SuiteFailures]:
    """The suites that failed, each failure as one readable line; shown first on a bad night."""
    suites = [(name, (validation or {}).get(name)) for name in ("raw_bars", "features")]
    return [SuiteFailures(name.replace("_", " "), [line_text(x) for x in s.get("failures") or []])
            for name, s in suites if isinstance(s, dict) and not s.get("success")]


def stale_message(audit: Mapping[str, Any], stale: dict | None) -> str | None:
    """The sentence a reader needs when tonight has no predictions, with the date still valid."""
    if _part(audit, "predictions") is not None:
        return None
    history = [r for r in audit.get("prediction_history") or [] if isinstance(r, dict) and r.get("date")]
    last_good = (stale or {}).get("last_good_session") or (max(str(r["date"]) for r in history) if history else None)
    current = bool(stale) and stale.get("stale") is False  # a past session failed; newer ones stand
    message = "No predictions published tonight; " + (
        f"the latest predictions ({last_good}) are newer and stay current." if current else
        f"last good predictions from {last_good} are stale." if last_good else "there are no earlier predictions.")
    if stale and stale.get("reason"):
        message += f" Reason: {stale['reason']}."
    return message


def training_prior(evidence: dict[str, Any], performance: dict | None) -> dict[str, float]:
    """Training positive rate per horizon, from the collapse evidence or else the prior baseline."""
    prior = {h: v for h, v in (evidence.get("prior") or {}).items() if _number(v) is not None}
    for h, models in ((performance or {}).get("horizons") or {}).items():
        rate = _number(((models or {}).get("prior") or {}).get("rate")) if isinstance(models, dict) else None
        if h not in prior and rate is not None:
            prior[h] = rate
    return prior


def _check_href(href: str | None) -> str | None:
    """Only a relative link keeps the page self-contained when the run folder is moved."""
    if href is None:
        return None
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith("//"):
        raise ValueError(f"drift_report_href must be a relative path inside the run folder, got {href!r}")
    return href


# ----------------------------------------------------------------------------- rendering


def audit_context(audit: Mapping[str, Any], drift_report_href: str | None = None) -> dict[str, Any]:
    """Everything the template shows, computed; missing or null parts of the audit become None."""
    if not isinstance(audit, Mapping):
        raise ValueError(f"audit must be a mapping (the parsed audit.json), got {type(audit).__name__}")
    parts = {k: _part(audit, k) for k in ("validation", "drift", "collapse", "health", "performance", "decision",
                                          "retrain", "predictions", "stale")}
    status = str(audit.get("status") or "unknown")
    evidence = (parts["collapse"] or {}).get("evidence") or {}
    history = [r for r in audit.get("prediction_history") or [] if isinstance(r, dict)]
    latest = (parts["predictions"] or {}).get("latest") or {}
    horizons = horizon_order([k for r in [*history, latest] for k in r if k != "date"])
    prior = training_prior(evidence, parts["performance"])
    return {
        "audit": audit, "status": status, "synthetic": bool(audit.get("synthetic")),
        "badges": [validation_badge(parts["validation"]), drift_badge(parts["drift"]),
                   health_badge(parts["collapse"], (parts["health"] or {}).get("vs_baseline")),
                   decision_badge(parts["decision"], parts["retrain"]),
                   status_badge(status, parts["stale"], parts["predictions"])],
        "failed_suites": failed_suites(parts["validation"]),
        "stale_message": stale_message(audit, parts["stale"]),
        "latest": latest, "latest_horizons": [h for h in horizons if _number(latest.get(h)) is not None],
        "member_std": (parts["predictions"] or {}).get("member_std") or {},
        "n_members": (parts["predictions"] or {}).get("members"),
        "prior": prior,
        "performance": parts["performance"], "horizon_views": performance_views(parts["performance"]),
        "history_chart": history_chart(history, horizons, prior),
        "history_legend": list(zip(horizons, HORIZON_COLOURS)), "history_len": len(history),
        "history_last": max((str(r["date"])[:10] for r in history if r.get("date")), default=None),
        "drift": parts["drift"], "drift_rows": drift_rows((parts["drift"] or {}).get("per_feature") or {}),
        "regime_rows": drift_rows(((parts["drift"] or {}).get("regime") or {}).get("per_feature") or {}),
        "drift_window": drift_window(parts["drift"] or {}),
        "drift_report_href": _check_href(drift_report_href),
        "collapse": parts["collapse"], "evidence": evidence,
        "evidence_horizons": horizon_order(evidence.get("pred_std") or {}),
        "shifts": top_shifts(evidence.get("feature_shift_std") or {}),
        "decision": parts["decision"], "retrain": parts["retrain"], "training": training_panel(audit),
        "alerts": [a for a in audit.get("alerts") or [] if isinstance(a, dict)],
        "timings": timing_rows(audit.get("timings")),
    }


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """Built on first render, not at import; autoescape because messages quote raw data."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=fmt, pct=pct, sig=sig, line=line_text,
                       readable=readable)
    return env


def render_audit_html(audit: Mapping[str, Any], drift_report_href: str | None = None) -> str:
    """The audit as a self-contained HTML page (inline CSS and SVG, no script, nothing fetched).

    Args:
        audit: the parsed ``audit.json`` of one nightly run; any section may be missing or null.
        drift_report_href: relative link to the Evidently drift report in the same run folder.
    """
    return _environment().get_template(TEMPLATE).render(**audit_context(audit, drift_report_href))


def write_audit_html(audit: Mapping[str, Any], path: Path, drift_report_href: str | None = None) -> Path:
    """Render and write atomically, so a reader never opens half a report."""
    return atomic_write_text(Path(path), render_audit_html(audit, drift_report_href))
