"""The run page's content (spywatch.report.run_page), from the real audits bench/audit_example.py published."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from spywatch.audit_schema import Drift, Retrain, check_audit
from spywatch.night.alerts import DRIFT_EVENT, alerts_for
from spywatch.report import run_page
from spywatch.report.text import drift_detail

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def audit():
    return json.loads((DATA / "audit_example.json").read_text())


@pytest.fixture
def failure():
    return json.loads((DATA / "audit_validation_failure.json").read_text())


def test_summary_names_the_model_or_says_there_is_none_and_the_failure_and_stale_since(audit, failure):
    text = run_page.summary_markdown(audit["session"], audit["status"], check_audit(audit), {})
    assert f"model `{audit['model_version']}`" in text
    for h, p in audit["predictions"]["latest"].items():
        if h != "date":
            assert f"| {h} | {p:.3f} | {audit['predictions']['member_std'][h]:.3f} |" in text

    text = run_page.summary_markdown(failure["session"], failure["status"], check_audit(failure), {})
    assert "model `None`" not in text and "no champion" in text
    assert f"`{failure['failure']['kind']}` in stage `{failure['failure']['stage']}`" in text
    assert f"predictions stale since {failure['stale']['stale_since']}" in text and "since ?" not in text


def test_health_shows_the_evidence_per_horizon_and_member(audit):
    text = run_page.health_markdown(check_audit(audit))
    ev = audit["collapse"]["evidence"]
    vs = audit["health"]["vs_baseline"]
    assert text.startswith(f"# Model health: **{audit['collapse']['verdict']} · {vs['verdict']}**\n\n"
                           f"lagging the RF by {-vs['difference']:.3f}")
    for h, std in ev["pred_std"].items():
        assert f"| {h} | {ev['pred_mean'][h]:.3f} | {std:.4f} | {ev['prior'][h]:.3f} |" in text
    assert f"| encoder output std (pooled) | {ev['representation_std']:.3g} |" in text
    assert f"## Members ({len(audit['collapse']['members'])})" in text
    assert run_page.health_markdown(check_audit({**audit, "collapse": None})) is None


def test_drift_table_lists_every_test_drifted_first(audit):
    rows = run_page.drift_table(check_audit(audit))
    training = [r for r in rows if r["rule"] == "vs training"]
    regime = [r for r in rows if r["rule"] == "vs the last year"]
    assert len(training) == len(audit["drift"]["per_feature"]) and len(regime) == len(audit["drift"]["regime"]["per_feature"])
    flags = [r["drifted"] for r in training]
    assert flags == sorted(flags, key=lambda f: f != "yes")  # drifted rows first
    assert {r["feature"] for r in training if r["drifted"] == "yes"} == set(audit["drift"]["drifted_features"])


def test_drift_detail_says_which_rule_fired_and_that_a_long_list_was_cut(audit):
    d = audit["drift"]
    text = drift_detail(Drift.model_validate(d))
    assert text.startswith("fired: " + " and ".join(d["drift_reasons"]) + " rule")
    assert f"{round(100 * d['share'])}%" in text and str(d["share"]) not in text  # rounded
    many = copy.deepcopy(d)
    many["drifted_features"] = [f"feature_{i:02d}" for i in range(15)]
    text = drift_detail(Drift.model_validate(many))
    assert "feature_04 and 10 more (list cut at 5)" in text and "feature_05" not in text


def test_the_drift_alert_ranks_by_severity_rounds_and_says_when_it_cut(audit):
    d = copy.deepcopy(audit["drift"])
    for i in range(12):
        d["per_feature"][f"extra_{i:02d}"] = {"drifted": True, "method": "ks", "score": 10.0 ** -(i + 1),
                                             "score_kind": "p_value", "threshold": 0.01}
    [alert] = [a for a in alerts_for(check_audit({**audit, "drift": d, "retrain": None})) if a.event == DRIFT_EVENT]
    p = alert.payload
    assert p["share"] == round(d["share"], 3) and p["drifted_features_cut"] is True
    assert p["drifted_features"][0] == "extra_11" and len(p["drifted_features"]) == 10  # smallest p-value first
    assert p["detail"] == drift_detail(Drift.model_validate(d))


def test_gate_shows_the_paired_comparison_the_rule_and_the_device(audit):
    retrain = {**audit["retrain"], "device": "cpu", "device_warning": "the retrain ran on work pool 'gpu' but ..."}
    text = run_page.gate_markdown(Retrain.model_validate(retrain), audit["session"])
    c = retrain["gate"]["details"]["comparison"]
    assert f"**{c['estimate']:+.4f}**, 90% CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]" in text
    assert f"rule `{retrain['gate']['details']['rule']}`" in text and "trained on **cpu**" in text
    assert "**Warning:** the retrain ran on work pool 'gpu'" in text
    assert f"Training audit: **{retrain['training']['verdict']}**" in text
    assert run_page.gate_markdown(Retrain(error="boom", challenger=None, promoted=False), "x") is None
    assert run_page.gate_markdown(None, "x") is None


def test_a_gpu_pool_retrain_on_the_cpu_is_warned_about_and_nothing_else_is():
    from spywatch.train import device_warning

    assert "torch.cuda.is_available() is False" in device_warning("gpu", "auto", "cpu")
    assert device_warning("gpu", "auto", "cuda:0") is None
    assert device_warning("cpu", "auto", "cpu") is None and device_warning(None, "auto", "cpu") is None
