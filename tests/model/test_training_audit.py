"""The training audit provoked: each finding from a real training run of the project's own model
and loop on real SPY data (fit 2003-2013, the 2014 sessions followed as the holdout), and the
default on the same data healthy. Small: a few thousand windows, a few epochs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from spywatch.evaluate import ORIGINAL_MODEL, ORIGINAL_TRAIN
from spywatch.model import PatchTSTConfig
from spywatch.train import TrainConfig, Windows, make_windows, train_ensemble, train_model
from spywatch.training_audit import FINDINGS, TrainingThresholds, training_section

NAMES = ["h1", "h3", "h5"]
FIT = ("2003-01-02", "2013-12-20")
HOLDOUT = ("2014-01-03", "2014-12-23")


@pytest.fixture(scope="module")
def spy_windows(spy_bars):
    from spywatch.dataset import build_table
    from spywatch.evaluate import model_inputs

    table = build_table(spy_bars)
    out = {}
    for mode in ("normalized", "raw"):
        frame = model_inputs(table, mode, pd.Timestamp(FIT[1])).frame
        out[mode] = tuple(make_windows(frame, table.targets, 20, *span).labelled() for span in (FIT, HOLDOUT))
    return out


def audit(spy_windows, mode="normalized", model=None, train=None, members=1, fit=None):
    fit_w, hold_w = spy_windows[mode]
    fit_w = fit if fit is not None else fit_w
    cfg = PatchTSTConfig(n_channels=fit_w.X.shape[2], **(model or {}))
    tc = TrainConfig(**{"max_epochs": 5, "batch_size": 256, **(train or {})})
    result = train_ensemble(fit_w, None, cfg, tc, members, monitor=hold_w, monitor_name="holdout")
    return training_section([m.evidence for m in result.members], NAMES), result


def findings(section) -> dict[str, dict]:
    return {f["finding"]: f for f in section["findings"]}


def test_the_default_on_real_data_is_healthy_and_every_reading_is_recorded(spy_windows):
    section, result = audit(spy_windows, members=2)
    assert section["verdict"] == "healthy", section["findings"]
    assert len(section["members"]) == 2
    for ev in section["members"]:
        assert ev["groups"] == ["patch_embedding", "positional_encoding", "layer_0", "head"]
        assert ev["val_source"] == "holdout" and len(ev["epochs"]) == 5
        assert ev["init"]["pos_to_content"] < 0.2 and all(0 < s < 0.1 for s in ev["init"]["pred_std"])
        for e in ev["epochs"]:
            assert all(v > 1e-4 for v in e["grad_norm"].values()), e["grad_norm"]
            assert all(1e-6 < v < 0.2 for v in e["update_ratio"].values()), e["update_ratio"]
        assert all(v > 1e-3 for v in ev["weight_change"].values())
        # the loss got below the prior's, on the training windows and on the holdout
        last = ev["epochs"][-1]
        assert any(t < p for t, p in zip(last["train_loss"], ev["prior_loss"]["train"]))
        best = [min(e["train_loss"][j] for e in ev["epochs"]) for j in range(3)]
        assert max(1 - b / p for b, p in zip(best, ev["prior_loss"]["train"])) > 3 * TrainingThresholds().prior_margin
        best = [min(e["val_loss"][j] for e in ev["epochs"]) for j in range(3)]
        assert all(b < p for b, p in zip(best, ev["prior_loss"]["val"]))


def test_the_original_studys_choices_leave_the_positional_encoding_without_gradient(spy_windows):
    """The original study's choices (raw inputs: Close, MACD, ATR, RSI, Volume unscaled; randn
    positional encoding; sigmoid + BCELoss; flatten head; post-norm BatchNorm): Volume (~1e8)
    drowns the positional encoding, and the post-norm BatchNorm normalises it away: no gradient
    reaches it. The patch embeddings are 10^4-10^5 times louder."""
    section, _ = audit(spy_windows, "raw", ORIGINAL_MODEL, ORIGINAL_TRAIN)
    assert section["verdict"] == "dead_layers", section["findings"]
    dead = findings(section)["dead_layers"]
    assert dead["groups"] == ["positional_encoding"] and dead["grad_norm"]["positional_encoding"] < 1e-6 * dead["median"]
    assert section["members"][0]["init"]["pos_to_content"] < 1e-3


def test_raw_inputs_into_the_default_model_explode_the_heads_gradient(spy_windows):
    """The head's skip inputs are the last session as given: unscaled, Volume (~1e8) reaches the
    head, its gradient is millions of times the other groups', and the saturated outputs never
    even get to the prior's loss."""
    section, _ = audit(spy_windows, "raw")
    f = findings(section)
    assert section["verdict"] == "exploding_gradients" and f["exploding_gradients"]["groups"] == ["head"]
    assert f["exploding_gradients"]["grad_norm"]["head"] > 1e3 * f["exploding_gradients"]["median"]
    assert "learned_prior_only" in f and "saturated outputs" in f["learned_prior_only"]["text"]


