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
    diverged = horizon_metrics(y, np.array([0.1, np.nan, 0.8, 0.7, 0.3, 0.9]))  # a NaN model is scored, not raised
    assert diverged["n"] == 6 and np.isnan(diverged["auc"]) and np.isnan(diverged["brier"])


@pytest.fixture(scope="module")
def small_bundle():
    bars = synthetic_bars("2003-12-31")
    table = build_table(bars)
    spec = FitSpec(train_end="2002-12-20", recipe="recent_val", val_sessions=250, members=2,
                   holdout=("2003-01-02", "2003-12-23"),
                   model={"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16})
    return table, fit_bundle(table, spec, TrainConfig(max_epochs=3, patience=2, batch_size=128))


def test_fit_bundle_trains_and_records_metrics(small_bundle):
    table, bundle = small_bundle
    m = bundle.metrics
    assert len(bundle.model) == 2 and [x["seed"] for x in m["members"]] == [0, 1]
    assert all(1 <= x["epochs"] <= 3 for x in m["members"]) and m["samples"]["fit"] > 1000
    assert m["samples"]["val"] == 250 and m["peak_rss_mb"] > 0
    assert set(m["validation"]) == {"h1", "h3", "h5"} and set(m["holdout"]) == {"h1", "h3", "h5"}
    assert len(m["holdout_member_auc"]) == 2
    # the drift reference for the champion's outputs is its holdout (out of sample), not its fit
    assert m["reference_predictions"] == "holdout"
    assert len(m["validation_predictions"]["h1"]) == len(bundle.windows(table, "2003-01-02", "2003-12-23").labelled())
    periods = bundle.periods
    fit_end, val_start = pd.Timestamp(periods["fit"][1]), pd.Timestamp(periods["val"][0])
    gap = table.index.get_loc(val_start) - table.index.get_loc(fit_end) - 1
    assert gap == 5  # embargo of the longest horizon between fit and validation
    assert periods["val"][1] == "2002-12-20" and periods["holdout"] == ["2003-01-02", "2003-12-23"]
    assert bundle.data_end == pd.Timestamp("2003-12-23")
    preds = bundle.predict(table, "2003-06-01", "2003-12-31")
    assert list(preds.columns) == ["h1", "h3", "h5"] and ((preds > 0) & (preds < 1)).all().all()


def test_fit_recipes_pin_their_spans():
    from spywatch.bundle import fit_periods

    table = build_table(synthetic_bars("2003-12-31"))
    first = table.features.dropna().index[0]
    idx = table.index
    full = fit_periods(idx, first, FitSpec(train_end="2002-12-20"), 5)
    assert full.fit == (first, pd.Timestamp("2002-12-20")) and full.val is None  # every labelled session, no val
    recent = fit_periods(idx, first, FitSpec(train_end="2002-12-20", recipe="recent_val", val_sessions=100), 5)
    assert recent.val[1] == pd.Timestamp("2002-12-20")
    assert idx.get_loc(recent.val[1]) - idx.get_loc(recent.val[0]) + 1 == 100
    assert idx.get_loc(recent.val[0]) - idx.get_loc(recent.fit[1]) - 1 == 5
    legacy = fit_periods(idx, first, FitSpec(train_end="2002-12-20", recipe="legacy"), 5)
    n = idx.get_loc(pd.Timestamp("2002-12-20")) - idx.get_loc(first) + 1
    assert abs((idx.get_loc(legacy.val[1]) - idx.get_loc(legacy.val[0]) + 1) - 0.2 * n) <= 1
    with pytest.raises(ValueError, match="embargo is 5"):
        fit_periods(idx, first, FitSpec(train_end="2002-12-20", holdout=("2002-12-23", "2003-06-30")), 5)
    with pytest.raises(ValueError, match="recipe"):
        FitSpec(train_end="2002-12-20", recipe="everything")


def test_bundle_round_trip_and_tamper_refusal(tmp_path, small_bundle):
    table, bundle = small_bundle
    path = bundle.save(tmp_path / "v1")
    loaded = ModelBundle.load(path)
    assert len(loaded.model) == 2
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


# ----------------------------------------------------------------------------- ensemble, dropout, encoder check


def test_ensemble_averages_its_members_probabilities_and_reports_their_spread(small_bundle):
    from spywatch.train import predict_members, predict_proba

    table, bundle = small_bundle
    w = bundle.windows(table, "2003-06-01", "2003-12-31")
    each = predict_members(bundle.model, w.X)
    assert each.shape == (2, len(w), 3)
    with torch.no_grad():
        alone = torch.sigmoid(bundle.model.members[1](torch.from_numpy(w.X))).numpy()
    np.testing.assert_allclose(each[1], alone, atol=1e-6)
    np.testing.assert_allclose(predict_proba(bundle.model, w.X), each.mean(axis=0), atol=1e-7)
    ins = inspect(bundle.model, w.X)
    assert ins.member_proba.shape == (2, len(w), 3) and np.allclose(ins.proba, each.mean(axis=0), atol=1e-6)
    assert each.std(axis=0).mean() > 0  # two seeds do not agree exactly


def test_a_single_model_saved_before_ensembles_loads_as_an_ensemble_of_one(tmp_path, small_bundle):
    import json

    from spywatch.artifact import write_artifact

    table, bundle = small_bundle
    files = bundle.files()
    single = bundle.model.members[0]
    import io

    buf = io.BytesIO()
    torch.save(single.state_dict(), buf)
    config = json.loads(files["config.json"])
    del config["ensemble"]
    files.update({"weights.pt": buf.getvalue(), "config.json": json.dumps(config).encode()})
    path = write_artifact(tmp_path / "old", files, meta={"kind": "patchtst"})
    loaded = ModelBundle.load(path)
    assert len(loaded.model) == 1
    w = bundle.windows(table, "2003-06-01", "2003-12-31")
    with torch.no_grad():
        expected = torch.sigmoid(single(torch.from_numpy(w.X))).numpy()
    np.testing.assert_allclose(loaded.predict(table, "2003-06-01", "2003-12-31").to_numpy(), expected, atol=1e-6)


def test_dropout_draws_a_bernoulli_mask_with_the_right_rate_and_scale():
    from spywatch.model import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.2).train()
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y > 0
    assert abs(kept.float().mean().item() - (1 - 51 / 256)) < 0.005  # p rounded to 51/256
    assert torch.allclose(y[kept], torch.full_like(y[kept], 256 / 205))  # inverted scaling keeps E[y] = x
    assert abs(y.mean().item() - 1.0) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask and scale
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    torch.manual_seed(3)
    a = Dropout(0.3).train()(torch.ones(1000))
    torch.manual_seed(3)
    assert torch.equal(a, Dropout(0.3).train()(torch.ones(1000)))  # seeded runs repeat
    with pytest.raises(ValueError, match="dropout p=1.0"):
        Dropout(1.0)


def test_representation_check_reads_the_encoder_only_and_fires_on_a_dead_encoder(small_bundle):
    import copy

    table, bundle = small_bundle
    w = bundle.windows(table, "2003-06-01", "2003-12-31")
    healthy = inspect(bundle.model, w.X)
    assert healthy.representation_std > 1e-3
    dead = copy.deepcopy(bundle.model)
    for member in dead.members:
        with torch.no_grad():  # the encoder's last LayerNorm outputs 0 for every sample
            member.final_norm.weight.zero_()
            member.final_norm.bias.zero_()
    ins = inspect(dead, w.X)
    assert ins.representation_std == 0.0
    with torch.no_grad():  # the head's skip inputs still differ between samples: the old check was blind
        full = dead.members[0].forward_with_details(torch.from_numpy(w.X)).representation.numpy()
    assert full.std(axis=0).mean() > 1e-3
    verdict = check_collapse(ins.proba, bundle.horizons, bundle.prior, w.y, ins.attention_entropy_ratio,
                             ins.representation_std, ins.pos_to_content_ratio)
    assert verdict.collapsed and any("representation std" in f for f in verdict.findings)


# ----------------------------------------------------------------------------- the stacked (fast) path

STACK_CONFIGS = [dict(n_channels=6), dict(n_channels=6, stride=2, n_layers=2),
                 dict(n_channels=5, head="flatten", revin=True, n_layers=1),
                 dict(n_channels=4, n_heads=4, d_model=16, head_skip=False, pad_end=False)]


@pytest.mark.parametrize("overrides", STACK_CONFIGS, ids=["default", "stride2_layers2", "flatten_revin",
                                                          "four_heads_no_skip"])
@pytest.mark.parametrize("k", [1, 3])
def test_the_stack_computes_what_its_members_compute_forward_and_backward(overrides, k):
    from spywatch.model import PatchTSTStack

    torch.manual_seed(0)
    cfg = PatchTSTConfig(**overrides)
    members = [PatchTSTClassifier(cfg).eval() for _ in range(k)]
    stack = PatchTSTStack.from_members(members).eval()
    x = torch.randn(48, cfg.lookback, cfg.n_channels)
    y = (torch.rand(48, cfg.n_outputs) < 0.3).float()

    ref = torch.stack([m.forward_with_details(x, need_weights=True).logits for m in members])
    out = stack.forward_with_details(x, need_weights=True)
    torch.testing.assert_close(out.logits, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stack(x), ref, atol=1e-5, rtol=1e-5)  # the fused attention, without weights
    for i, m in enumerate(members):  # the audit's inputs: attention weights and the encoder's pooled output
        detail = m.forward_with_details(x, need_weights=True)
        for w_stack, w_ref in zip(out.attention, detail.attention):
            torch.testing.assert_close(w_stack[i], w_ref, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out.encoder_representation[i], detail.encoder_representation, atol=1e-5, rtol=1e-5)

    # the same gradients on a fixed batch: the stack's loss is the sum of its members' losses
    loss = torch.nn.functional.binary_cross_entropy_with_logits
    sum(loss(m(x), y) for m in members).backward()
    sum(loss(logits, y) for logits in stack(x)).backward()
    for i, m in enumerate(members):
        for stacked_param, member_param, transposed in stack._pairs(m):
            expected = member_param.grad.T if transposed else member_param.grad
            torch.testing.assert_close(stacked_param.grad[i].reshape(expected.shape), expected, atol=1e-6, rtol=1e-4)

    # and back: the members a stack hands out are the members it was built from
    for a, b in zip(stack.to_members(), members):
        torch.testing.assert_close(a(x), b(x))


def test_the_stack_clips_each_members_gradient_on_its_own():
    from spywatch.model import PatchTSTStack

    torch.manual_seed(1)
    cfg = PatchTSTConfig(n_channels=3)
    members = [PatchTSTClassifier(cfg).eval() for _ in range(2)]  # eval: no dropout, the same function
    stack = PatchTSTStack.from_members(members).eval()
    x = torch.randn(16, cfg.lookback, 3)
    scale = torch.tensor([100.0, 0.01])  # one member's gradient far above the limit, the other's far below
    (stack(x).sum(dim=(1, 2)) * scale).sum().backward()
    for m, s in zip(members, scale):
        (m(x).sum() * s).backward()
    norms = stack.clip_grad_norm_(1.0)
    for i, m in enumerate(members):
        assert float(norms[i]) == pytest.approx(float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)), rel=1e-4)
        for stacked_param, member_param, transposed in stack._pairs(m):
            expected = member_param.grad.T if transposed else member_param.grad
            torch.testing.assert_close(stacked_param.grad[i].reshape(expected.shape), expected, atol=1e-6, rtol=1e-4)
    assert float(norms[0]) > 1.0 > float(norms[1])


