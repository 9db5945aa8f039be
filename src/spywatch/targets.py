"""Targets: y_h = 1 if max(Close[t+1..t+h]) / Close[t] - 1 >= threshold, for each horizon h."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TargetConfig:
    horizons: tuple[int, ...] = (1, 3, 5)
    # a gain of at least this fraction within h sessions (1% by default)
    threshold: float = 0.01

    def __post_init__(self) -> None:
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ValueError(f"horizons must be positive session counts, got {self.horizons}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be a fraction in (0, 1), got {self.threshold}")

    @property
    def names(self) -> list[str]:
        return [f"h{h}" for h in self.horizons]

    @property
    def max_horizon(self) -> int:
        return max(self.horizons)


def make_targets(close: pd.Series, config: TargetConfig = TargetConfig()) -> pd.DataFrame:
    """One column per horizon (``y_h1``...), NaN where the horizon has not matured yet."""
    c = close.to_numpy(dtype="float64")
    n = len(c)
    out = pd.DataFrame(index=close.index)
    for h in config.horizons:
        future_max = np.full(n, np.nan)
        if n > h:
            windows = np.lib.stride_tricks.sliding_window_view(c[1:], h)  # row t: c[t+1..t+h]
            future_max[: len(windows)] = windows.max(axis=1)
        y = np.where(np.isnan(future_max), np.nan, (future_max / c - 1.0 >= config.threshold).astype("float64"))
        out[f"y_h{h}"] = y
    return out
