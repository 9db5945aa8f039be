"""Features, targets, the scaler and the shift table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spywatch.cli import main
from spywatch.features import FEATURE_BOUNDS, FEATURES, FeatureScaler, compute_features
from spywatch.market_data import synthetic_bars
from spywatch.targets import TargetConfig, make_targets


@pytest.fixture(scope="module")
def bars():
    return synthetic_bars("2005-12-30")


def test_no_look_ahead(bars):
    """Changing every row after t must not move any feature at or before t."""
    base = compute_features(bars)
    rng = np.random.default_rng(0)
    for t in (300, 1000, len(bars) - 30):
        changed = bars.copy()
        scale = np.exp(rng.normal(0, 0.2, size=(len(bars) - t - 1, 1)))
        changed.iloc[t + 1:, :5] = changed.iloc[t + 1:, :5].to_numpy() * scale
        changed.iloc[t + 1:, 5] = changed.iloc[t + 1:, 5] * 3
        moved = compute_features(changed)
        pd.testing.assert_frame_equal(base.iloc[: t + 1], moved.iloc[: t + 1])
        assert not base.iloc[t + 2:].equals(moved.iloc[t + 2:])  # the change itself was real


def test_features_are_bounded_and_level_free(bars):
    f = compute_features(bars).dropna()
    assert list(f.columns) == list(FEATURES) and 15 <= len(FEATURES) <= 25
    for name, (lo, hi) in FEATURE_BOUNDS.items():
        if lo is not None:
            assert f[name].min() >= lo - 1e-12, name
        if hi is not None:
            assert f[name].max() <= hi + 1e-12, name
    # Scaling every price by 10 (a level shift) leaves every feature where it was.
    scaled = bars.copy()
    scaled[["open", "high", "low", "close", "adj_close"]] *= 10
    pd.testing.assert_frame_equal(compute_features(scaled), compute_features(bars), atol=1e-9)


def test_targets_definition_and_maturity():
    close = pd.Series([100.0, 100.5, 101.2, 99.0, 99.5, 100.6, 100.0],
                      index=pd.date_range("2024-01-01", periods=7, freq="B"))
    y = make_targets(close, TargetConfig(horizons=(1, 3), threshold=0.01))
    # h1: 100 -> 100.5 (+0.5%) no; 100.5 -> 101.2 (+0.7%) no; 99.5 -> 100.6 (+1.1%) yes
    assert y["y_h1"].tolist()[:6] == [0, 0, 0, 0, 1, 0]
    # h3 from 100: max(100.5, 101.2, 99) = +1.2% -> 1
    assert y["y_h3"].iloc[0] == 1
    assert np.isnan(y["y_h1"].iloc[-1]) and y["y_h3"].iloc[-3:].isna().all()  # not matured yet
    with pytest.raises(ValueError, match="threshold"):
        TargetConfig(threshold=5)


def test_scaler_round_trip_and_transform(tmp_path, bars):
    f = compute_features(bars)
    scaler = FeatureScaler.fit(f.loc[:"2000-12-31"])
    path = scaler.save(tmp_path / "scaler.json")
    again = FeatureScaler.load(path)
    assert again == scaler and again.features == scaler.features == list(f.columns)
    z = again.transform(f.loc[:"2000-12-31"]).dropna()
    assert np.allclose(z.mean(), 0, atol=1e-6) and np.allclose(z.std(), 1, atol=1e-3)
    assert scaler.stats["rsi_14"].upper_bound == 1.0
    assert set(scaler.stats["vol_20"].quantiles) >= {"q0.01", "q0.5", "q0.99"}


def test_constant_training_feature_is_refused(bars):
    f = compute_features(bars).dropna()
    f["vol_5"] = 0.01
    with pytest.raises(ValueError, match="feature vol_5 is constant"):
        FeatureScaler.fit(f)


def test_features_cli_shift_table_on_real_data(spy_csv, capsys, tmp_path):
    """The original failure, made visible: features stay within 1 training std, raw Close does not."""
    rc = main(["features", "--data", str(spy_csv), "--train-end", "2016-12-31", "--test-start", "2022-01-01",
               "--json", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["features"]) == set(FEATURES)
    worst = max(abs(v["shift_std"]) for v in report["features"].values())
    assert worst <= 1.0, worst
    assert 3.6 <= report["raw"]["Close"]["ratio"] <= 4.0
    assert report["raw"]["MACD"]["ratio"] > 3
    assert (tmp_path / "scaler.json").exists() and (tmp_path / "features.parquet").exists()


def test_features_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Open,High,Low,Close,Adj Close\n2024-01-02,1,2,0.5,1,1\n")  # no Volume
    rc = main(["features", "--data", str(bad), "--train-end", "2016-12-31", "--test-start", "2022-01-01"])
    assert rc == 2
    assert "missing column(s) ['Volume']" in capsys.readouterr().err


def test_quantile_scaling_spreads_the_common_range_and_keeps_extremes_extreme(spy_csv, tmp_path):
    from spywatch.market_data import read_bars_csv

    feats = compute_features(read_bars_csv(spy_csv))[list(FEATURES)]
    fit = feats.loc[:"2016-12-31"]
    std, qnt = FeatureScaler.fit(fit), FeatureScaler.fit(fit, kind="quantile")
    zs, zq = std.transform(fit).dropna(), qnt.transform(fit).dropna()
    # on the fit span a quantile-scaled feature is close to a standard normal: median 0, quartiles +-0.67
    for col in ("vol_20", "range_pct", "atr_14_pct"):
        assert abs(zq[col].median()) < 0.02
        assert zq[col].quantile(0.75) - zq[col].quantile(0.25) == pytest.approx(1.349, abs=0.02)
        # the standard scaling squeezes the skewed feature's common half into a narrower band
        assert zs[col].quantile(0.75) - zs[col].quantile(0.25) < 1.1
    # monotone: the order of the days is the order of the raw feature
    for col in FEATURES:
        raw, scored = fit[col].dropna(), zq[col]
        assert (np.diff(scored.loc[raw.sort_values(kind="mergesort").index].to_numpy()) >= -1e-12).all(), col
    # beyond the fit span's range the score goes on in training-std units: March 2020 against a
    # scaler fitted on the calm 2012-2016 stays extreme
    qnt = FeatureScaler.fit(feats.loc["2012-01-01":"2016-12-31"], kind="quantile")
    assert feats.loc["2020-03-16", "vol_20"] > max(qnt.knots["vol_20"][0])
    crash = qnt.transform(feats.loc["2020-03-16":"2020-03-16"])["vol_20"].iloc[0]
    top = max(qnt.knots["vol_20"][1])
    expected = top + (feats.loc["2020-03-16", "vol_20"] - max(qnt.knots["vol_20"][0])) / qnt.stats["vol_20"].std
    assert crash == pytest.approx(min(expected, qnt.clip)) and crash > top + 1
    # the file round-trips; a standard scaler's file has no quantile keys (files written before read alike)
    qnt.save(tmp_path / "q.json")
    again = FeatureScaler.load(tmp_path / "q.json")
    assert again.kind == "quantile"
    pd.testing.assert_frame_equal(again.transform(feats), qnt.transform(feats))
    assert "kind" not in std.to_dict() and "knots" not in std.to_dict()
    with pytest.raises(ValueError, match="scaling='rank'"):
        FeatureScaler.fit(fit, kind="rank")