def test_a_stacked_ensemble_trains_its_members_as_they_train_alone():
    """Without dropout the only randomness is the init and the shuffle, both drawn from each
    member's seed: the stacked training lands where each member lands trained alone."""
    from spywatch.train import train_ensemble

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 20, 4)).astype("float32")
    y = (rng.random((400, 3)) < 0.3).astype("float32")
    w = Windows(X, y, pd.date_range("2001-01-01", periods=400))
    cfg = PatchTSTConfig(n_channels=4, dropout=0.0, head_dropout=0.0)
    train = TrainConfig(max_epochs=3, batch_size=64, seed=5)
    stacked = train_ensemble(w, None, cfg, train, 3)
    alone = [train_model(w, None, cfg, TrainConfig(max_epochs=3, batch_size=64, seed=5 + i)) for i in range(3)]
    xt = torch.from_numpy(X[:64])
    with torch.no_grad():
        for s, a in zip(stacked.members, alone):
            torch.testing.assert_close(s.model(xt), a.model(xt), atol=2e-4, rtol=1e-3)
            assert [h["train_loss"] for h in s.history] == pytest.approx([h["train_loss"] for h in a.history], rel=1e-4)
    reference = train_ensemble(w, None, cfg, TrainConfig(max_epochs=3, batch_size=64, seed=5, stacked=False), 3)
    with torch.no_grad():
        torch.testing.assert_close(stacked.model.proba(xt), reference.model.proba(xt), atol=2e-4, rtol=1e-3)


