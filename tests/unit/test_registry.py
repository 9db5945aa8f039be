"""Registry: immutable versions, gated promotion, rollback, refusal of damaged models, kill safety."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import spywatch.atomic
import spywatch.registry as registry_mod
from spywatch.artifact import MANIFEST_NAME, ArtifactError, write_artifact
from spywatch.cli import main as cli_main
from spywatch.promotion import GateResult, ModelScore, PromotionPolicy, gate
from spywatch.registry import ModelRegistry, NoChampionError, RegistryError

CHILD = Path(__file__).with_name("registry_kill_child.py")
POLICY = PromotionPolicy(rule="margin", min_improvement=0.01, auc_floor=0.52)
WINDOW = "2026-06-01..2026-11-20"


def _writer(tag: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "config.json").write_text(json.dumps({"tag": tag}))
        (folder / "weights.pt").write_bytes(tag.encode() * 512)

    return write


def _score(*aucs: float, collapsed: bool = False, window: str = WINDOW) -> ModelScore:
    return ModelScore({f"h{h}": a for h, a in zip((1, 3, 5), aucs)}, collapsed=collapsed, window=window)


@pytest.fixture
def reg(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


@pytest.fixture
def two(reg) -> tuple[ModelRegistry, str, str]:
    """A registry whose champion is v1, with a second version v2 registered."""
    v1 = reg.register(_writer("one"), version="v1")
    v2 = reg.register(_writer("two"), version="v2")
    reg.promote(v1, {"note": "first"})
    return reg, v1, v2


def _flip_byte(path: Path, at: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- versions

def test_register_assigns_sortable_content_ids(reg):
    t0 = dt.datetime(2026, 11, 24, 7, 55, tzinfo=dt.timezone.utc)
    a = reg.register(_writer("a"), meta={"seed": 1}, now=t0)
    b = reg.register(_writer("b"), now=t0 + dt.timedelta(days=1))
    assert re.fullmatch(r"20261124T075500Z-[0-9a-f]{8}", a)
    assert [i.version for i in reg.list()] == sorted([a, b]) == [a, b]
    version = reg.get(a)
    assert version.path == reg.versions_dir / a
    assert version.manifest.meta == {"seed": 1}
    assert set(version.manifest.names) == {"config.json", "weights.pt"}
    assert reg.champion is None


def test_register_given_name_is_immutable(reg):
    reg.register(_writer("a"), version="fixed")
    with pytest.raises(RegistryError, match="version fixed already exists"):
        reg.register(_writer("b"), version="fixed")
    assert json.loads((reg.versions_dir / "fixed" / "config.json").read_text()) == {"tag": "a"}


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", ""])
def test_invalid_version_ids_are_refused(reg, bad):
    with pytest.raises(RegistryError, match="invalid version id"):
        reg.register(_writer("a"), version=bad)
    with pytest.raises(RegistryError, match="invalid version id"):
        reg.get(bad)


def test_register_from_folder_and_from_artifact(reg, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    _writer("plain")(plain)
    v = reg.register(plain, meta={"from": "folder"})
    assert reg.get(v).manifest.meta == {"from": "folder"}

    art = write_artifact(tmp_path / "art", {"weights.pt": b"w" * 100}, {"trainer": "t", "seed": 3})
    v2 = reg.register(art, meta={"seed": 4})
    assert reg.get(v2).manifest.meta == {"trainer": "t", "seed": 4}

    _flip_byte(art / "weights.pt")
    with pytest.raises(ArtifactError, match=r"weights\.pt fails its checksum"):
        reg.register(art)


def test_failed_build_leaves_no_version(reg):
    def boom(folder: Path) -> None:
        (folder / "weights.pt").write_bytes(b"half")
        raise RuntimeError("trainer died")

    with pytest.raises(RuntimeError):
        reg.register(boom)
    assert reg.list() == []
    assert [p.name for p in reg.versions_dir.iterdir()] == []


def test_unknown_version_is_named(reg):
    with pytest.raises(RegistryError, match="unknown version nope"):
        reg.get("nope")
    with pytest.raises(RegistryError, match="unknown version nope"):
        reg.promote("nope", {})


# --------------------------------------------------------------------------- promote, rollback, history

def test_promote_and_rollback_move_the_alias_and_keep_history(two):
    reg, v1, v2 = two
    assert reg.champion == v1
    assert reg.load_champion().version == v1
    record = reg.promote(v2, {"note": "better"})
    assert record.previous == (v1,) and reg.champion == v2
    assert json.loads(reg.champion_path.read_text())["version"] == v2
    back = reg.rollback({"note": "bad night"})
    assert back.version == v1 and back.previous == () and reg.champion == v1
    assert [(e.seq, e.event, e.version, e.champion_before) for e in reg.history()] == [
        (1, "promote", v1, None), (2, "promote", v2, v1), (3, "rollback", v1, v2)]
    assert reg.history()[2].reason == {"note": "bad night"}
    with pytest.raises(RegistryError, match=f"champion {v1} has no previous champion"):
        reg.rollback()


def test_list_and_show_mark_the_champion(two):
    reg, v1, v2 = two
    rows = {i.version: i for i in reg.list(verify=True)}
    assert rows[v1].is_champion and not rows[v2].is_champion
    assert all(i.verified and i.problem is None for i in rows.values())
    info = reg.show(v2)
    assert info.verified and info.files == ("config.json", "weights.pt")


def test_promoting_the_champion_again_is_refused(two):
    reg, v1, _ = two
    with pytest.raises(RegistryError, match=f"{v1} is already the champion"):
        reg.promote(v1, {})


def test_no_champion(reg):
    with pytest.raises(NoChampionError, match="nothing has been promoted"):
        reg.load_champion()
    with pytest.raises(NoChampionError, match="nothing to roll back"):
        reg.rollback()
    assert reg.champion is None and reg.history() == [] and reg.list() == []


# --------------------------------------------------------------------------- the gate (pure)

def test_gate_without_champion_needs_floor_and_no_collapse():
    ok = gate(_score(0.55, 0.56, 0.57), None, POLICY)
    assert ok.promote
    assert "challenger mean AUC 0.5600 >= floor 0.5200" in ok.reasons
    assert "no champion: floor and collapse checks suffice" in ok.reasons
    low = gate(_score(0.50, 0.51, 0.52), None, POLICY)
    assert not low.promote and "challenger mean AUC 0.5100 < floor 0.5200" in low.reasons
    assert low.details["checks"] == {"not_collapsed": True, "floor": False}


def test_gate_refuses_a_collapsed_challenger_even_with_great_auc():
    result = gate(_score(0.9, 0.9, 0.9, collapsed=True), _score(0.55, 0.55, 0.55), POLICY)
    assert not result.promote
    assert "challenger predictions collapsed" in result.reasons
    assert result.details["checks"]["not_collapsed"] is False


@pytest.mark.parametrize(("challenger", "promote", "line"), [
    ((0.57, 0.57, 0.57), True, "challenger mean AUC 0.5700 vs champion 0.5500: +0.0200 >= required +0.0100"),
    ((0.555, 0.555, 0.555), False, "challenger mean AUC 0.5550 vs champion 0.5500: +0.0050 < required +0.0100"),
    ((0.54, 0.54, 0.54), False, "challenger mean AUC 0.5400 vs champion 0.5500: -0.0100 < required +0.0100"),
])
def test_gate_margin_on_mean_auc(challenger, promote, line):
    result = gate(_score(*challenger), _score(0.55, 0.55, 0.55), POLICY)
    assert result.promote is promote
    assert line in result.reasons
    assert result.details["delta_mean_auc"] == pytest.approx(sum(challenger) / 3 - 0.55)
    json.dumps(result.to_dict())  # JSON-ready for the run record


def test_gate_waives_margin_against_a_collapsed_champion():
    result = gate(_score(0.53, 0.53, 0.53), _score(0.60, 0.60, 0.60, collapsed=True), POLICY)
    assert result.promote
    assert "champion collapsed (mean AUC 0.6000): comparison waived" in result.reasons


def test_gate_refuses_to_compare_different_windows_or_horizons():
    with pytest.raises(ValueError, match="same out-of-time window"):
        gate(_score(0.6, 0.6, 0.6), _score(0.5, 0.5, 0.5, window="other"), POLICY)
    with pytest.raises(ValueError, match="horizons"):
        gate(_score(0.6, 0.6, 0.6), _score(0.5, 0.5), POLICY)


@pytest.mark.parametrize("bad", [1.5, -0.1, "x"])
def test_score_rejects_impossible_auc(bad):
    with pytest.raises(ValueError, match="AUC for horizon h1"):
        _score(bad)


def test_score_skips_a_horizon_without_auc_and_names_it():
    score = _score(float("nan"), 0.6, 0.62)
    assert score.skipped == ("h1",) and score.mean_auc == pytest.approx(0.61)
    with pytest.raises(ValueError, match="at least one horizon AUC"):
        _score(float("nan"))
    result = gate(score, None, POLICY)
    assert result.promote and "horizon(s) ['h1'] skipped: one class only in the holdout" in result.reasons


# --------------------------------------------------------------------------- the paired gate

PAIRED = PromotionPolicy()  # the default: paired block bootstrap at 90%, non-inferiority margin 0.01


def _holdout(shift: float, seed: int = 0, n: int = 250):
    """Labels and two models' probabilities on the same sessions: the challenger's signal is the
    champion's plus ``shift`` (in logit units per unit of label), with independent noise each."""
    import numpy as np

    from spywatch.comparison import compare

    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.15, 0.35, 0.5]).astype(float)
    base = rng.normal(size=(n, 3))
    champion = 1 / (1 + np.exp(-(0.8 * y + base + 0.1 * rng.normal(size=(n, 3)))))
    challenger = 1 / (1 + np.exp(-((0.8 + shift) * y + base + 0.1 * rng.normal(size=(n, 3)))))
    comp = compare(y, challenger, champion, ["h1", "h3", "h5"], metric="mean_auc", config=PAIRED.bootstrap(5),
                   a="challenger", b="champion")
    return comp, _score(*(comp.by_horizon[h]["a"] for h in ("h1", "h3", "h5"))), \
        _score(*(comp.by_horizon[h]["b"] for h in ("h1", "h3", "h5")))