def test_randn_positional_encoding_on_normalised_inputs_dominates_at_init(spy_windows):
    section, _ = audit(spy_windows, "normalized", {"pos_init": "randn"})
    f = findings(section)
    assert section["verdict"] == "pos_dominates_at_init" and f["pos_dominates_at_init"]["pos_to_content"] > 1.0
    assert set(f) == {"pos_dominates_at_init"}  # it still learns: nothing else fires


def test_a_frozen_encoder_is_dead_and_does_not_update_on_both_training_paths(spy_windows):
    encoder = ("patch_embedding", "positional_encoding", "layer_0")
    for stacked in (True, False):
        section, _ = audit(spy_windows, train={"freeze": encoder, "stacked": stacked}, members=2)
        f = findings(section)
        assert section["verdict"] == "dead_layers"
        assert f["dead_layers"]["groups"] == list(encoder) and f["no_update"]["groups"] == list(encoder)
        for ev in section["members"]:
            assert all(ev["weight_change"][g] == 0.0 for g in encoder) and ev["weight_change"]["head"] > 1e-3


def test_learning_rate_zero_does_not_update(spy_windows):
    section, _ = audit(spy_windows, train={"lr": 0.0})
    f = findings(section)
    assert section["verdict"] == "no_update"
    assert f["no_update"]["groups"] == section["members"][0]["groups"]  # every group
    assert "dead_layers" not in f  # the gradients were there
    # left at its init (mean prediction ~0.5 against a prior of 0.14-0.47), it never beat the prior
    assert "learned_prior_only" in f


def test_an_absurd_learning_rate_diverges(spy_windows):
    section, _ = audit(spy_windows, train={"lr": 10.0})
    f = findings(section)
    assert section["verdict"] == "diverged" and f["diverged"]["epoch"] == 1
    ev = section["members"][0]
    first = ev["epochs"][0]["train_loss"]
    assert max(first) > TrainingThresholds().max_loss_to_prior * max(ev["prior_loss"]["train"])


def test_a_poisoned_batch_diverges_on_both_training_paths(spy_windows):
    fit_w, _ = spy_windows["normalized"]
    X = fit_w.X.copy()
    X[100, 5, 2] = np.nan  # one bad value in one window
    poisoned = Windows(X, fit_w.y, fit_w.dates)
    for stacked in (True, False):
        section, _ = audit(spy_windows, train={"stacked": stacked}, members=2, fit=poisoned)
        assert section["verdict"] == "diverged"
        assert {f["member"] for f in section["findings"] if f["finding"] == "diverged"} == {0, 1}
        assert "NaN or inf" in findings(section)["diverged"]["text"]


