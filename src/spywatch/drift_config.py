"""What the nightly drift check tests, read from ``drift_thresholds.json``: one calibrated
Evidently test per feature (:class:`ColumnTest`), the dataset rule, the prediction test and the
regime rule against the recent past (:class:`RegimeRule`), as one :class:`DriftConfig`.

Why each feature has its own method and threshold, and how they were calibrated on history, is
in :mod:`spywatch.drift`, which runs the tests.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("spywatch.drift")  # the drift check's logger: a window off calibration is its warning

DEFAULT_THRESHOLDS = Path(__file__).with_name("drift_thresholds.json")
# Evidently method name -> what its score is; decides how a threshold reads (never how it is applied:
# the verdict is Evidently's own test result).
SCORE_KIND = {"wasserstein": "distance", "ks": "p_value", "t_test": "p_value", "psi": "distance",
              "jensenshannon": "distance", "hellinger": "distance", "kl_div": "distance",
              "ed": "distance", "anderson": "p_value", "cramer_von_mises": "p_value",
              "mannw": "p_value"}  # mannw is one-sided in Evidently: small p = current larger than reference
MIN_CURRENT_ROWS = 20  # fewer sessions than this say nothing about a distribution


@dataclass(frozen=True)
class ColumnTest:
    """One column's Evidently drift test: drifted when a distance >= threshold, or a p-value below it."""

    column: str
    method: str
    threshold: float

    def __post_init__(self) -> None:
        if self.method not in SCORE_KIND:
            raise ValueError(f"drift method {self.method!r} for {self.column} is not one of {sorted(SCORE_KIND)}")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"drift threshold for {self.column} must be a positive number, got {self.threshold}")

    @property
    def score_kind(self) -> str:
        return SCORE_KIND[self.method]


@dataclass(frozen=True)
class RegimeRule:
    """The current window against the ``recent_sessions`` sessions just before it.

    ``tests``: the volatility family (one calibrated Evidently test per feature).
    ``min_drifted``: the regime changed when at least this many of them drift.
    """

    tests: tuple[ColumnTest, ...]
    min_drifted: int
    recent_sessions: int

    def __post_init__(self) -> None:
        if not self.tests:
            raise ValueError("a regime rule needs at least one feature test")
        names = [t.column for t in self.tests]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate regime tests in {names}")
        if not 1 <= self.min_drifted <= len(self.tests):
            raise ValueError(f"regime min_drifted must be in 1..{len(self.tests)}, got {self.min_drifted}")
        if self.recent_sessions < MIN_CURRENT_ROWS:
            raise ValueError(f"regime recent_sessions must be at least {MIN_CURRENT_ROWS}, got {self.recent_sessions}")

    @property
    def features(self) -> list[str]:
        return [t.column for t in self.tests]

    @property
    def drift_share(self) -> float:
        """Evidently's share test for ``min_drifted`` (half a feature below it: no float edge)."""
        return (self.min_drifted - 0.5) / len(self.tests)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RegimeRule:
        return cls(tests=tuple(ColumnTest(name, spec["method"], float(spec["threshold"]))
                               for name, spec in doc["features"].items()),
                   min_drifted=int(doc["dataset_rule"]["min_drifted_features"]),
                   recent_sessions=int(doc["recent_sessions"]))

    def to_dict(self) -> dict[str, Any]:
        return {"recent_sessions": self.recent_sessions,
                "dataset_rule": {"min_drifted_features": self.min_drifted, "drift_share": self.drift_share},
                "features": {t.column: {"method": t.method, "threshold": t.threshold} for t in self.tests}}


