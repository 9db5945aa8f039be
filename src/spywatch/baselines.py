"""Baselines on the same features and splits: Random Forest, logistic regression, class prior.

They see the feature vector at the window's last session (the RF of the original audit reached
AUC 0.68-0.82 this way, which showed that the signal exists).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BaselineConfig:
    rf_trees: int = 300
    rf_min_leaf: int = 25  # daily returns are noisy: deep trees memorise them
    rf_max_features: str = "sqrt"
    logistic_c: float = 0.1
    n_jobs: int = 2


@dataclass
class Baselines:
    """One fitted Random Forest and logistic regression per horizon, and the training prior; with
    ``vol_columns``, also a logistic on those columns only (the volatility-only reference)."""

    random_forest: list
    logistic: list
    prior: np.ndarray  # (H,)
    vol_logistic: list | None = None
    vol_columns: tuple[int, ...] = ()

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """X: (N, C) -> {"random_forest", "logistic", "prior"[, "vol_logistic"]}: (N, H) probabilities."""
        rf = np.column_stack([m.predict_proba(X)[:, 1] for m in self.random_forest])
        lr = np.column_stack([m.predict_proba(X)[:, 1] for m in self.logistic])
        out = {"random_forest": rf, "logistic": lr, "prior": np.tile(self.prior, (len(X), 1))}
        if self.vol_logistic is not None:
            xv = np.asarray(X)[:, list(self.vol_columns)]
            out["vol_logistic"] = np.column_stack([m.predict_proba(xv)[:, 1] for m in self.vol_logistic])
        return out


def fit_baselines(X: np.ndarray, y: np.ndarray, config: BaselineConfig = BaselineConfig(), seed: int = 0,
                  vol_columns: tuple[int, ...] = ()) -> Baselines:
    """X: (N, C) features at t; y: (N, H) labels; ``vol_columns``: X's volatility columns, for the
    volatility-only logistic (none: not fitted)."""
    from sklearn.ensemble import RandomForestClassifier

    rfs = [RandomForestClassifier(n_estimators=config.rf_trees, min_samples_leaf=config.rf_min_leaf,
                                  max_features=config.rf_max_features, n_jobs=config.n_jobs,
                                  random_state=seed).fit(X, y[:, h]) for h in range(y.shape[1])]
    vol = fit_logistic(X[:, list(vol_columns)], y, config) if vol_columns else None
    return Baselines(random_forest=rfs, logistic=fit_logistic(X, y, config), prior=y.mean(axis=0),
                     vol_logistic=vol, vol_columns=tuple(vol_columns))


def fit_logistic(X: np.ndarray, y: np.ndarray, config: BaselineConfig = BaselineConfig()) -> list:
    """One scaled logistic regression per horizon; X: (N, C), y: (N, H).

    The recipe of ``fit_baselines``'s logistic, and of ``evaluate``'s volatility-only reference,
    so that the two differ in their inputs only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return [make_pipeline(StandardScaler(), LogisticRegression(C=config.logistic_c, max_iter=2000)).fit(X, y[:, h])
            for h in range(y.shape[1])]


# ----------------------------------------------------------------------------- stored as arrays
#
# The nightly decay check compares the champion with baselines fitted on the champion's own
# training period: the same fit every night until the champion changes. They are kept as plain
# arrays (``np.load(allow_pickle=False)``: nothing is unpickled) and predict with the exact
# arithmetic of scikit-learn (float32 inputs against float64 thresholds, leaf class fractions
# averaged over the trees; the logistic as its scaler and coefficients).