def test_stacked_early_stopping_keeps_each_members_best_epoch():
    from spywatch.train import train_ensemble

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 20, 3)).astype("float32")
    y = (rng.random((300, 3)) < 0.3).astype("float32")  # noise: validation loss turns up early
    dates = pd.date_range("2001-01-01", periods=300)
    train, val = Windows(X[:220], y[:220], dates[:220]), Windows(X[220:], y[220:], dates[220:])
    cfg = PatchTSTConfig(n_channels=3, dropout=0.0, head_dropout=0.0)
    result = train_ensemble(train, val, cfg, TrainConfig(max_epochs=30, batch_size=32, patience=2, lr=1e-2), 2)
    for member in result.members:
        losses = [h["val_loss"] for h in member.history]
        assert member.best_epoch == 1 + int(np.argmin(losses[:member.best_epoch + 2]))
        assert member.best_val_loss == pytest.approx(min(losses[:member.best_epoch]))
    assert len(result.members[0].history) < 30  # stopped once every member ran out of patience


def test_cpu_threads_rule(monkeypatch):
    """Asked for: that many (a fleet worker's share); OMP_NUM_THREADS set: that (a bench sharing the
    host); else every core this process may run on (the old cap of 2 left most of a big host idle)."""
    import os

    from spywatch.train import TrainConfig, cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert cpu_threads() == 16 and cpu_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1 and cpu_threads(4) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert cpu_threads() == 16
    assert TrainConfig().amp is False  # fp32 on CUDA: the H200 measurement (bench/results/gpu_2026-12-04/)


