"""``evaluate``: the PatchTST ensemble and its members, the volatility-only reference, and paired
block-bootstrap comparisons with intervals, as numbers in the JSON report and as printed text."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from spywatch.atomic import atomic_write_json
from spywatch.baselines import BaselineConfig
from spywatch.dataset import build_table
from spywatch.evaluate import (BASELINES, VOL_FEATURES, EvalConfig, Predictions, Split, bootstrap_config,
                               comparison_verdict, ensemble_proba, evaluate, format_report, model_inputs,
                               paired_comparisons, vol_inputs)
from spywatch.features import FEATURE_BOUNDS, FEATURES
from spywatch.train import TrainConfig

NAMES = ["h1", "h3", "h5"]


# ----------------------------------------------------------------------------- pure helpers


def test_ensemble_is_the_mean_of_member_probabilities():
    rng = np.random.default_rng(0)
    members = rng.random((3, 40, 2))
    ens = ensemble_proba(members)
    assert ens.shape == (40, 2)
    np.testing.assert_allclose(ens, (members[0] + members[1] + members[2]) / 3, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ensemble_proba(members[:1]), members[0])  # one member is itself
    with pytest.raises(ValueError, match=r"\(40, 2\)"):
        ensemble_proba(members[0])


def test_verdict_reads_the_interval_against_zero():
    assert comparison_verdict(0.01, 0.05) == "better"
    assert comparison_verdict(-0.05, -0.01) == "worse"
    assert comparison_verdict(-0.01, 0.02) == "not distinguishable"
    assert comparison_verdict(0.0, 0.02) == "not distinguishable"  # a bound at 0 is not above it


def test_blocks_cover_the_longest_horizon_and_n_boot_is_checked_before_training():
    assert bootstrap_config(5, 2000).block == 10
    assert bootstrap_config(20, 500).block == 20
    with pytest.raises(ValueError, match="n_boot must be >= 100.*got 50"):
        EvalConfig(n_boot=50)


def test_volatility_features_are_model_features_that_measure_magnitude():
    assert set(VOL_FEATURES) <= set(FEATURES)
    # Magnitudes (non-negative), not directions: no return, trend or oscillator among them.
    assert all(FEATURE_BOUNDS[f][0] == 0.0 for f in VOL_FEATURES)
    assert not {"ret_1", "ret_5", "rsi_14", "macd_pct", "dist_sma_20"} & set(VOL_FEATURES)


def _synthetic(n: int = 400, seed: int = 0) -> Predictions:
    """A signal the ensemble reads, a baseline that is noise, one that is the ensemble itself."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=(n, 3))
    y = (score + rng.normal(size=(n, 3)) > 0.3).astype(float)
    y[:, 2] = 1.0  # one class only: no AUC, no comparison for h5
    members = np.stack([1 / (1 + np.exp(-(score + 0.3 * rng.normal(size=score.shape)))) for _ in range(3)])
    ens = members.mean(axis=0)
    return Predictions(y=y, dates=pd.bdate_range("2020-01-01", periods=n), horizons=NAMES, members=members,
                           baselines={"random_forest": rng.random((n, 3)), "logistic": ens.copy(),
                                      "vol_logistic": 1 / (1 + np.exp(-(score + 2 * rng.normal(size=score.shape)))),
                                      "prior": np.full((n, 3), 0.3)})


def test_paired_comparisons_find_a_real_gap_and_no_gap_against_itself():
    preds = _synthetic()
    comps = paired_comparisons(preds, bootstrap_config(5, 500))
    assert set(comps) == set(BASELINES)
    rf, same = comps["random_forest"], comps["logistic"]
    # The ensemble reads the signal, the "forest" is noise: the whole interval is above 0.
    assert rf["mean_auc"]["ci_low"] > 0.15 and rf["mean_auc"]["p_a_better"] == 1.0
    assert rf["mean_auc"]["skipped_horizons"] == ["h5"]
    assert rf["log_loss"]["metric"] == "log_loss" and rf["log_loss"]["estimate"] > 0
    assert "log_loss" not in same  # the log-loss comparison is against the RF only
    # Against itself: a difference of exactly 0 that is never "better".
    assert same["mean_auc"]["estimate"] == 0 and same["mean_auc"]["ci_low"] == same["mean_auc"]["ci_high"] == 0
    assert comparison_verdict(same["mean_auc"]["ci_low"], same["mean_auc"]["ci_high"]) == "not distinguishable"
    for b in BASELINES:
        assert comps[b]["auc_by_horizon"]["h5"] is None
        for h in ("h1", "h3"):
            c = comps[b]["auc_by_horizon"][h]
            assert list(c["by_horizon"]) == [h] and c["b"] == b and c["a"] == "patchtst"
            assert c["ci_low"] <= c["estimate"] <= c["ci_high"]
    # The mean over horizons is the mean of the per-horizon differences.
    per_h = [comps["vol_logistic"]["auc_by_horizon"][h]["estimate"] for h in ("h1", "h3")]
    assert comps["vol_logistic"]["mean_auc"]["estimate"] == pytest.approx(np.mean(per_h))


def test_vol_inputs_are_scaled_like_the_model_features(spy_bars):
    table = build_table(spy_bars.loc[:"2004-12-31"])
    fit_end = pd.Timestamp("2000-12-29")
    vol = vol_inputs(table, fit_end)
    assert list(vol.columns) == list(VOL_FEATURES)
    fit = vol.loc[:fit_end].dropna()
    np.testing.assert_allclose(fit.mean(), 0.0, atol=1e-9)
    np.testing.assert_allclose(fit.std(), 1.0, atol=1e-9)
    model = model_inputs(table, "normalized", fit_end).frame
    pd.testing.assert_frame_equal(vol, model.loc[:, list(VOL_FEATURES)])


