"""The retrain decision: each reason fires on its own, with its numbers, and a healthy night stays quiet."""

from __future__ import annotations

import json

import pytest

from spywatch.decision import (
    CollapseSignal,
    DriftSignal,
    PerformanceSignal,
    ReasonCode,
    RetrainDecision,
    RetrainPolicy,
    decide,
)

# The rule before Step 6 (mean AUC against the Random Forest), still the "legacy" policy's.
POLICY = RetrainPolicy(drift_persistence_k=3, auc_floor=0.52, rf_margin=0.0, min_matured=60, max_age_days=90,
                       decay_cooldown_days=5, drift_cooldown_days=0, decay_test="mean_auc")
CUSUM = RetrainPolicy(drift_persistence_k=3, min_matured=60, max_age_days=365, drift_cooldown_days=30,
                      cusum_allowance=0.01, cusum_threshold=1.0)

QUIET_DRIFT = DriftSignal(dataset_drift=False, share=0.1, consecutive_runs=0)
HEALTHY = CollapseSignal(collapsed=False, verdict="healthy", cause=None)
GOOD_PERF = PerformanceSignal(auc_by_horizon={"h1": 0.56, "h3": 0.57, "h5": 0.58},
                              rf_auc_by_horizon={"h1": 0.54, "h3": 0.55, "h5": 0.55}, n_matured=120)


def _decide(drift=QUIET_DRIFT, collapse=HEALTHY, performance=GOOD_PERF, model_age=10.0,
            policy=POLICY) -> RetrainDecision:
    return decide(drift, collapse, performance, model_age, policy)


def _only(decision: RetrainDecision, code: ReasonCode):
    assert decision.retrain
    assert decision.codes == (code,)
    return decision.reasons[0]


def test_healthy_night_does_not_retrain_and_says_why():
    decision = _decide()
    assert not decision.retrain and decision.reasons == ()
    messages = [n.message for n in decision.notes]
    assert "collapse check: healthy" in messages
    assert "drift in 0 consecutive run(s) < k=3; drifted share 0.10" in messages
    assert "champion mean AUC 0.5700 vs Random Forest 0.5467" in messages
    assert "champion mean AUC 0.5700 >= floor 0.5200" in messages
    assert "champion age 10.0 days <= max 90" in messages
    out = decision.to_dict()
    assert json.loads(json.dumps(out)) == out and out["policy"]["drift_persistence_k"] == 3


def test_no_champion_retrains():
    decision = decide(QUIET_DRIFT, None, None, None, POLICY)
    reason = _only(decision, ReasonCode.NO_CHAMPION)
    assert "no champion" in reason.message


def test_collapse_retrains_with_its_cause():
    collapse = CollapseSignal(collapsed=True, verdict="constant predictions", cause="std 1e-06 < 1e-03")
    reason = _only(_decide(collapse=collapse), ReasonCode.COLLAPSE)
    assert reason.message == "champion predictions collapsed: constant predictions (std 1e-06 < 1e-03)"
    assert reason.values == {"verdict": "constant predictions", "cause": "std 1e-06 < 1e-03"}


@pytest.mark.parametrize(("runs", "retrain"), [(1, False), (2, False), (3, True), (7, True)])
def test_drift_retrains_only_once_it_persists_k_runs(runs, retrain):
    decision = _decide(drift=DriftSignal(dataset_drift=True, share=0.6, consecutive_runs=runs))
    assert decision.retrain is retrain
    if retrain:
        reason = _only(decision, ReasonCode.DRIFT)
        assert reason.message == f"drift persisted {runs} consecutive runs (>= k=3); drifted share 0.60"
        assert reason.values == {"dataset_drift": True, "share": 0.6, "consecutive_runs": runs, "k": 3}


def test_decay_below_the_floor():
    perf = PerformanceSignal({"h1": 0.50, "h3": 0.51, "h5": 0.51}, {"h1": 0.49, "h3": 0.50, "h5": 0.50}, 90)
    reason = _only(_decide(performance=perf), ReasonCode.DECAY_FLOOR)
    assert reason.message == "champion mean AUC 0.5067 < floor 0.5200 on 90 matured labels"
    assert reason.values["mean_auc"] == pytest.approx(0.50667, abs=1e-4)
    assert reason.values["floor"] == 0.52 and reason.values["n_matured"] == 90


def test_decay_below_the_random_forest_baseline():
    perf = PerformanceSignal({"h1": 0.55, "h3": 0.55, "h5": 0.55}, {"h1": 0.58, "h3": 0.57, "h5": 0.56}, 90)
    reason = _only(_decide(performance=perf), ReasonCode.DECAY_BASELINE)
    assert reason.message == ("champion mean AUC 0.5500 < Random Forest 0.5700 - margin 0.0000 "
                              "on 90 matured labels")
    assert reason.values["rf_mean_auc"] == pytest.approx(0.57)