@dataclass(frozen=True)
class ForestArrays:
    """A fitted binary random forest as node tables, (T, M) each, padded with leaves."""

    left: np.ndarray  # child index, -1 at a leaf
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    p1: np.ndarray  # fraction of class 1 at the node

    @classmethod
    def from_sklearn(cls, forest) -> ForestArrays:  # noqa: ANN001 (RandomForestClassifier)
        trees = [est.tree_ for est in forest.estimators_]
        m = max(t.node_count for t in trees)
        shape = (len(trees), m)
        left, right = np.full(shape, -1, np.int64), np.full(shape, -1, np.int64)
        feature, threshold, p1 = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape)
        ones = list(forest.classes_).index(1) if 1 in forest.classes_ else None
        for i, t in enumerate(trees):
            n = t.node_count
            left[i, :n], right[i, :n] = t.children_left, t.children_right
            feature[i, :n], threshold[i, :n] = np.maximum(t.feature, 0), t.threshold
            value = t.value[:, 0, :]
            p1[i, :n] = value[:, ones] / value.sum(axis=1) if ones is not None else 0.0
        return cls(left, right, feature, threshold, p1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """X: (N, C) -> (N, 2), as ``RandomForestClassifier.predict_proba``."""
        x = np.asarray(X, dtype=np.float32).astype(np.float64)  # what the trees compare
        trees = np.arange(self.left.shape[0])[:, None]
        rows = np.arange(len(x))[None, :]
        node = np.zeros((len(trees), len(x)), dtype=np.int64)
        while True:
            left = self.left[trees, node]
            inner = left >= 0
            if not inner.any():
                break
            go_left = x[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(inner, np.where(go_left, left, self.right[trees, node]), node)
        p = self.p1[trees, node].mean(axis=0)
        return np.column_stack([1.0 - p, p])


@dataclass(frozen=True)
class LogisticArrays:
    """``make_pipeline(StandardScaler(), LogisticRegression())`` for one binary target."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def from_sklearn(cls, pipe) -> LogisticArrays:  # noqa: ANN001 (sklearn Pipeline)
        scaler, lr = pipe[0], pipe[-1]
        return cls(scaler.mean_.copy(), scaler.scale_.copy(), lr.coef_[0].copy(), float(lr.intercept_[0]))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = ((np.asarray(X, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p, p])


def save_baselines(base: Baselines, path: Path, key: str) -> None:
    """Write baselines fitted by scikit-learn as arrays (atomically); ``key`` says what they were fitted on."""
    from spywatch.atomic import atomic_write

    arrays: dict[str, np.ndarray] = {"key": np.array(key), "prior": np.asarray(base.prior, dtype=np.float64)}
    for h, (rf, lr) in enumerate(zip(base.random_forest, base.logistic)):
        f, g = ForestArrays.from_sklearn(rf), LogisticArrays.from_sklearn(lr)
        arrays.update({f"rf{h}_{k}": getattr(f, k) for k in ("left", "right", "feature", "threshold", "p1")})
        arrays.update({f"lr{h}_mean": g.mean, f"lr{h}_scale": g.scale, f"lr{h}_coef": g.coef,
                       f"lr{h}_intercept": np.array(g.intercept)})
    for h, lr in enumerate(base.vol_logistic or []):
        g = LogisticArrays.from_sklearn(lr)
        arrays.update({f"vl{h}_mean": g.mean, f"vl{h}_scale": g.scale, f"vl{h}_coef": g.coef,
                       f"vl{h}_intercept": np.array(g.intercept)})
    arrays["vol_columns"] = np.asarray(base.vol_columns, dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    atomic_write(path, write)


def load_baselines(path: Path, key: str) -> Baselines | None:
    """Baselines saved under ``key``; None when the file is missing, unreadable or for another fit."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            n = len(z["prior"])
            rfs = [ForestArrays(*(z[f"rf{h}_{k}"] for k in ("left", "right", "feature", "threshold", "p1")))
                   for h in range(n)]
            lrs = [LogisticArrays(z[f"lr{h}_mean"], z[f"lr{h}_scale"], z[f"lr{h}_coef"],
                                  float(z[f"lr{h}_intercept"])) for h in range(n)]
            vol_columns = tuple(int(c) for c in z["vol_columns"]) if "vol_columns" in z else ()
            vls = [LogisticArrays(z[f"vl{h}_mean"], z[f"vl{h}_scale"], z[f"vl{h}_coef"],
                                  float(z[f"vl{h}_intercept"])) for h in range(n)] if vol_columns else None
            return Baselines(random_forest=rfs, logistic=lrs, prior=z["prior"].copy(), vol_logistic=vls,
                             vol_columns=vol_columns)
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def fit_or_load_baselines(X: np.ndarray, y: np.ndarray, cache: Path | None, tag: str,
                          config: BaselineConfig = BaselineConfig(), seed: int = 0,
                          vol_columns: tuple[int, ...] = ()) -> Baselines:
    """``fit_baselines``, kept in ``cache`` under a key of (``tag``, the data, the config, the seed)."""
    if cache is None:
        return fit_baselines(X, y, config, seed, vol_columns)
    import hashlib

    import sklearn

    h = hashlib.sha256(f"{tag}|{config}|{seed}|sklearn {sklearn.__version__}|{X.shape}|{y.shape}|"
                       f"vol {list(vol_columns)}".encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    key = h.hexdigest()
    found = load_baselines(cache, key)
    if found is not None:
        return found
    base = fit_baselines(X, y, config, seed, vol_columns)
    save_baselines(base, cache, key)
    return base