def test_paired_gate_promotes_a_challenger_better_beyond_the_noise():
    comp, challenger, champion = _holdout(shift=0.8)
    assert comp.ci_low > 0
    result = gate(challenger, champion, PAIRED, comp, fresher=False)
    assert result.promote and result.rule == "better"
    assert any("90% CI" in r and "P(challenger better)" in r for r in result.reasons)
    assert result.details["comparison"]["ci_low"] == comp.ci_low
    json.dumps(result.to_dict())


def test_paired_gate_prefers_an_equal_challenger_only_when_it_learned_from_fresher_data():
    comp, challenger, champion = _holdout(shift=0.0, seed=3)
    assert comp.ci_low < 0 < comp.ci_high and comp.ci_low > -PAIRED.non_inferiority_margin
    fresh = gate(challenger, champion, PAIRED, comp, fresher=True)
    assert fresh.promote and fresh.rule == "non_inferior_fresher"
    stale = gate(challenger, champion, PAIRED, comp, fresher=False)
    assert not stale.promote and stale.rule == "refused"


def test_paired_gate_refuses_a_worse_challenger_even_when_fresher():
    comp, challenger, champion = _holdout(shift=-0.8)
    assert comp.ci_high < 0
    result = gate(challenger, champion, PAIRED, comp, fresher=True)
    assert not result.promote and result.details["checks"]["paired"] is False