def test_cli_passes_boot_to_the_config(monkeypatch, spy_csv, capsys):
    import spywatch.evaluate as ev
    from spywatch.cli.evaluate import register

    seen = {}

    def fake_evaluate(bars, split, cfg):
        seen["cfg"] = cfg
        return {"audit": {"verdict": "healthy"}}

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(ev, "format_report", lambda report: "table")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["evaluate", "--data", str(spy_csv), "--train-end", "2021-12-31", "--test-start", "2022-01-01"]
    assert parser.parse_args(base).boot == 2000
    args = parser.parse_args([*base, "--boot", "500"])
    assert args.func(args) == 0
    assert seen["cfg"].n_boot == 500
    assert '"audit": "healthy"' in capsys.readouterr().out


# ----------------------------------------------------------------------------- a real (tiny) evaluation


@pytest.fixture(scope="module")
def report(spy_bars) -> dict:
    # Real SPY 1994-2004, a tiny model, two seeds: the numbers are not the point, their relations are.
    cfg = EvalConfig(seeds=2, n_boot=300, model={"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16,
                                                  "head_hidden": 16},
                     train=TrainConfig(max_epochs=2, batch_size=128, device="cpu"),
                     baselines=BaselineConfig(rf_trees=30), epochs=2)
    split = Split(train_start="1998-01-01", train_end="2002-12-31", val_start="2002-01-01",
                  test_start="2003-01-01", test_end="2004-06-30")
    return evaluate(spy_bars.loc[:"2004-12-31"], split, cfg)


@pytest.mark.slow
def test_the_default_recipe_fits_up_to_an_embargo_before_the_test_without_validation(report):
    periods = report["periods"]
    assert periods["val"] is None and periods["fit"] == ["1998-01-02", "2002-12-23"]  # 5 sessions before 2003-01-02
    assert report["samples"]["val"] == 0 and report["epochs_by_seed"] == [2, 2]


@pytest.mark.slow
def test_headline_is_the_ensemble_and_the_members_stay_beside_it(report):
    for h in NAMES:
        ens, members = report["horizons"][h]["patchtst"], report["horizons"][h]["patchtst_members"]
        assert ens["n_members"] == len(members) == 2 and [m["seed"] for m in members] == [0, 1]
        assert ens["auc_by_seed"] == [m["auc"] for m in members]
        assert ens["auc_member_mean"] == pytest.approx(np.mean(ens["auc_by_seed"]))
        # Averaging is linear: the ensemble's mean prediction is the members' mean prediction ...
        assert ens["pred_mean"] == pytest.approx(np.mean([m["pred_mean"] for m in members]), abs=1e-6)
        # ... and an average spreads no more than its members do (triangle inequality).
        assert ens["pred_std"] <= np.mean([m["pred_std"] for m in members]) + 1e-9
        assert 0 < ens["auc"] < 1 and ens["auc_ci"][0] <= ens["auc"] <= ens["auc_ci"][1]
        for m in members:
            assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]


@pytest.mark.slow
def test_vol_logistic_is_reported_with_its_interval(report):
    assert report["vol_features"] == list(VOL_FEATURES)
    for h in NAMES:
        v = report["horizons"][h]["vol_logistic"]
        assert 0 < v["auc"] < 1 and v["auc_ci"][0] <= v["auc"] <= v["auc_ci"][1]
        assert v["auc"] != report["horizons"][h]["logistic"]["auc"]  # other inputs, another model


@pytest.mark.slow
def test_comparisons_have_intervals_around_their_estimates(report, tmp_path):
    boot = report["bootstrap"]
    assert boot["block"] == 10 and boot["n_boot"] == 300
    comps = report["comparisons"]
    cases = [comps[b]["mean_auc"] for b in BASELINES] + [comps["random_forest"]["log_loss"]]
    cases += [comps[b]["auc_by_horizon"][h] for b in BASELINES for h in NAMES]
    for c in cases:
        assert c["a"] == "patchtst" and c["n_sessions"] == report["samples"]["test"]
        assert c["ci_low"] <= c["estimate"] <= c["ci_high"]
        assert 0.0 <= c["p_a_better"] <= 1.0
    # The headline comparison says what the report's table says.
    rf_h1 = comps["random_forest"]["auc_by_horizon"]["h1"]
    h1 = report["horizons"]["h1"]
    assert rf_h1["estimate"] == pytest.approx(h1["patchtst"]["auc"] - h1["random_forest"]["auc"], abs=1e-9)
    # The new keys survive the JSON file.
    atomic_write_json(tmp_path / "evaluate.json", report)
    back = json.loads((tmp_path / "evaluate.json").read_text())
    assert back["comparisons"]["vol_logistic"]["mean_auc"]["bootstrap"]["block"] == 10
    assert back["horizons"]["h3"]["patchtst_members"][1]["seed"] == 1


@pytest.mark.slow
def test_format_report_prints_intervals_and_a_verdict(report):
    text = format_report(report)
    assert "90% CI" in text
    for b in BASELINES:
        assert b in text
    c = report["comparisons"]["random_forest"]["mean_auc"]
    assert "PatchTST - RF mean:" in text and f"{c['estimate']:+.3f} [90% CI {c['ci_low']:+.3f}, " in text
    verdict = comparison_verdict(c["ci_low"], c["ci_high"])
    sentence = {"better": "is better than the RF", "worse": "is worse than the RF",
                "not distinguishable": "is not distinguishable from the RF (the interval straddles 0)"}[verdict]
    assert sentence in text
