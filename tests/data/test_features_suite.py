"""The features suite: generated from a model's training statistics, stored with the model.

The scaler is fitted on 1994-2016 real SPY features (the training period); 2017-2024 is data
the model never saw and must pass, while a constant feature, a x100 unit error and a value
outside its natural bounds must fail with the feature, the value, the band and the dates.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from spywatch import cli
from spywatch.dataset import build_table
from spywatch.features import FEATURE_BOUNDS, FeatureScaler
from spywatch.validation import (
    FEATURE_BAND_STD,
    FEATURES_SUITE_FILE,
    build_features_suite,
    validate_features,
    write_features_suite,
)

TRAIN_END = "2016-12-30"


@pytest.fixture(scope="module")
def features(spy_bars) -> pd.DataFrame:
    return build_table(spy_bars).features


@pytest.fixture(scope="module")
def scaler(features) -> FeatureScaler:
    return FeatureScaler.fit(features.loc[:TRAIN_END])


@pytest.fixture(scope="module")
def model_dir(scaler, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    scaler.save(folder / "scaler.json")
    write_features_suite(scaler, folder)
    return folder


@pytest.fixture()
def unseen(features) -> pd.DataFrame:
    return features.loc["2017-01-01":].copy()


def _failure(result, check, column):
    matches = [f for f in result.failures if (f.expectation, f.column) == (check, column)]
    assert matches, f"expected {check} [{column}] to fail; got:\n{result.format()}"
    return matches[0]


def test_unseen_real_data_passes(unseen, model_dir):
    result = validate_features(unseen, model_dir)
    assert result.success, result.format()
    assert result.n_rows == len(unseen) and result.suite == "features"


def test_whole_history_passes_after_warm_up(features, scaler):
    result = validate_features(features, scaler)  # the 251 warm-up rows (all NaN) are dropped
    assert result.success, result.format()
    assert result.n_rows == len(features) - 251


def test_band_is_measured_not_guessed(features, scaler):
    """Real 1994-2024 stays well inside the band; a x100 unit error lands far outside it."""
    real = features.dropna()
    for name, s in scaler.stats.items():
        lo, hi = FEATURE_BOUNDS[name]
        if lo is not None and hi is not None:
            continue  # bounded both sides: natural bounds, no band
        z_real = ((real[name] - s.mean) / s.std).abs().max()
        z_x100 = ((real[name] * 100 - s.mean) / s.std).abs().median()
        assert z_real < FEATURE_BAND_STD * 0.75, (name, z_real)
        assert z_x100 > FEATURE_BAND_STD * 1.5, (name, z_x100)


def test_constant_feature_is_flagged(unseen, model_dir):
    unseen["vol_20"] = 0.0123
    failure = _failure(validate_features(unseen, model_dir), "not_constant", "vol_20")
    assert "value 0.0123" in failure.detail and "2017-01-03..2024-12-31" in failure.detail


def test_x100_feature_names_value_band_and_dates(unseen, model_dir, scaler):
    unseen.loc["2024-12-02":, "ret_1"] *= 100.0
    result = validate_features(unseen, model_dir)
    failure = _failure(result, "training_band", "ret_1")
    s = scaler.stats["ret_1"]
    assert f"[{s.mean - 25 * s.std:.6g}, {s.mean + 25 * s.std:.6g}]" in failure.detail
    worst = unseen.loc[failure.dates[0], "ret_1"]
    assert f"ret_1={worst:.6g}" in failure.detail
    assert all(d >= "2024-12-02" for d in failure.dates) and failure.count >= 10
    assert result.failed_checks == {"training_band"}


def test_natural_bounds(unseen, model_dir):
    unseen.loc["2020-03-16", "rsi_14"] = 1.5
    unseen.loc["2022-06-13", "drawdown_252"] = 0.2
    result = validate_features(unseen, model_dir)
    assert _failure(result, "natural_bounds", "rsi_14").dates == ("2020-03-16",)
    assert _failure(result, "natural_bounds", "drawdown_252").dates == ("2022-06-13",)


def test_missing_and_null_feature(unseen, model_dir):
    unseen.loc["2020-03-17", "gap"] = np.nan
    result = validate_features(unseen.drop(columns=["macd_pct"]), model_dir)
    assert _failure(result, "not_null", "gap").dates == ("2020-03-17",)
    assert _failure(result, "column_exists", "macd_pct")
    assert {f.column for f in result.failures} == {"gap", "macd_pct"}


def test_suite_is_stored_with_the_model_and_tied_to_its_scaler(model_dir, scaler, unseen, tmp_path):
    stored = json.loads((model_dir / FEATURES_SUITE_FILE).read_text())
    assert stored == json.loads(json.dumps(build_features_suite(scaler)))
    assert stored["meta"]["train_end"] == TRAIN_END and stored["meta"]["band_std"] == FEATURE_BAND_STD

    other = FeatureScaler.fit(unseen)  # a retrained model's statistics
    other.save(tmp_path / "scaler.json")
    (tmp_path / FEATURES_SUITE_FILE).write_text((model_dir / FEATURES_SUITE_FILE).read_text())
    with pytest.raises(ValueError, match="another scaler"):
        validate_features(unseen, tmp_path)
    with pytest.raises(FileNotFoundError, match="write_features_suite"):
        validate_features(unseen, tmp_path / "nowhere")


def test_cli_features_suite(spy_csv, model_dir, tmp_path, capsys):
    args = ["validate", "--data", str(spy_csv), "--suite", "features", "--model", str(model_dir)]
    assert cli.main(args) == 0
    assert "features: passed" in capsys.readouterr().out

    raw = pd.read_csv(spy_csv, dtype=str)
    late = raw["Date"] >= "2024-12-02"
    for col in ("Open", "High", "Low", "Close"):
        raw.loc[late, col] = (raw.loc[late, col].astype(float) * 100).astype(str)  # cents, not dollars
    raw.to_csv(tmp_path / "cents.csv", index=False)
    code = cli.main(["validate", "--data", str(tmp_path / "cents.csv"), "--suite", "features",
                     "--model", str(model_dir)])
    out = capsys.readouterr().out
    assert code == 1
    assert "features: training_band [ret_1]:" in out and "2024-12-02" in out