def test_paired_gate_needs_the_comparison():
    _, challenger, champion = _holdout(shift=0.0)
    with pytest.raises(ValueError, match="paired comparison"):
        gate(challenger, champion, PAIRED, None)


def test_promotion_checks_the_scored_champion_inside_the_lock(two):
    reg, v1, v2 = two
    comp, challenger, champion = _holdout(shift=0.8)
    with pytest.raises(RegistryError, match="champion moved to v1 while v0 was being scored"):
        reg.promote_if_better(v2, challenger, champion, PAIRED, comparison=comp, champion_version="v0")
    assert reg.champion == v1 and [e.event for e in reg.history()] == ["promote"]
    result = reg.promote_if_better(v2, challenger, champion, PAIRED, comparison=comp, champion_version=v1,
                                   context={"session": "2026-11-27"})
    assert result.promote and reg.champion == v2
    assert reg.history()[-1].reason["gate"]["rule"] == "better"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rule": "vote"}, "rule"), ({"level": 1.0}, "level"), ({"non_inferiority_margin": 0.5}, "non_inferiority"),
    ({"n_boot": 10}, "n_boot"), ({"auc_floor": 2.0}, "auc_floor"),
])
def test_promotion_policy_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromotionPolicy(**kwargs)


# --------------------------------------------------------------------------- gated promotion in the registry

