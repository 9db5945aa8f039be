"""The numbers behind the report's ROC and reliability plots, computed by the night's monitoring
from matured labels and stored in the audit (``performance.roc``, ``performance.calibration``).

numpy only: the monitoring imports these without the HTML view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