def test_trailing_the_random_forest_waits_out_the_cooldown_after_training_or_confirmation():
    perf = PerformanceSignal({"h1": 0.55, "h3": 0.55, "h5": 0.55}, {"h1": 0.58, "h3": 0.57, "h5": 0.56}, 90)
    policy = RetrainPolicy(decay_cooldown_days=20, decay_test="mean_auc")
    held = _decide(performance=perf, model_age=19.0, policy=policy)
    assert not held.retrain
    note = [n for n in held.notes if n.values.get("decay_cooldown_days") == 20][0]
    assert note.message == ("champion mean AUC 0.5500 < Random Forest 0.5700, but it was trained or confirmed "
                            "19.0 days ago < cooldown 20")
    assert _only(_decide(performance=perf, model_age=20.0, policy=policy), ReasonCode.DECAY_BASELINE)
    floor = PerformanceSignal({"h1": 0.45}, {"h1": 0.55}, 90)  # below the floor is never held back
    assert ReasonCode.DECAY_FLOOR in _decide(performance=floor, model_age=1.0, policy=policy).codes


def test_random_forest_margin_tolerates_small_gaps():
    perf = PerformanceSignal({"h1": 0.55}, {"h1": 0.56}, 90)
    policy = RetrainPolicy(rf_margin=0.02, min_matured=60, decay_test="mean_auc")
    assert not _decide(performance=perf, policy=policy).retrain


def test_decay_is_not_judged_on_too_few_matured_labels():
    perf = PerformanceSignal({"h1": 0.40}, {"h1": 0.60}, n_matured=59)
    decision = _decide(performance=perf)
    assert not decision.retrain
    skipped = [n for n in decision.notes if n.code is ReasonCode.SKIPPED]
    assert skipped[0].message == "AUC checks skipped: 59 matured labels < 60"


def test_old_model_retrains():
    reason = _only(_decide(model_age=91.5), ReasonCode.MAX_AGE)
    assert reason.message == "champion trained or last confirmed 91.5 days ago > max 90"
    assert reason.values == {"age_days": 91.5, "max_age_days": 90}
    assert not _decide(model_age=90.0).retrain


def test_all_reasons_are_reported_together_in_a_stable_order():
    decision = _decide(
        drift=DriftSignal(True, 0.8, 4),
        collapse=CollapseSignal(True, "one class", None),
        performance=PerformanceSignal({"h1": 0.45}, {"h1": 0.55}, 200),
        model_age=200.0,
    )
    assert decision.codes == (ReasonCode.COLLAPSE, ReasonCode.DRIFT, ReasonCode.DECAY_FLOOR,
                              ReasonCode.DECAY_BASELINE, ReasonCode.MAX_AGE)
    assert [r["code"] for r in decision.to_dict()["reasons"]] == [
        "collapse", "drift", "decay_floor", "decay_baseline", "max_age"]


def test_missing_signals_are_noted_not_fatal():
    decision = decide(None, None, None, 5.0, POLICY)
    assert not decision.retrain
    assert {n.message for n in decision.notes} >= {"drift check not available", "collapse check not available",
                                                   "decay check: no labels matured since the champion was selected"}


