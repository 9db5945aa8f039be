"""The nightly pipeline end to end (plain Python): first run trains and promotes, later runs predict
and audit, re-runs are idempotent, bad data publishes nothing, a corrupted champion is refused,
and a kill mid-publish never tears an output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from spywatch.market_data import synthetic_bars
from tests.bars import write_csv
from spywatch.audit import CollapsePolicy
from spywatch.decision import RetrainPolicy
from spywatch.night import PipelineConfig, run_night
from spywatch.promotion import PromotionPolicy
from spywatch.publish import Publisher
from spywatch.registry import ModelRegistry
from spywatch.store import ParquetStore
from spywatch.vs_baseline import phrase

pytestmark = pytest.mark.slow

TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def cfg(root: Path, as_of: str, source: str, **kw) -> PipelineConfig:
    return PipelineConfig(source=source, root=root, as_of=as_of, model=TINY, max_epochs=6, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A root whose first nightly run (no champion yet) trained and promoted a model."""
    base = tmp_path_factory.mktemp("pipeline")
    data = write_csv(base / "bars.csv", synthetic_bars("2024-06-28", seed=11))
    root = base / "root"
    first = run_night(cfg(root, "2024-05-31", f"csv:{data}"), force=True)
    return root, data, first


@pytest.fixture
def root(trained, tmp_path):
    src, data, first = trained
    copy = tmp_path / "root"
    shutil.copytree(src, copy, symlinks=True)
    return copy, data, first


def test_first_run_trains_promotes_and_publishes(trained):
    root, _, first = trained
    a = first.audit.to_json_dict()
    assert first.status == "published", first.summary()
    assert [r["code"] for r in a["decision"]["reasons"]] == ["no_champion"]
    assert a["retrain"]["promoted"] and a["retrain"]["gate"]["promote"]
    registry = ModelRegistry(root / "models")
    assert registry.champion == a["model_version"] == a["retrain"]["challenger"]
    folder = Publisher(root).session_dir("2024-05-31")
    names = {p.name for p in folder.iterdir()}
    assert {"audit.json", "report.html", "predictions.parquet", "drift.html", "drift.json"} <= names
    preds = pd.read_parquet(folder / "predictions.parquet")
    assert sorted(preds["horizon"]) == ["h1", "h3", "h5"] and preds["probability"].between(0, 1).all()
    assert json.loads((folder / "audit.json").read_text())["collapse"]["verdict"] in ("healthy", "collapsed",
                                                                                      "inputs_out_of_range")


