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

POLICY = RetrainPolicy(drift_persistence_k=3, auc_floor=0.52, rf_margin=0.0, min_matured=60, max_age_days=90,
                       decay_cooldown_days=5)

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
    policy = RetrainPolicy(decay_cooldown_days=20)
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
    policy = RetrainPolicy(rf_margin=0.02, min_matured=60)
    assert not _decide(performance=perf, policy=policy).retrain


def test_decay_is_not_judged_on_too_few_matured_labels():
    perf = PerformanceSignal({"h1": 0.40}, {"h1": 0.60}, n_matured=59)
    decision = _decide(performance=perf)
    assert not decision.retrain
    skipped = [n for n in decision.notes if n.code is ReasonCode.SKIPPED]
    assert skipped[0].message == "decay check skipped: 59 matured labels < 60"


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
                                                   "decay check: no performance on matured labels"}


def test_decide_is_pure():
    assert _decide(model_age=100.0) == _decide(model_age=100.0)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: DriftSignal(True, 1.5, 1), "drift share"),
    (lambda: DriftSignal(True, 0.5, 0), "contradicts"),
    (lambda: DriftSignal(False, 0.5, -1), "consecutive_runs"),
    (lambda: PerformanceSignal({"h1": float("nan")}, {}, 10), "champion AUC for horizon h1"),
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
