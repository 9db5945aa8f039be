"""PatchTST: shapes, learning, the collapse check, and the artifact round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from spywatch.artifact import ArtifactError
from spywatch.audit import check_collapse, horizon_metrics
from spywatch.bundle import FitSpec, ModelBundle, fit_bundle
from spywatch.dataset import build_table
from spywatch.market_data import synthetic_bars
from spywatch.model import PatchTSTClassifier, PatchTSTConfig, attention_entropy_ratio
from spywatch.train import TrainConfig, Windows, inspect, make_windows, train_model


@pytest.mark.parametrize("overrides", [
    {},
    {"norm": "batchnorm"},
    {"revin": True},
    {"head": "flatten"},
    {"head_skip": False},
    {"pad_end": False, "patch_len": 5, "stride": 5},
    {"lookback": 60, "patch_len": 8, "stride": 4, "d_model": 32, "n_heads": 4, "n_layers": 3},
])
def test_shapes(overrides):
    cfg = PatchTSTConfig(n_channels=7, n_outputs=3, **{"lookback": 20, **overrides})
    model = PatchTSTClassifier(cfg).eval()
    x = torch.randn(5, cfg.lookback, 7)
    out = model.forward_with_details(x)
    assert out.logits.shape == (5, 3)
    assert len(out.attention) == cfg.n_layers
    assert out.attention[0].shape == (5, 7, cfg.n_heads, cfg.n_patches, cfg.n_patches)
    assert torch.allclose(out.attention[0].sum(-1), torch.ones(()), atol=1e-5)  # rows are distributions
    rep_dim = 7 * cfg.d_model * (cfg.n_patches if cfg.head == "flatten" else 1) + (7 if cfg.head_skip else 0)
    assert out.representation.shape == (5, rep_dim)
    assert out.patch_embedding.shape == (5, 7, cfg.n_patches, cfg.d_model)
    assert torch.equal(model(x), out.logits)


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=4"):
        PatchTSTConfig(n_channels=3, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="norm='group'"):
        PatchTSTConfig(n_channels=3, norm="group")
    with pytest.raises(ValueError, match=r"expected input \(B, 20, 3\)"):
        PatchTSTClassifier(PatchTSTConfig(n_channels=3))(torch.randn(2, 20, 4))


def test_positional_encoding_init_small_vs_original_randn():
    x = torch.randn(64, 20, 5)
    small = PatchTSTClassifier(PatchTSTConfig(n_channels=5))
    big = PatchTSTClassifier(PatchTSTConfig(n_channels=5, pos_init="randn"))
    assert small.pos.abs().max() <= 0.02
    assert small.pos_to_content_ratio(x) < 0.2 < 1.0 < big.pos_to_content_ratio(x)


def test_tiny_model_overfits_a_small_batch():
    torch.manual_seed(0)
    x = torch.randn(32, 20, 4)
    y = (torch.rand(32, 3) < 0.5).float()
    model = PatchTSTClassifier(PatchTSTConfig(n_channels=4, dropout=0.0, head_dropout=0.0, d_model=32, n_heads=4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert float(loss.detach()) < 0.05
    assert ((model(x) > 0).float() == y).all()


def test_make_windows_has_no_look_ahead_and_skips_incomplete():
    idx = pd.bdate_range("2024-01-01", periods=30)
    inputs = pd.DataFrame({"a": np.arange(30.0), "b": np.arange(30.0) * 2}, index=idx)
    inputs.iloc[3, 0] = np.nan
    targets = pd.DataFrame({"y_h1": np.arange(30) % 2}, index=idx, dtype="float32")
    w = make_windows(inputs, targets, lookback=5)
    assert w.X.shape[1:] == (5, 2)
    assert w.dates[0] == idx[8]  # first window without the NaN at row 3
    assert w.X[0, -1, 0] == 8.0 and w.X[0, 0, 0] == 4.0  # ends at t, starts at t-4
    assert w.y[0, 0] == targets.iloc[8, 0]


def test_collapse_check_flags_constant_predictor_and_passes_a_good_one():
    rng = np.random.default_rng(0)
    n = 500
    y = (rng.random((n, 3)) < [0.12, 0.32, 0.46]).astype(float)
    prior = np.array([0.12, 0.32, 0.46])
    constant = np.tile(prior, (n, 1)) + rng.normal(0, 1e-4, (n, 3))
    bad = check_collapse(constant, ["h1", "h3", "h5"], prior, y, attention_entropy_ratio=0.9999,
                         representation_std=1e-5, pos_to_content_ratio=2.0)
    assert bad.verdict == "collapsed" and bad.collapsed_horizons == ["h1", "h3", "h5"]
    assert bad.causes[:3] == ["positional_encoding_dominates", "degenerate_attention", "class_imbalance"]
    assert any("prediction std" in f for f in bad.findings)

    good_p = np.clip(prior + 0.25 * (y - prior) + rng.normal(0, 0.08, (n, 3)), 0.01, 0.99)
    good = check_collapse(good_p, ["h1", "h3", "h5"], prior, y, attention_entropy_ratio=0.9,
                          representation_std=0.5, pos_to_content_ratio=0.1,
                          feature_shift_std={"ret_1": 0.1, "vol_20": -0.4})
    assert good.verdict == "healthy" and good.cause is None and not good.findings

    shifted = check_collapse(good_p, ["h1", "h3", "h5"], prior, y, feature_shift_std={"Close": 6.5, "ret_1": 0.1})
    assert shifted.verdict == "inputs_out_of_range" and shifted.cause == "feature_shift"
    assert "Close +6.5 std" in shifted.findings[0]

    collapsed_shifted = check_collapse(constant, ["h1", "h3", "h5"], prior, y, feature_shift_std={"Close": 9.0})
    assert collapsed_shifted.verdict == "collapsed" and collapsed_shifted.cause == "feature_shift"


def test_attention_entropy_ratio_uniform_is_one():
    uniform = torch.full((2, 3, 2, 5, 5), 0.2)
    peaked = torch.zeros(2, 3, 2, 5, 5)
    peaked[..., 0] = 1.0
    assert attention_entropy_ratio([uniform]) == pytest.approx(1.0)
    assert attention_entropy_ratio([peaked]) < 0.01


def test_metrics_are_sane():
    y = np.array([0, 0, 1, 1, 0, 1.0])
    m = horizon_metrics(y, np.array([0.1, 0.2, 0.8, 0.7, 0.3, 0.9]))
    assert m["auc"] == 1.0 and m["base_rate"] == 0.5 and 0 <= m["ece"] <= 1 and m["brier"] < 0.1


@pytest.fixture(scope="module")
def small_bundle():
    bars = synthetic_bars("2003-12-31")
    table = build_table(bars)
    spec = FitSpec(train_end="2003-12-31", model={"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16,
                                                  "head_hidden": 16})
    return table, fit_bundle(table, spec, TrainConfig(max_epochs=3, patience=2, batch_size=128))


def test_fit_bundle_trains_and_records_metrics(small_bundle):
    table, bundle = small_bundle
    m = bundle.metrics
    assert 1 <= m["epochs"] <= 3 and m["samples"]["fit"] > 1000 and m["samples"]["val"] > 200
    assert set(m["validation"]) == {"h1", "h3", "h5"} and m["peak_rss_mb"] > 0
    assert len(m["validation_predictions"]["h1"]) == m["samples"]["val"]
    fit_end, val_start = pd.Timestamp(m["periods"]["fit"][1]), pd.Timestamp(m["periods"]["val"][0])
    gap = table.index.get_loc(val_start) - table.index.get_loc(fit_end) - 1
    assert gap == 5  # embargo of the longest horizon between fit and validation
    preds = bundle.predict(table, "2003-06-01", "2003-12-31")
    assert list(preds.columns) == ["h1", "h3", "h5"] and ((preds > 0) & (preds < 1)).all().all()


def test_bundle_round_trip_and_tamper_refusal(tmp_path, small_bundle):
    table, bundle = small_bundle
    path = bundle.save(tmp_path / "v1")
    loaded = ModelBundle.load(path)
    pd.testing.assert_frame_equal(loaded.predict(table, "2003-06-01"), bundle.predict(table, "2003-06-01"))
    assert loaded.scaler == bundle.scaler and loaded.targets == bundle.targets
    assert loaded.scaler.features == bundle.scaler.features  # column order survives sorted-key JSON
    with pytest.raises(ArtifactError, match="exists"):
        bundle.save(path)  # never overwritten

    weights = path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="weights.pt"):
        ModelBundle.load(path)
    weights.write_bytes(bytes(data[:100]))
    with pytest.raises(ArtifactError, match="weights.pt"):
        ModelBundle.load(path)


def test_train_model_early_stops_and_reports_resources():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 10, 3)).astype("float32")
    y = (X[:, -1, :1] + 0.5 * rng.normal(size=(600, 1)) > 0).astype("float32").repeat(2, axis=1)
    dates = pd.bdate_range("2020-01-01", periods=600)
    tr, va = Windows(X[:450], y[:450], dates[:450]), Windows(X[450:], y[450:], dates[450:])
    cfg = PatchTSTConfig(n_channels=3, n_outputs=2, lookback=10, d_model=8, n_heads=2, n_layers=1, d_ff=16)
    res = train_model(tr, va, cfg, TrainConfig(max_epochs=60, patience=3, batch_size=64, lr=3e-3))
    assert res.best_epoch < len(res.history) <= 60
    assert res.device == "cpu" and res.seconds > 0 and res.peak_rss_mb > 0
    ins = inspect(res.model, va.X)
    auc = horizon_metrics(va.y[:, 0], ins.proba[:, 0])["auc"]
    assert auc > 0.7, f"a learnable signal should be learned, AUC {auc}"