def test_the_first_champion_is_an_ensemble_with_its_spans_and_member_spread(trained, capsys):
    from spywatch.cli import main as cli_main
    from spywatch.policy import FitSettings

    root, _, first = trained
    a = first.audit.to_json_dict()
    members = FitSettings().members
    version = a["model_version"]
    assert a["retrain"]["members"] == members and a["retrain"]["gate"]["rule"] == "no_champion"
    # the challenger learned from every labelled session up to an embargo before a 250-session holdout
    periods = a["retrain"]["periods"]
    assert periods["val"] is None and periods["holdout"] == a["retrain"]["window"]
    assert cli_main(["models", "show", version, "--registry", str(root / "models"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["periods"]["fit"] == periods["fit"] and shown["periods"]["holdout"] == periods["holdout"]
    assert shown["periods"]["val"] is None and shown["periods"]["embargo_sessions"] == 5
    event = ModelRegistry(root / "models").history()[-1]
    assert event.reason["gate"]["rule"] == "no_champion" and event.reason["holdout"] == periods["holdout"]
    # every published probability carries the spread of the members, and the audit reports each member
    preds = pd.read_parquet(Publisher(root).session_dir("2024-05-31") / "predictions.parquet")
    assert preds["member_std"].between(0, 0.5).all() and (preds["member_std"] > 0).any()
    assert a["predictions"]["members"] == members and set(a["predictions"]["member_std"]) == {"h1", "h3", "h5"}
    assert [m["member"] for m in a["collapse"]["members"]] == list(range(members))


def test_models_list_and_show_are_written_for_a_person_and_a_wrong_path_gets_a_hint(trained, capsys, tmp_path):
    from spywatch.cli import main as cli_main

    root, _, first = trained
    a = first.audit.to_json_dict()
    version, periods = a["model_version"], a["retrain"]["periods"]
    holdout = a["retrain"]["challenger_metrics"]
    assert cli_main(["models", "list", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    [row] = [line for line in lines if version in line]
    mean = sum(m["auc"] for m in holdout.values()) / len(holdout)
    assert row.startswith(f"* {version}") and "2024-05-31" in row and " .. ".join(periods["fit"]) in row
    assert f"{mean:.3f} ({' / '.join(format(m['auc'], '.3f') for m in holdout.values())})" in row
    assert lines[0].lstrip().startswith("version") and lines[-1].startswith("* the champion")
    # the champion's row carries the baseline verdict of the night it predicted
    vs = a["health"]["vs_baseline"]
    assert vs["sessions"] > 0 and f"{vs['verdict']} {vs['difference']:+.3f}" in row
    assert row.endswith("manifest read (--verify checks)")  # the status column says what was checked

    assert cli_main(["models", "show", version, "--root", str(root)]) == 0
    text = capsys.readouterr().out
    for default in (["champion"], []):  # the champion by name, or by default
        assert cli_main(["models", "show", *default, "--root", str(root)]) == 0
        assert capsys.readouterr().out == text
    assert f"version   {version}   (the champion)" in text and "status    checksums verified" in text
    assert f"holdout   {' .. '.join(periods['holdout'])}" in text
    assert f"h1: AUC {holdout['h1']['auc']:.3f}" in text and "{" not in text  # no raw JSON for a person
    training = a["retrain"]["training"]
    assert f"training  {training['verdict']}" in text and f" {training['verdict']} " in row
    assert f"baseline  {phrase(first.audit.vs_baseline)} (the night of 2024-05-31" in text
    loss = training["members"][0]["fit_loss"][0]
    assert f"member 0: log loss on its training windows vs the prior's: h1 {loss:.4f}" in text

    assert cli_main(["models", "list", "--root", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model registry at" in err and "<root>/models" in err


def test_next_run_predicts_and_audits_and_rerun_is_idempotent(root, caplog):
    root, data, first = root
    c = cfg(root, "2024-06-28", f"csv:{data}", retrain="never")
    with caplog.at_level("INFO", logger="spywatch.night"):
        night = run_night(c, force=True)
    assert night.status == "published", night.summary()
    story = [r.getMessage() for r in caplog.records if r.name == "spywatch.night"]
    for stage in ("data", "champion", "features suite", "health", "drift", "decision", "published"):
        assert any(line.startswith(f"[2024-06-28] {stage}: ") for line in story), (stage, story)
    a = night.audit.to_json_dict()
    assert a["model_version"] == first.audit.to_json_dict()["model_version"] and a["retrain"] is None
    assert a["validation"]["features"]["success"] and a["drift"] is not None
    assert a["performance"] is not None and a["decision"] is not None
    for reason in a["decision"]["reasons"]:  # every reason is recorded with its numbers
        assert reason["message"] and isinstance(reason["values"], dict)
    pub = Publisher(root)
    before = pub.read_predictions()
    again = run_night(c, force=True)
    after = pub.read_predictions()
    assert len(after) == len(before) == 6  # two sessions x three horizons: no duplicates
    p1 = before[before.session == "2024-06-28"].set_index("horizon")["probability"]
    p2 = after[after.session == "2024-06-28"].set_index("horizon")["probability"]
    pd.testing.assert_series_equal(p1, p2)  # same data + same champion -> same probabilities
    assert set(after[after.session == "2024-06-28"]["run_id"]) == {again.audit.to_json_dict()["run_id"]}
    runs = [p for p in (root / "published" / ".runs").iterdir() if p.name.startswith("2024-06-28")]
    assert len(runs) == 1  # the replaced run folder is gone
    assert pub.latest().session == "2024-06-28" and not pub.latest().stale


def test_a_champion_that_holds_against_a_max_age_challenger_ages_from_then(root):
    root, data, first = root
    never_promote = PromotionPolicy(rule="margin", min_improvement=0.99, auc_floor=0.0)
    # the tiny test model may sit near the prior; this test is about age, so collapse cannot fire
    never_collapsed = CollapsePolicy(min_pred_std=0.0, min_representation_std=0.0)
    c = cfg(root, "2024-06-28", f"csv:{data}", retrain_policy=RetrainPolicy(max_age_days=20),
            promotion=never_promote, collapse=never_collapsed)
    night = run_night(c, force=True)
    assert [r["code"] for r in night.audit.to_json_dict()["decision"]["reasons"]] == ["max_age"]
    assert not night.audit.to_json_dict()["retrain"]["promoted"]
    assert night.audit.to_json_dict()["model_version"] == first.audit.to_json_dict()["model_version"]
    assert night.audit.to_json_dict()["champion"]["trained_session"] == "2024-05-31"
    assert night.audit.to_json_dict()["champion"]["confirmed_session"] == "2024-06-28"
    assert night.audit.to_json_dict()["champion"]["training"]["verdict"] == "healthy"  # the champion's training audit, shown nightly
    again = run_night(c, force=True)  # confirmed tonight: age 0, so max_age does not fire again
    assert again.audit.to_json_dict()["retrain"] is None
    assert not [r for r in again.audit.to_json_dict()["decision"]["reasons"] if r["code"] == "max_age"]
    earlier = run_night(replace(c, as_of="2024-05-31"), force=True)  # a past session re-run: the later confirmation
    assert earlier.status == "published", earlier.summary()  # does not count, and the age is never negative
    assert (earlier.audit.to_json_dict()["champion"]["trained_session"], earlier.audit.to_json_dict()["champion"]["confirmed_session"]) == \
        ("2024-05-31", None)
    age = [n for n in earlier.audit.to_json_dict()["decision"]["notes"] if "age_days" in n["values"]][0]["values"]["age_days"]
    assert age == 0.0


def test_a_challenger_whose_training_fails_the_audit_is_refused_before_scoring(root):
    """The original study's randn positional encoding in a challenger: its training verdict is
    pos_dominates_at_init, and the gate refuses it without reading the holdout; the champion stays
    and tonight is published with it."""
    root, data, first = root
    c = replace(cfg(root, "2024-06-28", f"csv:{data}", retrain_policy=RetrainPolicy(max_age_days=20),
                    collapse=CollapsePolicy(min_pred_std=0.0, min_representation_std=0.0)),
                model={**TINY, "pos_init": "randn"})
    night = run_night(c, force=True)
    assert night.status == "published", night.summary()
    r = night.audit.to_json_dict()["retrain"]
    assert r["training"]["verdict"] == "pos_dominates_at_init" and not r["promoted"]
    assert r["gate"]["rule"] == "training_unhealthy" and r["challenger_metrics"] == {}  # never scored
    assert "comparison" not in r["gate"]["details"]
    assert r["gate"]["reasons"][0].startswith("challenger training verdict pos_dominates_at_init: refused before scoring")
    assert any("positional encoding is" in line for line in r["gate"]["reasons"][1:])
    assert night.audit.to_json_dict()["model_version"] == first.audit.to_json_dict()["model_version"]
    assert f"challenger {r['challenger']}: not promoted (training: pos_dominates_at_init" in night.summary()
    registry = ModelRegistry(root / "models")
    assert registry.champion == first.audit.to_json_dict()["model_version"]
    last = registry.history()[-1]
    assert (last.event, last.version) == ("refuse", r["challenger"])
    assert last.reason["gate"]["rule"] == "training_unhealthy"
    # never compared, so the champion was not confirmed: its age and tonight's trigger stand
    assert "2024-06-28" not in registry.confirmations(first.audit.to_json_dict()["model_version"], auc_floor=0.0)
    [alert] = [a for a in night.audit.to_json_dict()["alerts"] if a["event"] == "spywatch.training.unhealthy"]
    assert alert["payload"]["version"] == r["challenger"] and alert["payload"]["verdict"] == "pos_dominates_at_init"
    # the version is kept for inspection, its verdict readable beside its findings
    shown = json.loads((registry.get(r["challenger"]).path / "metrics.json").read_text())["training"]
    assert shown["findings"][0]["finding"] == "pos_dominates_at_init" and shown["findings"][0]["pos_to_content"] > 1


def test_bad_data_publishes_nothing_and_marks_last_good_stale(root, tmp_path):
    root, data, _ = root
    bars = synthetic_bars("2024-06-28", seed=11)
    bars.loc["2024-06-27", "high"] = bars.loc["2024-06-27", "low"] * 0.9  # High below Low
    bad = write_csv(tmp_path / "bad.csv", bars)
    store_before = ParquetStore(root).path("SPY").read_bytes()
    preds_before = Publisher(root).read_predictions()
    night = run_night(cfg(root, "2024-06-28", f"csv:{bad}"), force=True)
    assert night.status == "validation_failed"
    fails = night.audit.to_json_dict()["validation"]["raw_bars"]["failures"]
    assert any("high" in line and "2024-06-27" in line for line in fails), fails
    assert ParquetStore(root).path("SPY").read_bytes() == store_before  # store untouched
    pd.testing.assert_frame_equal(Publisher(root).read_predictions(), preds_before)
    latest = Publisher(root).latest()
    assert latest.stale and latest.last_good_session == "2024-05-31" and latest.stale_since == "2024-06-28"
    folder = Publisher(root).session_dir("2024-06-28")
    assert not (folder / "predictions.parquet").exists()
    audit = json.loads((folder / "audit.json").read_text())
    assert audit["status"] == "validation_failed" and audit["alerts"][0]["event"] == "spywatch.validation.failed"


def test_corrupted_champion_is_refused_and_reported(root):
    root, data, first = root
    version = first.audit.to_json_dict()["model_version"]
    weights = root / "models" / "versions" / version / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}"), force=True)
    assert night.status == "failed"
    assert "weights.pt" in night.audit.to_json_dict()["champion_error"]
    assert ModelRegistry(root / "models").champion == version  # the alias did not move
    assert Publisher(root).latest().stale


KILLER = r"""
import sys, pandas as pd
from pathlib import Path
from spywatch.publish import Publisher
pub = Publisher(Path(sys.argv[1]))
big = b"x" * 3_000_000
print("ready", flush=True)
i = 0
while True:
    i += 1
    tag = str(i % 2).encode()
    rows = pd.DataFrame({"session": "2024-06-28", "horizon": ["h1", "h3", "h5"], "probability": [i % 2] * 3,
                         "model_version": "v", "data_hash": "d", "feature_hash": "f", "run_id": str(i),
                         "synthetic": True})
    pub.publish_session("2024-06-28", f"run{i}", {"a.bin": tag + big, "b.bin": tag + big, "audit.json": b"{}"})
    pub.upsert_predictions(rows)
"""


def test_kill_mid_publish_leaves_complete_old_or_new(tmp_path):
    pub = Publisher(tmp_path)
    pub.publish_session("2024-06-28", "run0", {"a.bin": b"0" + b"x" * 3_000_000, "b.bin": b"0" + b"x" * 3_000_000,
                                               "audit.json": b"{}"})
    for delay in (0.3, 0.55, 0.8, 1.1, 1.6):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        folder = pub.session_dir("2024-06-28")
        a, b = (folder / "a.bin").read_bytes(), (folder / "b.bin").read_bytes()
        assert a[:1] == b[:1] and len(a) == len(b) == 3_000_001  # one complete set, never a mix
        preds = pub.read_predictions()
        assert len(preds) in (0, 3) and preds["session"].is_unique is False or len(preds) <= 3
        assert pub.published_sessions() == ["2024-06-28"]


# ----------------------------------------------------------------------------- never lose a published session


def published_night(root: Path, data: Path) -> tuple[Publisher, dict[str, bytes]]:
    """Publish 2024-06-28 and return its folder's files, byte for byte."""
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), force=True)
    assert night.status == "published", night.summary()
    pub = Publisher(root)
    folder = pub.session_dir("2024-06-28")
    return pub, {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_forced_rerun_with_a_corrupt_last_bar_keeps_the_published_session_byte_for_byte(root, tmp_path):
    root, data, _ = root
    pub, before = published_night(root, data)
    table_before = pub.predictions_path.read_bytes()
    bars = synthetic_bars("2024-06-28", seed=11)
    bars.loc["2024-06-28", "high"] = bars.loc["2024-06-28", "low"] * 0.9  # the last bar: High below Low
    bad = write_csv(tmp_path / "bad.csv", bars)

    out = subprocess.run([str(Path(sys.executable).with_name("spywatch")), "run", "--no-prefect", "--force",
                          "--root", str(root), "--as-of", "2024-06-28", "--source", f"csv:{bad}", "--retrain", "never"],
                         capture_output=True, text=True, timeout=600)

    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "VALIDATION_FAILED" in out.stdout and "raw_bars_invalid" in out.stdout
    folder = pub.session_dir("2024-06-28")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # unchanged
    assert pub.predictions_path.read_bytes() == table_before
    (attempt,) = (folder / "attempts").iterdir()  # the failure audit, beside them
    audit = json.loads((attempt / "audit.json").read_text())
    assert audit["status"] == "validation_failed" and audit["failure"]["kind"] == "raw_bars_invalid"
    assert any("high" in line and "2024-06-28" in line for line in audit["validation"]["raw_bars"]["failures"])
    latest = pub.latest()
    assert latest.session == "2024-06-28" and latest.stale and latest.stale_since == "2024-06-28"
    assert "raw_bars validation failed" in latest.reason and latest.stale_at
    (problem,) = pub.consistency("2024-06-28")  # the session is intact; only the stale mark disagrees
    assert problem.startswith("latest.json marks the session stale") and problem.endswith("outputs are intact")

    # the next run finds the published session intact: it is not redone, and it is no longer stale
    again = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), retrain=None)
    assert again.status == "already_published"
    latest = pub.latest()
    assert latest.session == "2024-06-28" and latest.stale is False and latest.path == "sessions/2024-06-28"
    assert pub.consistency("2024-06-28") == []
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def _raise(*_args, **_kwargs):
    raise RuntimeError("injected failure")


# stage -> the pipeline function it runs (patched to raise)
STAGE_FUNCTIONS = {"fetch": "fetch_and_validate", "features": "load_features", "champion": "load_champion",
                   "validate_features": "validate_current_features", "audit": "predict_and_audit",
                   "drift": "measure_drift", "decide": "make_decision", "publish": "publish_night"}


@pytest.mark.parametrize("stage", [*STAGE_FUNCTIONS, "fetch_provider", "retrain"])
def test_a_failure_in_any_stage_marks_the_last_good_predictions_stale(root, monkeypatch, stage):
    from spywatch.market_data import MarketDataError
    from spywatch.night import run as pipeline

    root, data, _ = root
    pub = Publisher(root)
    good = pub.latest().session
    table_before = pub.predictions_path.read_bytes()
    c = cfg(root, "2024-06-28", f"csv:{data}", retrain="never")
    retrain = None
    if stage == "fetch_provider":
        monkeypatch.setattr(pipeline, "fetch_and_validate", lambda *a: (_ for _ in ()).throw(MarketDataError("429")))
    elif stage == "retrain":  # a retrain is due (a day's maximum age) and fails
        c = replace(c, retrain_policy=RetrainPolicy(triggers=("max_age",), max_age_days=1.0))
        retrain = _raise
    else:
        monkeypatch.setattr(pipeline, STAGE_FUNCTIONS[stage], _raise)

    result = pipeline.run_night(c, runner=pipeline.PlainRunner(fetch_backoff_s=0.01), retrain=retrain)

    assert not result.ok
    failure = result.audit.to_json_dict()["failure"]
    latest = pub.latest()
    if stage == "retrain":  # tonight still goes out with the champion; the run fails
        assert failure["kind"] == "retrain_failed" and result.status == "published"
        assert latest.session == "2024-06-28" and not latest.stale
        assert pub.read_audit("2024-06-28").failure.kind == "retrain_failed"
        return
    expected = {"fetch_provider": ("fetch_failed", "fetch")}.get(stage, ("stage_error", stage))
    assert (failure["kind"], failure["stage"]) == expected, failure
    assert result.status == "failed"
    assert latest.session == good and latest.stale and latest.stale_since == "2024-06-28", latest
    assert latest.reason == failure["reason"]
    assert pub.predictions_path.read_bytes() == table_before
    audit = json.loads(result.outputs["audit"].read_text())  # the failure audit is published
    assert audit["status"] == "failed" and audit["failure"] == failure and audit["predictions"] is None


# ----------------------------------------------------------------------------- model authenticity

KEY = "k" * 32


def _recompute_manifest(version_dir: Path, drop_signature: bool) -> None:
    """What someone who can write the folder but has no key can do: make the checksums match again."""
    import hashlib

    manifest = json.loads((version_dir / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (version_dir / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    if drop_signature:
        manifest.pop("signature", None)
    (version_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _sign_as_registered(version_dir: Path, key: str) -> None:
    """The signature a registration with ``key`` gives a version (the fixture's was trained unsigned)."""
    from spywatch.artifact import read_manifest

    manifest = read_manifest(version_dir)
    data = {**manifest.to_dict(), "signature": manifest.signed_with(key.encode())}
    (version_dir / "manifest.json").write_text(json.dumps(data, indent=2, sort_keys=True))


def _shift_output_bias(weights: Path, logits: float) -> None:
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    bias = [k for k in state if k.endswith("bias")][-1]  # the last layer's bias: the output logits
    state[bias] = state[bias] + logits
    torch.save(state, weights)


def test_a_signed_champion_publishes_and_a_tampered_or_unsigned_one_is_refused(root, monkeypatch, capsys):
    from spywatch.cli import main

    root, data, first = root
    version = first.audit.to_json_dict()["model_version"]
    vdir = root / "models" / "versions" / version
    monkeypatch.setenv("SPYWATCH_SIGNING_KEY", KEY)

    # unsigned (trained before the key was set): refused, the alias stays, the last good predictions go stale
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), force=True)
    assert night.status == "failed" and night.audit.to_json_dict()["failure"]["kind"] == "champion_refused", night.summary()
    assert "unsigned" in night.audit.to_json_dict()["champion_error"]
    assert Publisher(root).latest().stale and ModelRegistry(root / "models").champion == version

    # signed as a registration with the key signs it: it publishes
    _sign_as_registered(vdir, KEY)
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), force=True)
    assert night.status == "published", night.summary()
    honest = night.audit.to_json_dict()["predictions"]["latest"]["h1"]
    assert main(["models", "list", "--root", str(root), "--verify"]) == 0
    assert "verified" in capsys.readouterr().out

    # +3 logits on the output bias, checksums recomputed (no key to re-sign): refused, nothing published from it
    _shift_output_bias(vdir / "weights.pt", 3.0)
    _recompute_manifest(vdir, drop_signature=False)
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), force=True)
    assert night.status == "failed" and night.audit.to_json_dict()["failure"]["kind"] == "champion_refused"
    assert "signature does not match" in night.audit.to_json_dict()["champion_error"]
    latest = Publisher(root).latest()
    assert latest.stale and latest.session == "2024-06-28"
    published = Publisher(root).read_predictions()
    assert published[published["horizon"] == "h1"]["probability"].iloc[-1] == pytest.approx(honest)
    assert main(["models", "list", "--root", str(root), "--verify"]) == 1
    assert "signature does not match" in capsys.readouterr().out

    # the same tampering without a key: the checksums pass, which is all they promise (docs say so)
    monkeypatch.delenv("SPYWATCH_SIGNING_KEY")
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), force=True)
    assert night.status == "published" and night.audit.to_json_dict()["predictions"]["latest"]["h1"] > honest + 0.1


