"""Audit values as the words and numbers a person reads: fixed-point and significant digits, a
dash for nothing, yes/no, horizons in order, a failure as one sentence, which drift rule fired.

The report, the run page, the fleet pages, the alerts and the log all say things the same way
because they all say them through here; nothing here knows HTML, SVG or jinja.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from spywatch.audit_schema import ColumnDrift, Drift, Reason

# Evidently methods whose score is a p-value: drifted when it falls *below* the threshold
P_VALUE_METHODS = frozenset({"ks", "t_test", "anderson", "cramer_von_mises", "chisquare", "z", "fisher_exact",
                             "mannw", "epps_singleton", "g_test", "empirical_mmd"})


def finite(x: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and non-numbers (JSON writes NaN as NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def horizon_order(names: Iterable[str]) -> list[str]:
    """h1, h3, h5, ... in numeric order (h10 after h5), anything else after them by name."""
    def key(name: str) -> tuple[int, str]:
        digits = name[1:] if name[:1] == "h" else ""
        return (int(digits), name) if digits.isdigit() else (10**9, name)
    return sorted(set(names), key=key)


def line_text(item: Reason | str) -> str:
    """A decision's reason or note as its sentence; a stored line (a failed check, a gate's
    reason, a finding) as it is."""
    return item.message if isinstance(item, Reason) else str(item)


def fmt(x: Any, digits: int = 3) -> str:
    """Fixed-point number, or an em dash where the audit has nothing (null, NaN, missing); never
    "-0.000" (a value that rounds to zero is 0)."""
    value = finite(x)
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
    value = finite(x)
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def sig(x: Any) -> str:
    """Three significant digits: drift thresholds run from 0.4 (a distance) to 1e-46 (a p-value)."""
    value = finite(x)
    return "—" if value is None else f"{value:.3g}"


def drift_severity(test: ColumnDrift) -> float:
    """Where a score sits relative to its threshold: 0 = no drift at all, 1 = at the threshold.

    Distances compare linearly; p-values on a log scale, because 1e-9 against a 1e-3 threshold
    is the signal and a linear ratio would squash every p-value to zero.
    """
    score, threshold = finite(test.score), finite(test.threshold)
    if score is None or threshold is None or threshold <= 0:
        return 0.0
    if is_p_value(test):
        if threshold >= 1:
            return 0.0
        return 2.0 if score <= 0 else max(0.0, math.log(min(score, 1.0)) / math.log(threshold))
    return score / threshold


def is_p_value(test: ColumnDrift) -> bool:
    """Whether the test's score is a p-value (drift below the threshold) rather than a distance."""
    return test.score_kind == "p_value" or test.method in P_VALUE_METHODS


def drift_detail(drift: Drift, most: int = 5) -> str:
    """Which rule fired and on what: the training rule (share of features drifted against the
    training span), the regime rule (volatility features against the last year), the predictions.
    Feature lists longer than ``most`` are cut, and say so."""
    n_features = drift.n_features or len(drift.per_feature)
    parts = [f"vs training: {drift.n_drifted} of {n_features} features drifted ({pct(drift.share)}"
             + (f"; rule ≥ {pct(drift.drift_share)})" if finite(drift.drift_share) is not None else ")")
             + _listed(drift.drifted_features, most)]
    regime = drift.regime
    if regime is not None:
        recent = regime.recent
        span = f" {recent.start} → {recent.end}" if recent.start else ""
        parts.append(f"vs the last year{span}: {regime.n_drifted} of {regime.n_features} "
                     f"volatility features (rule ≥ {regime.min_drifted_features})"
                     + _listed(regime.drifted_features, most))
    shifted = [h for h, t in (drift.prediction_drift or {}).items() if t.drifted]
    if shifted:
        parts.append("predictions shifted on " + ", ".join(horizon_order(shifted)))
    if drift.dataset_drift and drift.drift_reasons:
        parts.insert(0, "fired: " + " and ".join(str(r) for r in drift.drift_reasons) + " rule")
    return "; ".join(parts)


def _listed(names: list[str], most: int) -> str:
    names = sorted(str(n) for n in names)
    if not names:
        return ""
    shown = ", ".join(names[:most])
    return f": {shown}" + (f" and {len(names) - most} more (list cut at {most})" if len(names) > most else "")
