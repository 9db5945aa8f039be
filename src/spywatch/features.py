"""Stationary or bounded features, the training-statistics scaler, and the feature-shift table.

No raw price level, raw MACD, raw ATR or raw volume ever reaches a model: the original models
collapsed because those inputs sat 5-16x outside their training range. Every feature here is
a return, a ratio to the current price, a bounded oscillator or a z-score, and is computed
from data up to and including its own session only (no look-ahead).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch.atomic import atomic_write_json

# name -> (natural lower bound, natural upper bound) for bounded features; None = unbounded
FEATURE_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "ret_1": (None, None),
    "ret_5": (None, None),
    "ret_10": (None, None),
    "ret_20": (None, None),
    "vol_5": (0.0, None),
    "vol_20": (0.0, None),
    "vol_60": (0.0, None),
    "vol_ratio_5_60": (0.0, None),
    "atr_14_pct": (0.0, None),
    "range_pct": (0.0, None),
    "gap": (None, None),
    "close_loc": (0.0, 1.0),
    "rsi_14": (0.0, 1.0),
    "macd_pct": (None, None),
    "macd_signal_pct": (None, None),
    "macd_hist_pct": (None, None),
    "dist_sma_20": (-1.0, None),
    "dist_sma_50": (-1.0, None),
    "dist_sma_200": (-1.0, None),
    "drawdown_252": (-1.0, 0.0),
    "volume_z_20": (None, None),
}
FEATURES: tuple[str, ...] = tuple(FEATURE_BOUNDS)
# Sessions of history a feature needs before it is defined (the longest window).
WARMUP_SESSIONS = 252
# The raw, unnormalised inputs of the original study; shown for contrast, never fed to a model.
RAW_COLUMNS: tuple[str, ...] = ("Close", "MACD", "ATR", "RSI", "Volume")
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)
SCALINGS = ("standard", "quantile")
# Knots of the quantile scaling: the fit span's quantiles at (i + 0.5) / QUANTILE_KNOTS.
QUANTILE_KNOTS = 200


def _wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1.0 / n, adjust=False, min_periods=n).mean()


def raw_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """The original study's unscaled inputs: Close, MACD(12, 26), ATR(14), RSI(14), Volume."""
    close, high, low = bars["close"], bars["high"], bars["low"]
    prev = close.shift(1)
    true_range = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1)
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    delta = close.diff()
    gain = _wilder(delta.clip(lower=0), 14)
    loss = _wilder((-delta).clip(lower=0), 14)
    rsi = 100.0 - 100.0 / (1.0 + gain / loss.replace(0.0, np.nan))
    rsi = rsi.where(loss > 0, 100.0).where(gain.notna())
    return pd.DataFrame({"Close": close, "MACD": macd, "ATR": _wilder(true_range, 14), "RSI": rsi,
                         "Volume": bars["volume"].astype("float64")}, index=bars.index)


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Model features for every session of ``bars`` (NaN during the warm-up).

    Args:
        bars: canonical bars (``open, high, low, close, volume``), sorted by date.
    Returns:
        DataFrame indexed like ``bars`` with the columns of :data:`FEATURES`.
    """
    close, high, low, open_ = bars["close"], bars["high"], bars["low"], bars["open"]
    raw = raw_indicators(bars)
    logc = np.log(close)
    r1 = logc.diff()
    f = pd.DataFrame(index=bars.index)
    for lag in (1, 5, 10, 20):
        f[f"ret_{lag}"] = logc - logc.shift(lag)
    for win in (5, 20, 60):
        f[f"vol_{win}"] = r1.rolling(win).std()
    f["vol_ratio_5_60"] = f["vol_5"] / f["vol_60"]
    f["atr_14_pct"] = raw["ATR"] / close
    f["range_pct"] = (high - low) / close
    f["gap"] = np.log(open_ / close.shift(1))
    span = (high - low).replace(0.0, np.nan)
    f["close_loc"] = ((close - low) / span).fillna(0.5)
    f["rsi_14"] = raw["RSI"] / 100.0
    signal = raw["MACD"].ewm(span=9, adjust=False).mean()
    f["macd_pct"] = raw["MACD"] / close
    f["macd_signal_pct"] = signal / close
    f["macd_hist_pct"] = (raw["MACD"] - signal) / close
    for win in (20, 50, 200):
        f[f"dist_sma_{win}"] = close / close.rolling(win).mean() - 1.0
    f["drawdown_252"] = close / close.rolling(252, min_periods=252).max() - 1.0
    logv = np.log(bars["volume"].astype("float64").clip(lower=1.0))
    f["volume_z_20"] = (logv - logv.rolling(20).mean()) / logv.rolling(20).std().replace(0.0, np.nan)
    # EWM-based features are defined from the first row but not yet meaningful: mask the warm-up.
    f.iloc[:WARMUP_SESSIONS - 1] = np.nan
    return f.loc[:, list(FEATURES)].astype("float64")


# ----------------------------------------------------------------------------- scaler


@dataclass(frozen=True)
class FeatureStats:
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[str, float]
    lower_bound: float | None
    upper_bound: float | None


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature training statistics: the scaler, the drift reference and the validation bounds.

    Fitted on the training period only. ``kind="standard"``: ``transform`` gives training-std
    units. ``kind="quantile"``: each feature through its fit span's empirical distribution to a
    normal score (piecewise linear between ``QUANTILE_KNOTS`` quantiles), so the common range of a
    skewed feature (volatility on ordinary days, squeezed near -0.5 std by the standard scaling) is
    spread over the inputs as evenly as the rare days; beyond the fit span's outer knots the score
    goes on in training-std units, so an extreme day stays extreme. Both are clipped at
    +-``clip`` so a wild input cannot dominate a batch (the audit still sees the unclipped shift).
    Drift, validation and the shift table read ``stats`` (mean, std, bounds) whatever the kind.
    """

    stats: dict[str, FeatureStats]
    train_start: str
    train_end: str
    n_rows: int
    clip: float = 10.0
    kind: str = "standard"
    knots: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] | None = None  # quantile: (values, scores)

    @property
    def features(self) -> list[str]:
        return list(self.stats)

    @classmethod
    def fit(cls, features: pd.DataFrame, clip: float = 10.0, kind: str = "standard") -> FeatureScaler:
        if kind not in SCALINGS:
            raise ValueError(f"scaling={kind!r}; expected one of {SCALINGS}")
        frame = features.dropna()
        if len(frame) < 50:
            raise ValueError(f"need at least 50 complete training rows to fit the scaler, got {len(frame)}")
        stats = {}
        for col in frame.columns:
            x = frame[col].to_numpy(dtype="float64")
            std = float(x.std(ddof=1))
            if not np.isfinite(std) or std <= 1e-9 * max(1.0, abs(float(x.mean()))):
                raise ValueError(f"feature {col} is constant over the training period (std={std})")
            lo, hi = FEATURE_BOUNDS.get(col, (None, None))
            stats[col] = FeatureStats(
                mean=float(x.mean()), std=std, min=float(x.min()), max=float(x.max()),
                quantiles={f"q{q:g}": float(np.quantile(x, q)) for q in QUANTILES},
                lower_bound=lo, upper_bound=hi)
        knots = {col: _quantile_knots(frame[col].to_numpy(dtype="float64")) for col in frame.columns} \
            if kind == "quantile" else None
        return cls(stats=stats, train_start=frame.index[0].date().isoformat(),
                   train_end=frame.index[-1].date().isoformat(), n_rows=len(frame), clip=clip, kind=kind,
                   knots=knots)

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.stats if c not in features.columns]
        if missing:
            raise ValueError(f"features lack column(s) {missing} the scaler was fitted on")
        out = pd.DataFrame(index=features.index)
        for col, s in self.stats.items():
            x = features[col].to_numpy(dtype="float64")
            z = (x - s.mean) / s.std if self.knots is None else _quantile_score(x, *self.knots[col], s.std)
            out[col] = np.clip(z, -self.clip, self.clip)
        return out

    def shift_std(self, features: pd.DataFrame) -> dict[str, float]:
        """Mean of each feature over ``features`` in training-std units (unclipped)."""
        return {c: float((features[c].mean() - s.mean) / s.std) for c, s in self.stats.items()}

    def to_dict(self) -> dict:
        # JSON objects are written with sorted keys: the column order the model was trained on is kept apart.
        out = {"train_start": self.train_start, "train_end": self.train_end, "n_rows": self.n_rows,
               "clip": self.clip, "order": list(self.stats), "features": {k: v.__dict__ for k, v in self.stats.items()}}
        if self.kind != "standard":  # a standard scaler's file stays as it was before the quantile kind
            out["kind"] = self.kind
            out["knots"] = {k: {"values": list(v), "scores": list(sc)} for k, (v, sc) in self.knots.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> FeatureScaler:
        order = d.get("order") or list(d["features"])
        kind = d.get("kind", "standard")
        if kind not in SCALINGS:
            raise ValueError(f"scaler kind {kind!r} unknown; expected one of {SCALINGS}")
        knots = None
        if kind == "quantile":
            knots = {k: (tuple(float(v) for v in d["knots"][k]["values"]),
                         tuple(float(v) for v in d["knots"][k]["scores"])) for k in order}
        return cls(stats={k: FeatureStats(**d["features"][k]) for k in order},
                   train_start=d["train_start"], train_end=d["train_end"], n_rows=d["n_rows"],
                   clip=d.get("clip", 10.0), kind=kind, knots=knots)

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> FeatureScaler:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _quantile_knots(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(values, normal scores) of the quantile scaling: the fit span's quantiles at (i + 0.5) / K;
    a value repeated over several levels (a bounded feature's mass at its bound) keeps their mean score."""
    from statistics import NormalDist

    levels = (np.arange(QUANTILE_KNOTS) + 0.5) / QUANTILE_KNOTS
    values = np.quantile(x, levels)
    scores = np.array([NormalDist().inv_cdf(float(u)) for u in levels])
    unique, inverse = np.unique(values, return_inverse=True)
    mean_scores = np.bincount(inverse, weights=scores) / np.bincount(inverse)
    return tuple(float(v) for v in unique), tuple(float(v) for v in mean_scores)


def _quantile_score(x: np.ndarray, values, scores, std: float) -> np.ndarray:
    """Piecewise linear between the knots; beyond the outer knots, on in training-std units."""
    values, scores = np.asarray(values), np.asarray(scores)
    z = np.interp(x, values, scores)
    z = np.where(x < values[0], scores[0] + (x - values[0]) / std, z)
    z = np.where(x > values[-1], scores[-1] + (x - values[-1]) / std, z)
    return np.where(np.isnan(x), np.nan, z)


# ----------------------------------------------------------------------------- shift table


@dataclass(frozen=True)
class ShiftTable:
    """The audit's feature-shift table: model features in training-std units, raw columns as ratios."""

    features: dict[str, dict[str, float]]
    raw: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        return {"features": self.features, "raw": self.raw}

    def max_abs_shift(self) -> tuple[str, float]:
        name = max(self.features, key=lambda k: abs(self.features[k]["shift_std"]))
        return name, self.features[name]["shift_std"]

    def format(self) -> str:
        lines = [f"{'feature':<18}{'train_mean':>12}{'train_std':>12}{'test_mean':>12}{'shift_std':>11}"]
        for name, row in self.features.items():
            lines.append(f"{name:<18}{row['train_mean']:>12.5f}{row['train_std']:>12.5f}"
                         f"{row['test_mean']:>12.5f}{row['shift_std']:>+11.2f}")
        lines.append("")
        lines.append(f"{'raw column':<18}{'train_mean':>14}{'test_mean':>14}{'ratio':>9}")
        for name, row in self.raw.items():
            lines.append(f"{name:<18}{row['train_mean']:>14.4f}{row['test_mean']:>14.4f}{row['ratio']:>9.2f}")
        return "\n".join(lines)


def shift_table(features: pd.DataFrame, raw: pd.DataFrame, scaler: FeatureScaler,
                train_mask: pd.Series, test_mask: pd.Series) -> ShiftTable:
    """Mean of the test period against the training statistics, for model and raw inputs."""
    test = features.loc[test_mask]
    feats = {}
    for name, s in scaler.stats.items():
        test_mean = float(test[name].mean())
        feats[name] = {"train_mean": s.mean, "train_std": s.std, "test_mean": test_mean,
                       "shift_std": (test_mean - s.mean) / s.std}
    raws = {}
    for name in RAW_COLUMNS:
        tr = float(raw.loc[train_mask, name].mean())
        te = float(raw.loc[test_mask, name].mean())
        raws[name] = {"train_mean": tr, "test_mean": te, "ratio": te / tr if tr else float("nan")}
    return ShiftTable(features=feats, raw=raws)