def test_a_weights_file_that_torch_refuses_to_unpickle_is_a_refused_champion(root):
    import torch

    root, data, first = root
    vdir = root / "models" / "versions" / first.audit.to_json_dict()["model_version"]
    torch.save({"payload": os.system}, vdir / "weights.pt")  # a pickle that imports a callable
    _recompute_manifest(vdir, drop_signature=True)
    night = run_night(cfg(root, "2024-06-28", f"csv:{data}", retrain="never"), force=True)
    assert night.status == "failed" and night.audit.to_json_dict()["failure"]["kind"] == "champion_refused", night.summary()
    assert "weights_only" in night.audit.to_json_dict()["champion_error"]


# ----------------------------------------------------------------------------- bounded echoes


def test_a_huge_csv_field_is_quoted_cut_everywhere_it_is_echoed(root, tmp_path, caplog):
    root, data, _ = root
    lines = data.read_text().splitlines()
    fields = lines[-3].split(",")
    fields[4] = "9" * 2_000_000  # a 2 MB Close
    lines[-3] = ",".join(fields)
    big = tmp_path / "big.csv"
    big.write_text("\n".join(lines) + "\n")
    night = run_night(cfg(root, "2024-06-28", f"csv:{big}", retrain="never"), force=True)
    assert night.status == "failed"
    assert "[2,000,000 characters, cut to 200]" in night.audit.to_json_dict()["failure"]["reason"]
    pub = Publisher(root)
    folder = pub.session_dir("2024-06-28")
    assert pub.latest_path.stat().st_size < 4_000
    assert (folder / "audit.json").stat().st_size < 40_000 and (folder / "report.html").stat().st_size < 200_000
    assert max(len(r.getMessage()) for r in caplog.records) < 5_000


