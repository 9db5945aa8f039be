"""Baselines kept as arrays between nights: the same probabilities as scikit-learn, never unpickled,
refitted when the data, the config or the file is not what the key says."""

from __future__ import annotations

import numpy as np
import pytest

import spywatch.baselines as baselines_mod
from spywatch.baselines import BaselineConfig, fit_baselines, fit_or_load_baselines, load_baselines

CONFIG = BaselineConfig(rf_trees=25)


def _data(seed: int = 0, n: int = 900) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 5] = np.round(X[:, 5], 1)  # ties at split thresholds
    logits = np.column_stack([X[:, 0] - 2, X[:, 0] + X[:, 1] - 0.7, X[:, 1] * 2])
    y = (rng.random((n, 3)) < 1 / (1 + np.exp(-logits))).astype(float)
    return X, y


def test_arrays_predict_what_sklearn_predicts(tmp_path):
    X, y = _data()
    fitted = fit_baselines(X, y, CONFIG, seed=0)
    path = tmp_path / "b.npz"
    baselines_mod.save_baselines(fitted, path, key="k")
    loaded = load_baselines(path, "k")
    assert loaded is not None
    X_new, _ = _data(seed=1, n=300)
    X_new = np.vstack([X_new, X[:50]])  # values equal to training values sit on thresholds
    want, got = fitted.predict(X_new), loaded.predict(X_new)
    for name in ("random_forest", "logistic", "prior"):
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-12, err_msg=name)
    assert want["random_forest"].std() > 0.01  # a real forest, not a constant


def test_the_cache_is_reused_and_refitted_when_anything_changes(tmp_path, monkeypatch):
    X, y = _data()
    cache = tmp_path / "cache" / "baselines.npz"
    first = fit_or_load_baselines(X, y, cache, tag="v1", config=CONFIG)
    assert cache.exists()

    calls = []
    real_fit = baselines_mod.fit_baselines
    monkeypatch.setattr(baselines_mod, "fit_baselines", lambda *a, **k: calls.append(a) or real_fit(*a, **k))
    again = fit_or_load_baselines(X, y, cache, tag="v1", config=CONFIG)
    assert calls == []  # loaded, not refitted
    np.testing.assert_allclose(again.predict(X[:20])["random_forest"], first.predict(X[:20])["random_forest"],
                               atol=1e-12)

    fit_or_load_baselines(X, y, cache, tag="v2", config=CONFIG)  # another champion
    X2 = X.copy()
    X2[0, 0] += 1e-9
    fit_or_load_baselines(X2, y, cache, tag="v2", config=CONFIG)  # other data
    fit_or_load_baselines(X2, y, cache, tag="v2", config=BaselineConfig(rf_trees=26))  # other config
    assert len(calls) == 3
    cache.write_bytes(cache.read_bytes()[:100])  # a torn or damaged file is refitted, not trusted
    fit_or_load_baselines(X2, y, cache, tag="v2", config=CONFIG)
    assert len(calls) == 4 and load_baselines(cache, "nope") is None


def test_no_pickle_in_the_file(tmp_path):
    X, y = _data()
    path = tmp_path / "b.npz"
    baselines_mod.save_baselines(fit_baselines(X, y, CONFIG), path, key="k")
    with np.load(path, allow_pickle=False) as z:  # would raise on an object array
        assert all(z[name].dtype != object for name in z.files)
    with pytest.raises(FileNotFoundError):
        np.load(tmp_path / "missing.npz")
    assert load_baselines(tmp_path / "missing.npz", "k") is None