def test_worse_challenger_leaves_the_alias_and_is_recorded(two):
    reg, v1, v2 = two
    result = reg.promote_if_better(v2, _score(0.54, 0.54, 0.54), _score(0.56, 0.56, 0.56), POLICY)
    assert isinstance(result, GateResult) and not result.promote
    assert reg.champion == v1
    last = reg.history()[-1]
    assert (last.event, last.version, last.champion_before) == ("refuse", v2, v1)
    assert last.reason["gate"]["reasons"] == list(result.reasons)


def test_a_champion_that_holds_its_ground_is_confirmed_at_that_session(two):
    reg, v1, v2 = two
    v3 = reg.register(_writer("three"), version="v3")
    v4 = reg.register(_writer("four"), version="v4")
    assert reg.confirmations(v1, POLICY.auc_floor) == []
    reg.promote_if_better(v2, _score(0.54, 0.54, 0.54), _score(0.56, 0.56, 0.56), POLICY,
                          context={"session": "2022-08-31"})
    assert reg.history()[-1].reason["session"] == "2022-08-31"
    assert reg.confirmations(v1, POLICY.auc_floor) == ["2022-08-31"]
    # refusals that say nothing good about the champion do not confirm it
    reg.promote_if_better(v3, _score(0.7, 0.7, 0.7, collapsed=True), _score(0.51, 0.51, 0.51), POLICY,
                          context={"session": "2022-09-30"})
    reg.promote_if_better(v4, _score(0.50, 0.50, 0.50), _score(0.55, 0.55, 0.55, collapsed=True), POLICY,
                          context={"session": "2022-10-31"})
    assert reg.confirmations(v1, POLICY.auc_floor) == ["2022-08-31"]
    assert reg.confirmations(v2, POLICY.auc_floor) == []  # a refused challenger is never confirmed


def test_better_challenger_moves_the_alias(two):
    reg, v1, v2 = two
    result = reg.promote_if_better(v2, _score(0.60, 0.58, 0.59), _score(0.55, 0.55, 0.55), POLICY)
    assert result.promote and reg.champion == v2
    assert reg.champion_record().previous == (v1,)
    assert reg.history()[-1].reason["gate"]["details"]["delta_mean_auc"] == pytest.approx(0.04)


def test_collapsed_challenger_is_refused(two):
    reg, v1, v2 = two
    result = reg.promote_if_better(v2, _score(0.7, 0.7, 0.7, collapsed=True), _score(0.55, 0.55, 0.55), POLICY)
    assert not result.promote and reg.champion == v1


def test_first_champion_through_the_gate(reg):
    v = reg.register(_writer("a"))
    assert reg.promote_if_better(v, _score(0.56, 0.56, 0.56), None, POLICY).promote
    assert reg.champion == v


