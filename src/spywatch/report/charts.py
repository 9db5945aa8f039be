"""The report's plots as pixel geometry: ``templates/audit.html.j2`` turns each ``Chart`` into an
inline ``<svg>``, so the page draws its plots from the audit's own numbers and fetches nothing.

ROC and reliability per horizon, the probabilities over the stored history against the training
prior, and the training audit's loss and gradient curves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spywatch.audit_schema import Blob, MemberEvidence
from spywatch.report.text import finite, fmt

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies
HORIZON_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9")
GROUP_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")


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


def roc_chart(horizon: str, roc: Blob | None, auc: float | None, colour: str) -> Chart | None:
    fpr, tpr = (roc or {}).get("fpr") or [], (roc or {}).get("tpr") or []
    if len(fpr) < 2 or len(fpr) != len(tpr):
        return None
    f = _Frame(left=40, top=10, right=210, bottom=180, x_max=1.0, y_max=1.0)
    return f.chart(f"ROC {horizon}", (220, 215), _unit_ticks(f, "x"), _unit_ticks(f, "y"),
                   ("false positive rate", "true positive rate"),
                   [_diagonal(f), Polyline(colour, f.points(fpr, tpr), width=2.2)], [],
                   note=f"AUC {fmt(auc)}")


def calibration_chart(horizon: str, cal: Blob | None, ece: float | None, colour: str) -> Chart | None:
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


def history_chart(dated: list[dict[str, Any]], horizons: list[str], prior: dict[str, float]) -> Chart | None:
    """Probabilities per horizon over the stored history (its rows that have a date), the
    training prior dashed beside each.

    A collapsed model shows as a flat line on its dashed prior, which is the picture the original
    failure needed and nobody drew. Sessions are evenly spaced (no weekend gaps).
    """
    rows = sorted(dated, key=lambda r: str(r["date"]))
    if len(rows) < 2:
        return None
    dates = [str(r["date"])[:10] for r in rows]
    peak = max([finite(r.get(h)) or 0.0 for r in rows for h in horizons] +
               [finite(prior.get(h)) or 0.0 for h in horizons])
    y_max = min(1.0, max(0.2, math.ceil((peak + 0.02) * 10) / 10))
    f = _Frame(left=46, top=12, right=1110, bottom=232, x_max=len(rows) - 1, y_max=y_max)
    lines: list[Polyline] = []
    for h, colour in zip(horizons, HORIZON_COLOURS):
        lines += _segments(f, [finite(r.get(h)) for r in rows], colour)
        if finite(prior.get(h)) is not None:
            lines.append(Polyline(colour, f.points([0, len(rows) - 1], [prior[h]] * 2), dashed=True, width=1.2))
    last = rows[-1]
    dots = [Dot(f.x(len(rows) - 1), f.y(v), 3.5, colour, f"{h} on {dates[-1]}: {v:.3f}")
            for h, colour in zip(horizons, HORIZON_COLOURS) if (v := finite(last.get(h))) is not None]
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


# ----------------------------------------------------------------------------- training curves


def _epoch_ticks(frame: _Frame, n: int) -> list[Tick]:
    step = max(1, math.ceil(n / 10))
    return [Tick(frame.x(e), str(e)) for e in range(1, n + 1, step)]


def loss_chart(members: list[MemberEvidence], name: str, j: int, colour: str) -> Chart | None:
    """Horizon ``j`` (``name``)'s log loss over the epochs in units of the prior's (1 = predicting
    the training prior, dashed): each member's training loss solid, its holdout loss thin.
    ``members``: the training audit's record per member."""
    lines, values, series, n = [], [], [], 0
    for ev in members:
        epochs, prior = ev.epochs, ev.prior_loss
        n = max(n, len(epochs))
        for losses, ref, width in (([e.train_loss for e in epochs], prior.train, 2.0),
                                   ([e.val_loss for e in epochs], prior.val, 1.1)):
            if not ref or not losses or losses[0] is None:
                continue
            ys = [finite(loss[j]) for loss in losses]
            ys = [y / ref[j] if y is not None and ref[j] else None for y in ys]
            series.append((ys, width))
            values += [y for y in ys if y is not None]
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


def grad_chart(members: list[MemberEvidence]) -> tuple[Chart | None, list[tuple[str, str]]]:
    """Mean gradient norm per parameter group over the epochs (mean over members), log scale; a
    group no gradient reaches falls to the floor (1e-12)."""
    groups = list(members[0].groups) if members else []
    n = min((len(ev.epochs) for ev in members), default=0)
    if not groups or n < 1:
        return None, []
    floor = 1e-12
    curves = {}
    for g in groups:
        ys = []
        for e in range(n):
            vals = [finite(ev.epochs[e].grad_norm.get(g)) for ev in members]
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
