"""Paired block-bootstrap comparisons: the AUC arithmetic, the resampling, and what the interval says."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from spywatch.comparison import (BootstrapConfig, auc_interval, block_weights, brier_interval, compare, labelled_auc,
                                 paired_auc, paired_brier, session_log_loss, weighted_auc)

H = ["h1", "h3", "h5"]


def _data(n=300, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.15, 0.35, 0.5]).astype(float)
    p = 1 / (1 + np.exp(-(signal * y + rng.normal(size=(n, 3)))))
    return y, p, rng


def test_weighted_auc_matches_scikit_learn_with_ties_and_resampled_sessions():
    y, p, rng = _data()
    coarse = np.round(p[:, 0], 1)  # many ties
    assert weighted_auc(y[:, 0], coarse, np.ones((1, len(y))))[0] == pytest.approx(roc_auc_score(y[:, 0], coarse))
    w = block_weights(len(y), BootstrapConfig(n_boot=100, block=7, seed=1))
    for b in (0, 17, 99):
        idx = np.repeat(np.arange(len(y)), w[b].astype(int))
        assert weighted_auc(y[:, 0], coarse, w[b:b + 1])[0] == pytest.approx(roc_auc_score(y[idx, 0], coarse[idx]))
    assert np.isnan(weighted_auc(np.zeros(10), rng.random(10), np.ones((1, 10))))[0]  # one class: no AUC


def test_block_bootstrap_resamples_whole_blocks_of_sessions():
    w = block_weights(100, BootstrapConfig(n_boot=200, block=10, seed=0))
    assert w.shape == (200, 100) and (w.sum(axis=1) == 100).all()
    # circular blocks: each resample is ceil(100/10) runs of 10 consecutive sessions (mod 100)
    row = np.repeat(np.arange(100), w[0].astype(int))
    assert len(row) == 100
    with pytest.raises(ValueError, match="block"):
        BootstrapConfig(block=0)
    with pytest.raises(ValueError, match="n_boot"):
        BootstrapConfig(n_boot=10)


def test_a_model_compared_with_itself_differs_by_exactly_zero():
    y, p, _ = _data()
    c = compare(y, p, p, H, metric="mean_auc")
    assert c.estimate == 0 and c.ci_low == 0 and c.ci_high == 0 and c.p_a_better == 0 and not c.significant


def test_a_better_model_is_found_better_and_a_noisy_one_is_not():
    y, p, rng = _data(seed=2)
    worse = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + 1.5 * rng.normal(size=p.shape))))
    c = compare(y, p, worse, H, metric="mean_auc", a="model", b="noisier")
    assert c.significant and c.ci_low <= c.estimate <= c.ci_high and c.p_a_better > 0.95
    assert c.by_horizon["h1"]["diff"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]) - roc_auc_score(y[:, 0], worse[:, 0]))
    ll = compare(y, p, worse, H, metric="log_loss")
    assert ll.estimate > 0 and ll.estimate == pytest.approx(
        np.mean([session_log_loss(y[:, j], worse[:, j]).mean() - session_log_loss(y[:, j], p[:, j]).mean()
                 for j in range(3)]))
    # two equally good models with independent noise: the interval straddles zero
    other = 1 / (1 + np.exp(-(1.0 * y + rng.normal(size=y.shape))))
    tie = compare(y, p, other, H)
    assert tie.ci_low < 0 < tie.ci_high


def test_longer_blocks_widen_the_interval_for_autocorrelated_differences():
    rng = np.random.default_rng(5)
    n = 500
    y = (rng.random((n, 1)) < 0.4).astype(float)
    # the two models trade places in long stretches (regimes): sessions are not independent
    regime = np.repeat(rng.normal(size=n // 50), 50)[:, None]
    a = 1 / (1 + np.exp(-(y + rng.normal(size=(n, 1)) + regime * (2 * y - 1))))
    b = 1 / (1 + np.exp(-(y + rng.normal(size=(n, 1)) - regime * (2 * y - 1))))
    iid = compare(y, a, b, ["h1"], config=BootstrapConfig(block=1))
    blocks = compare(y, a, b, ["h1"], config=BootstrapConfig(block=50))
    assert (blocks.ci_high - blocks.ci_low) > 1.3 * (iid.ci_high - iid.ci_low)


def test_single_class_horizons_are_skipped_and_bad_shapes_refused():
    y, p, _ = _data()
    y[:, 0] = 0
    c = compare(y, p, p * 0.9, H)
    assert c.skipped_horizons == ["h1"] and set(c.by_horizon) == {"h3", "h5"}
    with pytest.raises(ValueError, match="disagree"):
        compare(y, p[:, :2], p, H)
    with pytest.raises(ValueError, match="too few"):
        compare(y[:15], p[:15], p[:15], H)
    with pytest.raises(ValueError, match="no horizon has both classes"):
        compare(np.zeros_like(y), p, p, H)
    with pytest.raises(ValueError, match="metric"):
        compare(y, p, p, H, metric="accuracy")


def test_resamples_without_a_horizon_of_both_classes_are_left_out_counted_and_warn_nothing():
    # A month of sessions, one positive in one horizon (the others single-class): many resamples
    # miss that session, so no horizon has both classes there; those have no difference.
    y, p, _ = _data(n=22, seed=3)
    y[:] = 0
    y[5, 1] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = compare(y, p, p * 0.9 + 0.05, H, config=BootstrapConfig(n_boot=500, block=5))
    assert c.skipped_horizons == ["h1", "h5"]
    assert 0 < c.resamples < 500 and np.isfinite([c.ci_low, c.ci_high]).all()
    assert compare(*_data()[:2], _data()[1] * 0.9, H).resamples == BootstrapConfig().n_boot  # the ordinary case


def test_one_models_auc_interval_covers_its_estimate():
    y, p, _ = _data()
    out = auc_interval(y[:, 2], p[:, 2])
    assert out["ci"][0] <= out["auc"] <= out["ci"][1] and out["n"] == len(y)
    assert auc_interval(np.zeros(50), p[:50, 0])["auc"] is None


def test_brier_intervals_cover_their_estimate_and_the_paired_difference_favours_the_better_model():
    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.3).astype(float)
    sharp = np.clip(0.3 + 0.5 * (y - 0.3) + 0.1 * rng.normal(size=400), 0.01, 0.99)
    vague = np.full(400, 0.3)
    config = BootstrapConfig(block=10)
    one = brier_interval(y, sharp, config)
    assert one["n"] == 400 and one["brier"] == pytest.approx(np.mean((y - sharp) ** 2))
    assert one["ci"][0] <= one["brier"] <= one["ci"][1]
    d = paired_brier(y, sharp, vague, config)  # Brier(vague) - Brier(sharp): positive favours sharp
    assert d["estimate"] == pytest.approx(np.mean((y - vague) ** 2) - np.mean((y - sharp) ** 2))
    assert d["estimate"] > 0 and d["ci_low"] > 0 and d["p_a_better"] > 0.95
    assert paired_brier(y[:15], sharp[:15], vague[:15], config) is None  # fewer than two blocks
    assert brier_interval(y[:15], sharp[:15], config)["brier"] is None


def test_the_paired_auc_record_is_the_comparison_or_none_where_it_cannot_say():
    y, p, rng = _data(seed=4)
    worse = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + rng.normal(size=p.shape))))
    dates = np.arange("2020-01-01", 300, dtype="datetime64[D]")
    record = paired_auc(y, p, worse, H, dates, BootstrapConfig())
    c = compare(y, p, worse, H, dates)
    assert record == {"estimate": c.estimate, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_a_better": c.p_a_better,
                      "a": c.a_value, "b": c.b_value, "n": c.n_sessions, "span": c.span}
    one = paired_auc(y[:, 2], p[:, 2], worse[:, 2], ["h5"], dates, BootstrapConfig())  # one horizon, (n,) arrays
    assert one["estimate"] == pytest.approx(c.by_horizon["h5"]["diff"])
    assert paired_auc(y[:15], p[:15], worse[:15], H, dates[:15], BootstrapConfig()) is None  # fewer than two blocks
    assert paired_auc(np.zeros_like(y), p, worse, H, dates, BootstrapConfig()) is None  # one class everywhere


def test_labelled_auc_scores_the_labelled_sessions_or_says_nothing():
    y, p, _ = _data()
    labels = y[:, 2].copy()
    labels[:50] = np.nan  # not matured
    assert labelled_auc(labels, p[:, 2]) == round(roc_auc_score(y[50:, 2], p[50:, 2]), 4)
    assert labelled_auc(labels[:59], p[:59, 2]) is None  # 9 labels
    assert labelled_auc(np.zeros(40), p[:40, 2]) is None  # one class