def test_a_fleet_stack_trains_each_job_as_it_trains_alone():
    """Two tickers of different lengths and priors in one stack (tickers x members on the leading
    axis): each slot's forward and gradient on a batch are its own model's, and after training each
    ticker's members land where the same ticker trained alone lands (no dropout)."""
    from spywatch.train import StackJob, train_fleet, train_stack

    rng = np.random.default_rng(1)
    cfg = PatchTSTConfig(n_channels=4, dropout=0.0, head_dropout=0.0)
    jobs = []
    for n, rate in ((400, 0.3), (230, 0.6)):
        X = rng.standard_normal((n, 20, 4)).astype("float32")
        y = (rng.random((n, 3)) < rate).astype("float32")
        jobs.append(StackJob(Windows(X, y, pd.date_range("2001-01-01", periods=n))))
    train = TrainConfig(max_epochs=3, batch_size=64, seed=5, pos_weight=True)
    fleet = train_fleet(jobs, cfg, train, 2)
    for job, members in zip(jobs, fleet):
        alone = train_stack(job.train, None, cfg, train, 2)
        xt = torch.from_numpy(job.train.X[:64])
        for f, a in zip(members, alone):
            assert len(f.history) == len(a.history) == 3
            assert [h["train_loss"] for h in f.history] == pytest.approx([h["train_loss"] for h in a.history], rel=1e-4)
            with torch.no_grad():
                torch.testing.assert_close(f.model(xt), a.model(xt), atol=2e-4, rtol=1e-3)
    # one step's forward and gradients: slot k of the fleet stack is its model alone, every weight
    from spywatch.model import PatchTSTStack

    models = [m.model for members in fleet for m in members]
    stack = PatchTSTStack.from_members(models)
    xb = torch.stack([torch.from_numpy(jobs[k // 2].train.X[k:k + 32]) for k in range(4)])  # (K, b, L, C)
    logits = stack(xb)
    logits.pow(2).sum().backward()
    for k, m in enumerate(models):
        m.zero_grad()
        out = m(xb[k])
        out.pow(2).sum().backward()
        torch.testing.assert_close(logits[k], out, atol=1e-5, rtol=1e-4)
        for target, source, transposed in stack._pairs(m):
            if source.grad is not None:
                expected = (source.grad.T if transposed else source.grad).reshape(target[k].shape)
                torch.testing.assert_close(target.grad[k], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("budget", [2**16, 40])
def test_a_stacks_init_readings_are_each_members_own(budget):
    """The untrained readings of a fleet stack, taken for all slots at once on the stack (in chunks),
    are each member's ``init_readings`` on its own job's windows: one job with fewer windows than the
    1,024 sampled, one with more, each member's output bias at its own job's prior."""
    from spywatch.model import PatchTSTStack, start_at_prior
    from spywatch.training_record import init_readings, stack_init_readings

    rng = np.random.default_rng(2)
    cfg = PatchTSTConfig(n_channels=4)
    samples = []
    for n, rate in ((300, 0.2), (1500, 0.6)):
        samples.append((rng.standard_normal((n, 20, 4)).astype("float32"),
                        (rng.random((n, 3)) < rate).astype("float32")))
    job_of = np.repeat(np.arange(2), 2)
    members = []
    for k, j in enumerate(job_of):
        torch.manual_seed(k)
        members.append(PatchTSTClassifier(cfg))
        start_at_prior(members[-1], samples[j][1].mean(axis=0))
    stack = PatchTSTStack.from_members(members)
    got = stack_init_readings(stack, samples, job_of, budget=budget)
    assert stack.training  # left in the mode it was in
    for k, (m, j) in enumerate(zip(members, job_of)):
        want = init_readings(m, *samples[j])
        for key in ("pred_std", "pred_mean", "loss"):
            assert got[k][key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (k, key)
        assert got[k]["pos_to_content"] == pytest.approx(want["pos_to_content"], rel=1e-4)
    assert got[0]["pred_mean"] != pytest.approx(got[2]["pred_mean"], abs=0.05)  # each job its own prior