def test_inputs_without_information_learn_the_prior_only(spy_windows):
    """Every window the same (a feature pipeline that emits constants): the best the model can do
    is the prior, and its loss on the training windows stays at the prior's."""
    fit_w, _ = spy_windows["normalized"]
    constant = np.broadcast_to(fit_w.X.mean(axis=0), fit_w.X.shape).copy()
    section, _ = audit(spy_windows, fit=Windows(constant, fit_w.y, fit_w.dates))
    f = findings(section)
    assert section["verdict"] == "learned_prior_only" and set(f) == {"learned_prior_only"}
    assert all(abs(g) < 0.002 for g in f["learned_prior_only"]["gain_vs_prior"].values())


def test_both_training_paths_record_the_same_evidence():
    """Without dropout the stacked members train as they train alone (test_model): their recorded
    readings agree too, gradient norms per group included (the stack's are per-member slices)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 20, 4)).astype("float32")
    y = (rng.random((400, 3)) < 0.3).astype("float32")
    w = Windows(X, y, pd.date_range("2001-01-01", periods=400))
    cfg = PatchTSTConfig(n_channels=4, dropout=0.0, head_dropout=0.0)
    tc = TrainConfig(max_epochs=3, batch_size=64, seed=5)
    stacked = train_ensemble(w, None, cfg, tc, 2, monitor=w, monitor_name="train")
    alone = [train_model(w, None, cfg, replace(tc, seed=5 + i), monitor=w, monitor_name="train") for i in range(2)]
    for s, a in zip(stacked.members, alone):
        es, ea = s.evidence, a.evidence
        for key in ("pred_std", "pred_mean", "loss", "pos_to_content"):
            assert es["init"][key] == pytest.approx(ea["init"][key], rel=1e-5)
        for xs, xa in zip(es["epochs"], ea["epochs"]):
            assert xs["train_loss"] == pytest.approx(xa["train_loss"], rel=1e-4)
            assert xs["val_loss"] == pytest.approx(xa["val_loss"], rel=1e-3)
            assert xs["grad_norm"] == pytest.approx(xa["grad_norm"], rel=1e-3)
            assert xs["update_ratio"] == pytest.approx(xa["update_ratio"], rel=1e-2)
        assert es["weight_change"] == pytest.approx(ea["weight_change"], rel=1e-2)


def test_recording_can_be_switched_off_and_the_finding_order_is_stated():
    rng = np.random.default_rng(1)
    w = Windows(rng.standard_normal((300, 20, 3)).astype("float32"),
                (rng.random((300, 3)) < 0.3).astype("float32"), pd.date_range("2001-01-01", periods=300))
    r = train_model(w, None, PatchTSTConfig(n_channels=3), TrainConfig(max_epochs=1, batch_size=64, record=False))
    assert r.evidence is None and training_section([r.evidence], NAMES) is None
    assert FINDINGS[0] == "diverged" and FINDINGS[-1] == "learned_prior_only"
    with pytest.raises(ValueError, match="cannot freeze \\['encoder'\\]"):
        train_model(w, None, PatchTSTConfig(n_channels=3), TrainConfig(max_epochs=1, batch_size=64, freeze=("encoder",)))


def test_member_lines_show_null_readings_of_an_audit_as_a_dash():
    """An audit.json writes a non-finite reading as null; the lines a person reads show "-" there."""
    import json
    from pathlib import Path

    from spywatch.audit_schema import Training
    from spywatch.training_audit import member_lines

    audit = json.loads((Path(__file__).resolve().parents[1] / "data" / "audit_example.json").read_text())
    section = audit["retrain"]["training"]
    clean = member_lines(Training.model_validate(section))
    member = section["members"][0]
    group = next(iter(member["weight_change"]))
    for epoch in member["epochs"]:
        epoch["grad_norm"][group] = None
        epoch["update_ratio"][group] = None
    member["weight_change"][group] = None
    member["init"]["pred_std"][0] = None
    lines = member_lines(Training.model_validate(section))
    assert len(lines) == len(clean) and lines[1:] == clean[1:]
    assert lines[0].count(f"{group} -") == 3  # its grad norm, update ratio and weight change
    assert "P spread -/" in lines[0] and lines[0] != clean[0]
