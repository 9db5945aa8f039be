"""Drift detection: real Evidently on real SPY windows, the calibrated thresholds, the CLI, the helpers.

What can go wrong and which test catches it:
- a recalibration or an Evidently upgrade silently changes the verdicts -> golden COVID window
- the thresholds alarm on an ordinary window (the pre-calibration failure) -> no-drift control
- the original bug in feature form (a feature on the wrong scale) slips through -> x100 injection
- a volatility regime change inside the training range goes unnoticed -> doubled moves vs the same
  window untouched, both against the sessions before it
- a collapsed champion goes unnoticed -> constant vs spread predictions
- the CLI forgets a file or writes a torn one -> CLI test
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spywatch.drift import (
    prediction_threshold,
    consecutive_drift_runs,
    current_window,
    detect_drift,
    detect_prediction_drift,
    is_drift_persistent,
    recent_rows,
    reference_rows,
    run_drift_report,
    save_drift_report,
)
from spywatch.drift_config import DEFAULT_THRESHOLDS, ColumnTest, DriftConfig, RegimeRule
from spywatch.features import FEATURES, compute_features

# The COVID crash against the 1994-2016 training reference, with the shipped thresholds.
# feature -> (method, Evidently score, drifted). Recalibrating drift_thresholds.json changes
# these on purpose: re-run the window and update them together with the thresholds.
GOLDEN_2020 = {
    "ret_1": ("ks", 0.000784316, False),
    "ret_5": ("ks", 0.000160481, False),
    "ret_10": ("wasserstein", 1.92958, True),
    "ret_20": ("wasserstein", 2.22897, True),
    "vol_5": ("wasserstein", 3.08309, True),
    "vol_20": ("wasserstein", 3.61381, True),
    "vol_60": ("t_test", 8.64467e-77, True),
    "vol_ratio_5_60": ("wasserstein", 1.20032, True),
    "atr_14_pct": ("t_test", 5.04667e-81, True),
    "range_pct": ("wasserstein", 1.9866, True),
    "gap": ("wasserstein", 2.28058, True),
    "close_loc": ("t_test", 0.500149, False),
    "rsi_14": ("wasserstein", 0.647503, False),
    "macd_pct": ("wasserstein", 2.16547, True),
    "macd_signal_pct": ("wasserstein", 2.29504, True),
    "macd_hist_pct": ("ks", 1.58065e-07, False),
    "dist_sma_20": ("ks", 1.04583e-06, False),
    "dist_sma_50": ("wasserstein", 1.95067, True),
    "dist_sma_200": ("wasserstein", 1.00666, False),
    "drawdown_252": ("wasserstein", 0.978712, False),
    "volume_z_20": ("wasserstein", 0.331998, False),
}
# The same window against the 250 sessions before it (the regime check): every volatility feature moved.
GOLDEN_2020_REGIME = {
    "vol_5": ("t_test", 9.89531e-45, True),
    "vol_20": ("t_test", 3.67631e-61, True),
    "vol_60": ("wasserstein", 6.63976, True),
    "atr_14_pct": ("wasserstein", 10.3607, True),
    "range_pct": ("wasserstein", 5.49517, True),
    "ret_1": ("wasserstein", 2.95418, True),
    "gap": ("wasserstein", 3.11028, True),
}


@pytest.fixture(scope="module")
def config() -> DriftConfig:
    return DriftConfig.load()


@pytest.fixture(scope="module")
def features(spy_bars) -> pd.DataFrame:
    return compute_features(spy_bars)


@pytest.fixture(scope="module")
def control(features, config) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """An in-distribution window by construction: mid-2003, tested against 1994-2016 without 2003,
    and the sessions before it (the regime check's reference)."""
    ref = reference_rows(features, config.features, "1994-01-01", "2016-12-31")
    ref = ref.loc[ref.index.year != 2003]
    cur = features.loc["2003-06-01":, config.features].iloc[: config.window]
    return ref, cur, recent_rows(features, config.features, cur, config.recent_sessions)


@pytest.fixture(scope="module")
def control_report(control, config):
    """The control window through both checks, with a collapsed prediction column (Evidently runs once)."""
    ref, cur, rec = control
    rng = np.random.default_rng(0)
    return run_drift_report(ref, cur, config, recent=rec,
                            reference_predictions=pd.DataFrame({"h1": rng.uniform(0, 1, 300)}),
                            current_predictions=pd.DataFrame({"h1": np.full(60, 0.5)}))


def doubled_moves(bars: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Bars whose log moves from the previous close (open, high, low, close) are doubled from ``start`` on:
    a volatility regime change with every bar consistent (as bench/drift_calibration.py injects it)."""
    i = bars.index.get_loc(start)
    prev = bars["close"].shift(1)
    moves = {c: np.log(bars[c] / prev).to_numpy() for c in ("open", "high", "low", "close")}
    close = bars["close"].to_numpy().copy()
    close[i:] = close[i - 1] * np.exp(2.0 * np.cumsum(moves["close"][i:]))
    new_prev = np.concatenate([[np.nan], close[:-1]])
    out = bars.copy()
    for col in ("open", "high", "low"):
        values = out[col].to_numpy().copy()
        values[i:] = new_prev[i:] * np.exp(2.0 * moves[col][i:])
        out[col] = values
    out["close"] = close
    if "adj_close" in out:
        out["adj_close"] = close
    return out


# ----------------------------------------------------------------------------- real Evidently, real data


def test_golden_covid_window(features, config):
    ref = reference_rows(features, config.features, "1994-01-01", "2016-12-31")
    cur = current_window(features, config.features, config.window, "2020-02-01", "2020-04-30")
    result = detect_drift(ref, cur, config, recent=recent_rows(features, config.features, cur, config.recent_sessions))

    assert (result.current_start, result.current_end) == ("2020-02-05", "2020-04-30")
    assert (result.reference_start, result.reference_end, result.n_reference) == ("1994-01-26", "2016-12-30", 5775)
    for name, (method, score, drifted) in GOLDEN_2020.items():
        got = result.per_feature[name]
        assert got.method == method, f"{name}: method {got.method}, golden {method} (recalibrated?)"
        assert got.score == pytest.approx(score, rel=1e-4), name
        assert got.drifted == drifted, name
    assert result.n_drifted == sum(d for _, _, d in GOLDEN_2020.values()) == 12
    assert result.share == pytest.approx(12 / 21)
    assert result.dataset_drift  # 12 of 21 meets the calibrated rule (>= 12)
    regime = result.regime
    assert (regime.recent_start, regime.recent_end, regime.n_recent) == ("2019-02-07", "2020-02-04", 250)
    for name, (method, score, drifted) in GOLDEN_2020_REGIME.items():
        got = regime.per_feature[name]
        assert got.method == method, f"regime {name}: method {got.method}, golden {method} (recalibrated?)"
        assert got.score == pytest.approx(score, rel=1e-4), name
        assert got.drifted == drifted, name
    assert regime.drifted and result.reasons == ["training", "regime"]


def test_in_distribution_window_stays_quiet(control_report):
    result = control_report.result
    assert not result.dataset_drift and not result.regime_drift and result.reasons == []
    assert result.n_drifted == 0, result.drifted_features
    assert result.regime.n_drifted == 0, result.regime.drifted_features


def test_volatility_doubled_window_raises_the_alarm_and_the_same_window_untouched_does_not(spy_bars, features,
                                                                                           config):
    """Moves doubled from the first session of a 2024 window (after the 1994-2016 training period). Against
    the training reference the doubled window still looks like an ordinary one (that reference holds 2008);
    against the 250 sessions before it, it does not. The bench catches the x2 fault in about half of all
    windows, not all (bench/results/drift_calibration.md); this is one it catches."""
    start = pd.Timestamp("2024-03-01")
    clean = features
    ref = reference_rows(clean, config.features, "1994-01-01", "2016-12-31")
    cur = clean.loc[start:, config.features].iloc[: config.window]
    rec = recent_rows(clean, config.features, cur, config.recent_sessions)
    recent_bars = spy_bars.loc["2022-06-01":cur.index[-1]]  # enough warm-up for every feature of the window
    doubled = compute_features(doubled_moves(recent_bars, start)).loc[cur.index, config.features]
    assert doubled["ret_1"].std() == pytest.approx(2 * cur["ret_1"].std(), rel=1e-6)

    quiet = detect_drift(ref, cur, config, recent=rec)
    alarm = detect_drift(ref, doubled, config, recent=rec)

    assert not quiet.dataset_drift and quiet.regime.n_drifted == 0
    assert alarm.dataset_drift and alarm.reasons == ["regime"]  # the training rule alone misses it
    assert alarm.regime.n_drifted >= config.regime.min_drifted
    assert {"vol_5", "range_pct"} <= set(alarm.regime.drifted_features)


def test_feature_on_the_wrong_scale_is_flagged(control, config):
    ref, cur, _ = control
    wrong = cur.copy()
    wrong["ret_1"] *= 100.0  # returns in percent: the original bug in feature form
    wrong["vol_20"] *= 100.0
    result = detect_drift(ref, wrong, config)
    assert set(result.drifted_features) == {"ret_1", "vol_20"}
    assert result.per_feature["ret_1"].drifted and result.per_feature["vol_20"].drifted


def test_collapsed_predictions_drift_and_spread_ones_do_not(config):
    rng = np.random.default_rng(3)
    validation = pd.DataFrame({h: rng.beta(2.0, 5.0, 500) for h in ("h1", "h3", "h5")})
    prior = validation.mean()
    collapsed = pd.DataFrame({h: np.full(60, prior[h]) for h in validation})
    healthy = pd.DataFrame({h: rng.beta(2.0, 5.0, 60) for h in validation})

    piled = detect_prediction_drift(validation, collapsed, config)
    spread = detect_prediction_drift(validation, healthy, config)

    assert set(piled) == {"h1", "h3", "h5"}
    for h in piled:
        assert piled[h].drifted and piled[h].spread_ratio == pytest.approx(0.0, abs=1e-12)
        assert piled[h].score > 0.7  # mean absolute deviation over std, ~0.8 for a unimodal spread
        assert not spread[h].drifted and spread[h].score < config.prediction_threshold
        assert 0.6 < spread[h].spread_ratio < 1.6


def _clustered_probabilities(n: int, seed: int) -> np.ndarray:
    """Probabilities that follow a slowly moving level (as a model's follow volatility): AR(1), phi 0.99."""
    rng = np.random.default_rng(seed)
    level = np.zeros(n)
    for t in range(1, n):
        level[t] = 0.99 * level[t - 1] + 0.2 * rng.standard_normal()
    return 1 / (1 + np.exp(-(level - 1.5 + 0.1 * rng.standard_normal(n))))


def test_prediction_threshold_is_calibrated_on_the_validation_predictions(config):
    """A year of clustered predictions: its own 60-session stretches sit far from the whole, so the
    fixed 0.5 would call most windows of the year drifted; the calibrated threshold calls none of
    them drifted and still flags a window from a different level."""
    from scipy.stats import wasserstein_distance

    validation = _clustered_probabilities(250, seed=2)
    threshold, basis = prediction_threshold(validation, 60, config)
    distances = [wasserstein_distance(validation, validation[i:i + 60]) / validation.std()
                 for i in range(len(validation) - 59)]
    assert np.mean(np.array(distances) >= config.prediction_threshold) > 0.3  # the fixed rule's false alarms
    assert threshold > config.prediction_threshold
    assert np.sum(np.array(distances) >= threshold) <= 2  # the 99th percentile of 191: the top two at most
    assert basis.startswith("99% of the 191 60-session stretches")

    frame = pd.DataFrame({"h1": validation})
    inside = detect_prediction_drift(frame, frame.iloc[100:160], config)["h1"]
    elsewhere = detect_prediction_drift(frame, pd.DataFrame({"h1": np.clip(validation[:60] + 0.3, 0, 1)}),
                                        config)["h1"]
    assert not inside.drifted and inside.threshold == pytest.approx(threshold)
    assert elsewhere.drifted and elsewhere.threshold_basis == basis


def test_prediction_threshold_falls_back_to_the_fixed_one(config):
    from dataclasses import replace

    iid = np.random.default_rng(2).beta(2.0, 5.0, 500)  # windows of independent draws sit close to the whole
    assert prediction_threshold(iid, 60, config)[0] == config.prediction_threshold
    assert prediction_threshold(iid, 60, config)[1].endswith(f"the floor {config.prediction_threshold:g} applies")
    assert prediction_threshold(iid[:100], 60, config) == (
        config.prediction_threshold, "fixed: 100 validation predictions are too few to calibrate on")
    assert prediction_threshold(iid, 60, replace(config, prediction_quantile=None)) == (config.prediction_threshold,
                                                                                        "fixed")
    with pytest.raises(ValueError, match="prediction_quantile"):
        replace(config, prediction_quantile=1.0)


def test_report_files_and_summary(control, control_report, config, tmp_path):
    _, _, rec = control
    files = save_drift_report(control_report, tmp_path / "night")
    summary = json.loads(files.json.read_text())
    assert summary["files"] == {"html": "drift.html", "prediction_html": "drift_predictions.html",
                                "regime_html": "drift_regime.html"}
    assert summary["dataset_drift"] is False and summary["prediction_drift"]["h1"]["drifted"] is True
    assert summary["training_drift"] is False and summary["regime_drift"] is False and summary["drift_reasons"] == []
    assert summary["per_feature"].keys() == set(FEATURES)
    assert summary["regime"]["per_feature"].keys() == set(config.regime.features)
    assert summary["regime"]["recent"] == {"start": rec.index[0].date().isoformat(),
                                           "end": rec.index[-1].date().isoformat(), "rows": config.recent_sessions}
    assert summary["config"]["dataset_rule"]["min_drifted_features"] == config.min_drifted
    assert summary["config"]["regime"]["recent_sessions"] == config.recent_sessions
    for html in (files.html, files.prediction_html, files.regime_html):
        text = html.read_text()
        assert "<html" in text and not re.search(r'<(script|link)[^>]+(src|href)="https?://', text)
    assert sorted(p.name for p in files.html.parent.iterdir()) == ["drift.html", "drift.json", "drift_predictions.html",
                                                                   "drift_regime.html"]


def test_cli_writes_html_and_json(spy_csv, tmp_path, capsys):
    from spywatch.cli import main

    out = tmp_path / "drift"
    rc = main(["drift", "--data", str(spy_csv), "--reference-end", "2016-12-31",
               "--current-start", "2020-02-01", "--current-end", "2020-04-30", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 1  # drift detected is a finding: exit 1, like a failed check
    assert printed.startswith("DRIFT: 12/21 features drifted")
    assert "regime CHANGED: 7/7 volatility features drifted vs the 250 sessions before the window" in printed
    summary = json.loads((out / "drift.json").read_text())
    assert summary["current"] == {"start": "2020-02-05", "end": "2020-04-30", "rows": 60}
    assert summary["n_drifted"] == 12 and summary["dataset_drift"] is True
    assert summary["drift_reasons"] == ["training", "regime"]
    assert (out / "drift.html").stat().st_size > 100_000 and (out / "drift_regime.html").exists()


def test_cli_rejects_a_current_window_inside_the_reference(spy_csv, tmp_path, capsys):
    from spywatch.cli import main

    rc = main(["drift", "--data", str(spy_csv), "--reference-end", "2016-12-31",
               "--current-start", "2016-06-01", "--out", str(tmp_path)])
    assert rc == 2
    assert "must come after --reference-end" in capsys.readouterr().err


# ----------------------------------------------------------------------------- config, windows, helpers (no Evidently)


def test_shipped_thresholds_cover_every_feature():
    config = DriftConfig.load(DEFAULT_THRESHOLDS)
    assert config.features == list(FEATURES)
    assert config.window == config.calibrated_window == 60
    assert 1 <= config.min_drifted <= len(FEATURES)
    assert config.drift_share * len(FEATURES) > config.min_drifted - 1  # the share means "at least min_drifted"
    regime = config.regime
    assert regime is not None and config.recent_sessions == regime.recent_sessions == 250
    assert set(regime.features) <= set(FEATURES) and 1 <= regime.min_drifted <= len(regime.features)
    assert regime.drift_share * len(regime.features) > regime.min_drifted - 1


@pytest.mark.parametrize("bad, message", [
    ({"method": "cosine", "threshold": 0.1}, "not one of"),
    ({"method": "ks", "threshold": 0.0}, "positive"),
    ({"method": "wasserstein", "threshold": float("nan")}, "positive"),
])
def test_bad_feature_tests_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        ColumnTest("ret_1", bad["method"], bad["threshold"])


def test_bad_configs_are_refused():
    tests = (ColumnTest("ret_1", "ks", 0.01),)
    with pytest.raises(ValueError, match="drift_share"):
        DriftConfig(tests=tests, drift_share=0.0)
    with pytest.raises(ValueError, match="duplicate"):
        DriftConfig(tests=tests * 2, drift_share=0.5)
    with pytest.raises(ValueError, match="persistence_k"):
        DriftConfig(tests=tests, drift_share=0.5, persistence_k=0)
    with pytest.raises(ValueError, match="lack key"):
        DriftConfig.from_dict({"features": {}, "window": 60})
    with pytest.raises(ValueError, match="min_drifted"):
        RegimeRule(tests=tests, min_drifted=2, recent_sessions=250)
    with pytest.raises(ValueError, match="recent_sessions"):
        RegimeRule(tests=tests, min_drifted=1, recent_sessions=5)
    with pytest.raises(ValueError, match="not among the monitored features"):
        DriftConfig(tests=tests, drift_share=0.5,
                    regime=RegimeRule(tests=(ColumnTest("vol_5", "mannw", 1e-6),), min_drifted=1, recent_sessions=60))


def test_a_thresholds_file_without_a_regime_rule_still_loads():
    doc = json.loads(DEFAULT_THRESHOLDS.read_text())
    doc.pop("regime")
    config = DriftConfig.from_dict(doc)
    assert config.regime is None and config.recent_sessions == 0
    assert config.to_dict()["regime"] is None


def test_windows_are_complete_rows_and_too_short_ones_refused(features, config):
    cur = current_window(features, config.features, 60, end="2020-04-30")
    assert len(cur) == 60 and cur.index[-1] == pd.Timestamp("2020-04-30") and cur.notna().all().all()
    ref = reference_rows(features, config.features, end="1995-12-31")
    assert ref.index[0] == pd.Timestamp("1994-01-26")  # the first row after the 252-session warm-up
    with pytest.raises(ValueError, match="at least 20"):
        current_window(features, config.features, 60, start="2020-04-20", end="2020-04-30")
    with pytest.raises(ValueError, match="lack drift column"):
        current_window(features.drop(columns="gap"), config.features, 60)
    before = recent_rows(features, config.features, cur, 250)
    assert len(before) == 250 and before.index[-1] < cur.index[0] and before.notna().all().all()
    assert before.index[-1] == features.index[features.index.get_loc(cur.index[0]) - 1]
    early = current_window(features, config.features, 60, end="1994-12-30")
    with pytest.raises(ValueError, match="the regime check needs 250"):
        recent_rows(features, config.features, early, 250)


def test_bad_inputs_are_refused_before_evidently_runs(control, config):
    ref, cur, rec = control
    broken = cur.copy()
    broken.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        run_drift_report(ref, broken, config)
    with pytest.raises(ValueError, match="both"):
        run_drift_report(ref, cur, config, reference_predictions=pd.DataFrame({"h1": [0.1] * 30}))
    with pytest.raises(ValueError, match="recent features has 100 rows"):
        run_drift_report(ref, cur, config, recent=rec.iloc[-100:])
    overlapping = pd.concat([rec.iloc[10:], cur.iloc[:10]])
    with pytest.raises(ValueError, match="must end before the current window"):
        run_drift_report(ref, cur, config, recent=overlapping)


def test_persistence_examples():
    assert consecutive_drift_runs([]) == 0
    assert consecutive_drift_runs([True, False, True, True]) == 2
    assert is_drift_persistent([False, True, True, True], 3)
    assert not is_drift_persistent([True, True, False], 1)
    with pytest.raises(ValueError):
        is_drift_persistent([True], 0)


@given(st.lists(st.booleans(), max_size=30), st.integers(min_value=1, max_value=10))
def test_persistence_means_the_last_k_runs_all_drifted(flags, k):
    run = consecutive_drift_runs(flags)
    assert all(flags[len(flags) - run:]) and (run == len(flags) or not flags[-run - 1])
    assert is_drift_persistent(flags, k) == (len(flags) >= k and all(flags[-k:]))