def test_an_already_published_session_is_answered_without_starting_prefect(root):
    root, _, first = root
    out = subprocess.run([str(Path(sys.executable).with_name("spywatch")), "run", "--root", str(root),
                          "--as-of", "2024-05-31", "--source", "synthetic"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "session 2024-05-31 is already published" in out.stdout
    assert not (root / "prefect").exists()  # no local Prefect server was started for it


def test_a_night_deferred_for_the_fleets_one_pass_publishes_nothing_and_its_run_again_counts_its_bars(tmp_path):
    """``retrain_mode="one-pass"``: a night that wants a challenger stops before its retrain with
    nothing published; run again with what the pass gave it (here: the pass failed), it publishes
    that failure by its reason, and its audit counts the bars the stopped run took into the store
    (its own fetch finds none new)."""
    from spywatch.layout import RootLayout
    from spywatch.night.run import DEFERRED, GateFitted, defer_retrain

    data = write_csv(tmp_path / "bars.csv", synthetic_bars("2024-06-28", seed=11))
    c = cfg(tmp_path / "root", "2024-05-31", f"csv:{data}")
    stopped = run_night(c, retrain=defer_retrain)
    assert stopped.status == DEFERRED and stopped.audit.decision.retrain and stopped.audit.retrain is None
    publisher = Publisher(c.root)
    assert not publisher.is_published("2024-05-31") and not publisher.session_dir("2024-05-31").exists()
    taken = stopped.audit.data.new_sessions
    assert taken == len(pd.read_parquet(RootLayout(c.root).bars_file("SPY"))) > 0

    why = "RuntimeError: CUDA out of memory"
    again = run_night(c, retrain=GateFitted(None, why, deferred=stopped.audit.data))
    assert again.status == "failed" and again.failure.kind == "no_champion", again.failure
    assert f"the fleet's one-pass retrain fitted no challenger: {why}" in again.failure.reason
    published = publisher.read_audit("2024-05-31")
    assert published.retrain.error.endswith(why) and published.retrain.challenger is None
    assert published.data.new_sessions == taken and published.data.last_session == "2024-05-31"