def test_champion_score_must_match_the_registry(two, tmp_path):
    reg, _, v2 = two
    with pytest.raises(ValueError, match="champion score was not given"):
        reg.promote_if_better(v2, _score(0.6, 0.6, 0.6), None, POLICY)
    empty = ModelRegistry(tmp_path / "empty")
    v = empty.register(_writer("a"))
    with pytest.raises(ValueError, match="registry champion is None, but a champion score was given"):
        empty.promote_if_better(v, _score(0.6, 0.6, 0.6), _score(0.5, 0.5, 0.5), POLICY)


def test_numpy_scores_become_plain_floats():
    np = pytest.importorskip("numpy")
    score = ModelScore({"h1": np.float32(0.6)}, collapsed=np.bool_(False), window=WINDOW)
    assert type(score.auc_by_horizon["h1"]) is float and score.collapsed is False
    json.dumps(gate(score, None, POLICY).to_dict())


# --------------------------------------------------------------------------- damaged models are refused

@pytest.mark.parametrize("damage", ["tamper", "truncate", "delete"])
def test_corrupted_champion_is_refused_and_alias_stays(two, damage):
    reg, v1, _ = two
    weights = reg.versions_dir / v1 / "weights.pt"
    if damage == "tamper":
        _flip_byte(weights)
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:7])
    else:
        weights.unlink()
    with pytest.raises(ArtifactError, match=rf"champion {v1} is unusable: .*weights\.pt"):
        reg.load_champion()
    assert reg.champion == v1
    assert {i.version: i.problem for i in reg.list(verify=True)}[v1] is not None


def test_tampered_challenger_cannot_be_promoted(two):
    reg, v1, v2 = two
    _flip_byte(reg.versions_dir / v2 / "config.json", at=2)
    with pytest.raises(ArtifactError, match=rf"refusing to make {v2} champion: .*config\.json"):
        reg.promote_if_better(v2, _score(0.7, 0.7, 0.7), _score(0.55, 0.55, 0.55), POLICY)
    assert reg.champion == v1 and reg.load_champion().version == v1


def test_rollback_to_a_corrupted_version_is_refused(two):
    reg, v1, v2 = two
    reg.promote(v2, {})
    (reg.versions_dir / v1 / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match=f"refusing to make {v1} champion"):
        reg.rollback()
    assert reg.champion == v2


def test_corrupt_alias_file_is_reported(two):
    reg, _, v2 = two
    reg.champion_path.write_text('{"version": "v')
    with pytest.raises(RegistryError, match=r"champion\.json: corrupt JSON"):
        reg.load_champion()
    with pytest.raises(RegistryError, match=r"champion\.json"):
        reg.promote(v2, {})
    reg.champion_path.write_text('{"version": "v1"}')
    with pytest.raises(RegistryError, match="malformed champion alias"):
        _ = reg.champion


# --------------------------------------------------------------------------- crash between steps (in-process)