@dataclass(frozen=True)
class DriftConfig:
    """What the nightly drift check tests and when it calls the dataset drifted.

    ``tests``: one per monitored feature (calibrated on history, see the module docstring).
    ``drift_share``: the dataset drifts when at least this share of the features drift.
    ``persistence_k``: consecutive drifted runs before drift alone justifies a retrain.
    ``prediction_method`` / ``prediction_threshold`` / ``prediction_quantile``: the test for each
    prediction column (probability per horizon). With a quantile (and a distance method), each night
    calibrates the threshold on the champion's own validation predictions: the ``prediction_quantile``
    of the distance between them and each window-long stretch of them, never below
    ``prediction_threshold`` (see ``drift.prediction_threshold``); without one, the fixed threshold.
    ``calibrated_window``: the window length the thresholds were calibrated for; thresholds of
    p-value tests do not transfer to another length.
    ``regime``: the comparison with the recent past (None: training reference only).
    """

    tests: tuple[ColumnTest, ...]
    drift_share: float
    window: int = 60
    persistence_k: int = 3
    prediction_method: str = "wasserstein"
    prediction_threshold: float = 0.5
    prediction_quantile: float | None = 0.99
    calibrated_window: int = 60
    source: str = "defaults"
    regime: RegimeRule | None = None

    def __post_init__(self) -> None:
        if not self.tests:
            raise ValueError("a drift config needs at least one feature test")
        names = [t.column for t in self.tests]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature tests in {names}")
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if self.window < MIN_CURRENT_ROWS:
            raise ValueError(f"window must be at least {MIN_CURRENT_ROWS} sessions, got {self.window}")
        if self.persistence_k < 1:
            raise ValueError(f"persistence_k must be >= 1, got {self.persistence_k}")
        ColumnTest("prediction", self.prediction_method, self.prediction_threshold)  # validates both
        if self.prediction_quantile is not None and not 0.5 <= self.prediction_quantile < 1:
            raise ValueError(f"prediction_quantile must be in [0.5, 1), got {self.prediction_quantile}")
        if self.regime is not None:
            extra = [c for c in self.regime.features if c not in names]
            if extra:
                raise ValueError(f"regime tests {extra} are not among the monitored features")

    @property
    def features(self) -> list[str]:
        return [t.column for t in self.tests]

    @property
    def recent_sessions(self) -> int:
        """Sessions before the current window the regime check wants (0: no regime check)."""
        return self.regime.recent_sessions if self.regime is not None else 0

    @property
    def min_drifted(self) -> int:
        """The fewest drifted features that make the dataset drifted."""
        return math.ceil(self.drift_share * len(self.tests) - 1e-9)

    @classmethod
    def load(cls, path: Path | None = None, *, window: int | None = None) -> DriftConfig:
        """Read a thresholds file (default: the calibrated one shipped with the package)."""
        path = path if path is not None else DEFAULT_THRESHOLDS
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"drift thresholds file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(doc, window=window, source=str(path))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, window: int | None = None, source: str = "dict") -> DriftConfig:
        try:
            tests = tuple(ColumnTest(name, spec["method"], float(spec["threshold"]))
                          for name, spec in doc["features"].items())
            rule = doc["dataset_rule"]
            calibrated = int(doc["window"])
            prediction = doc.get("prediction") or {}
            config = cls(tests=tests, drift_share=float(rule["drift_share"]),
                         window=int(window if window is not None else calibrated),
                         persistence_k=int(rule.get("persistence_k", 3)),
                         prediction_method=prediction.get("method", "wasserstein"),
                         prediction_threshold=float(prediction.get("threshold", 0.5)),
                         prediction_quantile=(float(prediction["quantile"]) if prediction.get("quantile") is not None
                                              else None),
                         calibrated_window=calibrated, source=source,
                         regime=RegimeRule.from_dict(doc["regime"]) if doc.get("regime") else None)
        except KeyError as exc:
            raise ValueError(f"{source}: drift thresholds lack key {exc}") from None
        if config.window != config.calibrated_window:
            log.warning("drift window %d differs from the %d sessions the thresholds were calibrated for; "
                        "expect more or fewer false alarms", config.window, config.calibrated_window)
        return config

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "calibrated_window": self.calibrated_window, "source": self.source,
                "dataset_rule": {"drift_share": self.drift_share, "min_drifted_features": self.min_drifted,
                                 "persistence_k": self.persistence_k},
                "features": {t.column: {"method": t.method, "threshold": t.threshold} for t in self.tests},
                "prediction": {"method": self.prediction_method, "threshold": self.prediction_threshold,
                               "quantile": self.prediction_quantile},
                "regime": self.regime.to_dict() if self.regime is not None else None}