def test_decide_is_pure():
    assert _decide(model_age=100.0) == _decide(model_age=100.0)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: DriftSignal(True, 1.5, 1), "drift share"),
    (lambda: DriftSignal(True, 0.5, 0), "contradicts"),
    (lambda: DriftSignal(False, 0.5, -1), "consecutive_runs"),
    (lambda: PerformanceSignal({"h1": "x"}, {}, 10), "champion AUC for horizon h1"),
    (lambda: PerformanceSignal({}, {}, 10, loss_diff=(0.1,), sessions=()), "loss differences"),
    (lambda: PerformanceSignal({}, {}, 10, loss_diff=(float("inf"),), sessions=("2024-01-02",)), "non-finite"),
    (lambda: RetrainPolicy(triggers=("weather",)), "triggers"),
    (lambda: RetrainPolicy(decay_test="t"), "decay_test"),
    (lambda: RetrainPolicy(cusum_threshold=0), "cusum_threshold"),
    (lambda: RetrainPolicy(cusum_allowance=-0.1), "cusum_allowance"),
    (lambda: RetrainPolicy(drift_cooldown_days=-1), "drift_cooldown_days"),
    (lambda: PerformanceSignal({}, {"h3": 1.2}, 10), "random forest AUC for horizon h3"),
    (lambda: PerformanceSignal({}, {}, -1), "n_matured"),
    (lambda: RetrainPolicy(drift_persistence_k=0), "drift_persistence_k"),
    (lambda: RetrainPolicy(max_age_days=0), "max_age_days"),
    (lambda: RetrainPolicy(decay_cooldown_days=-1), "decay_cooldown_days"),
    (lambda: RetrainPolicy(min_matured=0), "min_matured"),
    (lambda: decide(None, None, None, -1.0, POLICY), "model_age"),
])
def test_invalid_inputs_name_the_value(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# --------------------------------------------------------------------------- Step 6: the sequential decay test


def _days(n: int) -> tuple[str, ...]:
    import pandas as pd

    return tuple(d.date().isoformat() for d in pd.bdate_range("2024-01-02", periods=n))


def test_cusum_is_the_running_sum_of_excess_loss_above_the_allowance():
    from spywatch.decision import cusum

    path = cusum([0.0, 0.5, 0.5, -2.0, 0.3, 0.3, 0.3], allowance=0.1, threshold=0.75)
    # 0, 0.4, 0.8 (alarm at index 2), 0, 0.2, 0.4, 0.6
    assert path.first_alarm == 2 and path.alarm
    assert path.peak == pytest.approx(0.8) and path.statistic == pytest.approx(0.6)
    assert not cusum([0.05] * 1000, allowance=0.1, threshold=0.5).alarm  # below the allowance never accumulates


def test_cusum_decay_fires_when_the_champion_keeps_trailing_the_forest():
    diffs = (0.002,) * 100 + (0.05,) * 40  # calm, then the champion loses 0.05 nats a session to the RF
    perf = PerformanceSignal({"h1": 0.6, "h3": 0.6, "h5": 0.6}, {"h1": 0.62, "h3": 0.6, "h5": 0.6}, 140,
                             loss_diff=diffs, sessions=_days(140))
    reason = _only(decide(QUIET_DRIFT, HEALTHY, perf, 100.0, CUSUM), ReasonCode.DECAY_BASELINE)
    # (0.05 - 0.01) per session from the 101st: 1.0 reached at the 125th session (index 124)
    assert reason.values["first_alarm"] == _days(140)[124]
    assert reason.values["peak"] >= 1.0 and reason.values["test"] == "cusum"
    calm = PerformanceSignal({"h1": 0.6}, {"h1": 0.62}, 140, loss_diff=(0.002,) * 140, sessions=_days(140))
    quiet = decide(QUIET_DRIFT, HEALTHY, calm, 100.0, CUSUM)
    assert not quiet.retrain  # a lower AUC than the forest alone no longer retrains: the test must accumulate
    assert any("CUSUM" in n.message for n in quiet.notes)


def test_a_horizon_with_one_class_is_skipped_with_a_note_not_a_crash():
    perf = PerformanceSignal({"h1": float("nan"), "h3": 0.6}, {"h1": float("nan"), "h3": 0.58}, 120,
                             loss_diff=(0.0,) * 3, sessions=_days(3))
    assert perf.skipped == ("h1",) and set(perf.auc_by_horizon) == {"h3"}
    decision = decide(QUIET_DRIFT, HEALTHY, perf, 10.0, CUSUM)
    assert not decision.retrain
    assert any(n.message == "horizon h1: one class only in the decay window, no AUC" for n in decision.notes)


def test_drift_waits_out_its_cooldown_after_training_or_confirmation():
    drifted = DriftSignal(dataset_drift=True, share=0.7, consecutive_runs=5)
    held = decide(drifted, HEALTHY, None, 12.0, CUSUM)
    assert not held.retrain
    assert any("drift cooldown 30" in n.message for n in held.notes)
    assert _only(decide(drifted, HEALTHY, None, 31.0, CUSUM), ReasonCode.DRIFT)


def test_a_policy_acts_only_on_its_triggers():
    old = 400.0
    never = RetrainPolicy(triggers=())
    decision = decide(DriftSignal(True, 0.9, 9), CollapseSignal(True, "collapsed", None), None, old, never)
    assert not decision.retrain
    assert sum("policy does not retrain" in n.message for n in decision.notes) == 3
    calendar = RetrainPolicy(triggers=("max_age",), max_age_days=91)
    assert decide(DriftSignal(True, 0.9, 9), HEALTHY, None, 92.0, calendar).codes == (ReasonCode.MAX_AGE,)
    assert decide(None, None, None, None, never).codes == (ReasonCode.NO_CHAMPION,)  # the first model always trains