class Crash(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way swallows it."""


def test_crash_while_writing_the_alias_leaves_the_champion(two, monkeypatch):
    reg, v1, v2 = two

    def crash(src, dst):
        raise Crash

    monkeypatch.setattr(spywatch.atomic.os, "replace", crash)
    with pytest.raises(Crash):
        reg.promote(v2, {})
    monkeypatch.undo()
    assert reg.champion == v1 and reg.load_champion().version == v1
    assert [p.name for p in reg.root.glob(".champion.json.*")] == []


def test_crash_between_alias_and_history_is_repaired_by_the_next_writer(two, monkeypatch):
    reg, v1, v2 = two
    real = registry_mod.atomic_write_json

    def alias_only(path, obj):
        if Path(path).name == "history.json":
            raise Crash
        return real(path, obj)

    monkeypatch.setattr(registry_mod, "atomic_write_json", alias_only)
    with pytest.raises(Crash):
        reg.promote(v2, {"note": "x"})
    monkeypatch.undo()
    assert reg.champion == v2 and [e.version for e in reg.history()] == [v1]
    reg.rollback()
    assert [(e.event, e.version) for e in reg.history()] == [("promote", v1), ("promote", v2), ("rollback", v1)]


# --------------------------------------------------------------------------- SIGKILL at random points

def _run_and_kill(root: Path, seed: int, markers: bool) -> None:
    """Start the child, SIGKILL it after a random number of steps (or a random delay)."""
    rng = random.Random(seed)
    cmd = [sys.executable, str(CHILD), str(root), str(seed)] + (["--markers"] if markers else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        if markers:
            for _ in range(rng.randint(1, 40)):
                if not proc.stdout.readline():
                    break
        else:
            time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, f"child exited on its own: {proc.stderr.read()}"


def _assert_consistent_after_kill(root: Path) -> None:
    reg = ModelRegistry(root)
    record = reg.champion_record()  # parses: never a torn alias
    assert record is not None
    assert reg.load_champion().version == record.version  # complete and verified
    for previous in record.previous:
        reg.get(previous)
    reg.history()  # parses
    assert [i.problem for i in reg.list(verify=True) if i.problem] == []
    # the next writer sweeps the debris of the killed one and repairs the history
    v = reg.register(_writer("after"), version="after-kill")
    reg.promote(v, {"note": "after kill"})
    assert reg.champion == v
    assert record.event.seq in {e.seq for e in reg.history()}
    assert [p.name for p in reg.versions_dir.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [".lock"]


@pytest.mark.parametrize("seed", range(8))
def test_sigkill_between_steps_leaves_a_valid_champion(tmp_path, seed):
    reg = ModelRegistry(tmp_path / "models")
    reg.promote(reg.register(_writer("seed"), version="seed"), {"note": "initial"})
    _run_and_kill(reg.root, seed, markers=True)
    _assert_consistent_after_kill(reg.root)


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_random_times_leaves_a_valid_champion(tmp_path, seed):
    reg = ModelRegistry(tmp_path / "models")
    reg.promote(reg.register(_writer("seed"), version="seed"), {"note": "initial"})
    _run_and_kill(reg.root, 100 + seed, markers=False)
    _assert_consistent_after_kill(reg.root)


# --------------------------------------------------------------------------- CLI

def test_cli_list_show_promote_rollback(two, capsys):
    reg, v1, v2 = two
    root = str(reg.root)
    assert cli_main(["models", "list", "--registry", root]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["version", "session", "fit", "span", "holdout", "mean", "AUC", "(h1", "/", "h3", "/", "h5)",
                              "training", "vs", "RF", "(last", "night)", "status"]
    assert out[1].startswith(f"* {v1}") and out[2].startswith(f"  {v2}") and out[-1].startswith("* the champion")
    assert cli_main(["models", "promote", v2, "--registry", root, "--note", "ops"]) == 0
    assert capsys.readouterr().out.strip() == f"champion is now {v2} (was {v1})"
    assert cli_main(["models", "show", v2, "--registry", root, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["is_champion"] and shown["verified"] and shown["history"][-1]["reason"]["note"] == "ops"
    assert cli_main(["models", "rollback", "--registry", root]) == 0
    assert capsys.readouterr().out.strip() == f"rolled back: champion is now {v1} (was {v2})"


@pytest.mark.parametrize(("argv", "message"), [
    (["models", "show", "nope"], "unknown version nope"),
    (["models", "promote", "nope"], "unknown version nope"),
    (["models", "rollback"], "has no previous champion"),
])
def test_cli_errors_are_one_line(two, capsys, argv, message):
    reg, _, _ = two
    assert cli_main([*argv, "--registry", str(reg.root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert err.startswith(f"spywatch models {argv[1]}: error:")


def test_cli_reports_a_corrupted_champion(two, capsys):
    reg, v1, _ = two
    _flip_byte(reg.versions_dir / v1 / "weights.pt")
    assert cli_main(["models", "show", v1, "--registry", str(reg.root)]) == 1
    assert "weights.pt fails its checksum" in capsys.readouterr().out
    reg.champion_path.write_text("{")
    assert cli_main(["models", "list", "--registry", str(reg.root)]) == 2
    assert "champion.json: corrupt JSON" in capsys.readouterr().err
