"""``spywatch backfill`` and the replay under it: bad input is refused before anything is written;
a replay under a named policy writes its record (steps with their gates, walk-forward AUC and
Brier with intervals, promotions reviewed afterwards); an interrupted replay resumes without
redoing a step. The replay trains the tiny model for 8 epochs on real SPY from 2000 (enough
history and epochs for a tiny model to learn more than the prior: the training audit refuses
one that does not, as it did the 2-epoch models on 1993-1996 the replay used before)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from spywatch import cli
from spywatch.backfill import backfill_config, gate_summary, history_needed, replay_sessions, run_backfill
from spywatch.comparison import compare
from spywatch.policy import POLICIES

TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}
TINY_ARG = ",".join(f"{k}={v}" for k, v in TINY.items())
H = ["h1", "h3", "h5"]
# Calendar policy: a first champion at the end of March, its quarterly replacement at the end of
# July (older than 91 days), and two months after it for the promotion's review.
START, END = "2000-03-01", "2000-09-30"
SESSIONS = ["2000-03-31", "2000-04-28", "2000-05-31", "2000-06-30", "2000-07-31", "2000-08-31", "2000-09-29"]
EPOCHS = 8


def run_cli(*args: str) -> tuple[int, str]:
    """``spywatch ARGS`` in this process: the exit status and what it wrote on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, err.getvalue()


def ordered(lo: float, est: float, hi: float) -> bool:
    return lo <= est <= hi


# ----------------------------------------------------------------------------- schedule and inputs


def test_replay_steps_are_the_last_session_of_each_period_and_an_inverted_range_is_refused():
    assert [d.date().isoformat() for d in replay_sessions("2016-01-01", "2016-03-31")] == [
        "2016-01-29", "2016-02-29", "2016-03-31"]
    assert [d.date().isoformat() for d in replay_sessions("2016-01-04", "2016-01-17", "weekly")] == [
        "2016-01-08", "2016-01-15"]
    with pytest.raises(ValueError, match="start 2016-03-01 is after end 2016-01-31"):
        replay_sessions("2016-03-01", "2016-01-31")


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_history_needed_is_exactly_what_a_first_model_needs(name, spy_bars):
    """At ``history_needed`` sessions of complete features the pipeline's holdout and fit spans hold,
    with a full training batch of windows; one session fewer, one of them fails."""
    from spywatch.bundle import FitSpec, fit_periods
    from spywatch.dataset import build_table
    from spywatch.features import FEATURES
    from spywatch.night.retrain import holdout_span
    from spywatch.train import TrainConfig, make_windows

    fit = POLICIES[name].fit
    table = build_table(spy_bars.loc[:"1998-12-31"])
    complete = table.features.dropna().index
    horizon = table.targets_config.max_horizon
    needed = history_needed(fit, horizon)

    def windows_to_fit(session: pd.Timestamp) -> int:
        train_end, lo, hi = holdout_span(table, session, fit.holdout)
        spec = FitSpec(train_end=str(train_end.date()), recipe=fit.recipe, holdout=(str(lo.date()), str(hi.date())))
        periods = fit_periods(table.index, complete[0], spec, horizon)
        return len(make_windows(table.features[list(FEATURES)], table.targets, spec.lookback, *periods.fit).labelled())

    assert windows_to_fit(complete[needed - 1]) >= TrainConfig().batch_size
    assert windows_to_fit(complete[needed - 2]) < TrainConfig().batch_size  # train_model would refuse it


@pytest.mark.parametrize("args, named", [
    (["--policy", "nope"], "policy 'nope' unknown"),
    (["--start", "2016-03-01", "--end", "2016-01-31"], "start 2016-03-01 is after end 2016-01-31"),
    (["--start", "1995-01-01", "--end", "1995-03-31"], "first session available is 1993-01-29"),
    (["--start", "2025-01-01", "--end", "2025-03-31"], "lacks 3 of the 3 replay session(s) (2025-01-31"),
    (["--model", "d_modell=8"], "--model 'd_modell=8'"),
])
def test_bad_input_exits_2_naming_the_value_and_writes_nothing(args, named, spy_csv, tmp_path):
    work = tmp_path / "work"
    base = {"--source": f"csv:{spy_csv}", "--start": "2016-01-01", "--end": "2016-03-31"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code, err = run_cli("backfill", *[x for kv in base.items() for x in kv], "--out", work / "record.json")
    assert code == 2
    assert named in err and "Traceback" not in err
    assert not work.exists()  # neither the record nor the default root beside it


def test_too_short_history_says_where_the_first_step_may_be(spy_csv, tmp_path):
    code, err = run_cli("backfill", "--source", f"csv:{spy_csv}", "--start", "1997-01-01", "--end", "1997-02-28",
                        "--policy", "legacy", "--out", tmp_path / "work" / "record.json")
    assert code == 2 and "policy 'legacy' needs 799" in err
    assert "the first replay step must be on or after 1997-03-25" in err
    assert not (tmp_path / "work").exists()


# ----------------------------------------------------------------------------- gate records


def test_gate_summary_carries_the_paired_estimate_its_interval_and_the_holdout():
    from spywatch.audit_schema import Gate, Retrain
    from spywatch.promotion import ModelScore, PromotionPolicy, gate

    rng = np.random.default_rng(3)
    y = (rng.random((250, 3)) < 0.4).astype(float)
    good = 1 / (1 + np.exp(-(1.2 * y + rng.normal(size=y.shape))))
    worse = 1 / (1 + np.exp(-(0.6 * y + rng.normal(size=y.shape))))
    dates = pd.bdate_range("2020-01-01", periods=250)
    comparison = compare(y, good, worse, H, dates, a="challenger", b="champion")

    def score(p: np.ndarray) -> ModelScore:
        return ModelScore({h: roc_auc_score(y[:, j], p[:, j]) for j, h in enumerate(H)}, False, "w")

    verdict = gate(score(good), score(worse), PromotionPolicy(), comparison=comparison, fresher=True)
    window = ["2020-01-01", dates[-1].date().isoformat()]

    summary = gate_summary(Retrain(gate=Gate(**verdict.to_dict()), window=window))
    assert summary.rule == verdict.rule == "better" and summary.promote
    assert summary.estimate == comparison.estimate and summary.p_better == comparison.p_a_better
    assert ordered(summary.ci_low, summary.estimate, summary.ci_high) and summary.ci_low > 0
    assert summary.holdout == window and summary.n_sessions == 250 and summary.reasons == list(verdict.reasons)

    first = gate_summary(Retrain(gate=Gate(**gate(score(good), None, PromotionPolicy()).to_dict()), window=window))
    assert first.rule == "no_champion" and first.estimate is None and first.ci_low is None


# ----------------------------------------------------------------------------- a replay


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def replay(tmp_path_factory, spy_csv):
    """The calendar policy replayed by ``run_backfill``, interrupted after two steps, then finished
    by ``spywatch backfill --resume`` on the same root."""
    base = tmp_path_factory.mktemp("backfill")
    root, out = base / "root", base / "record.json"
    source = f"csv:{spy_csv}"
    cfg = backfill_config(root, source, policy="calendar", model=TINY, max_epochs=EPOCHS)

    def stop_after_two(progress) -> None:
        if progress.done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_backfill(cfg, START, END, out_dir=cfg.layout.backfill, rf_trees=20, on_step=stop_after_two)
    interrupted = json.loads((cfg.layout.backfill / "policy.json").read_text())["steps"]
    args = ["backfill", "--source", source, "--start", START, "--end", END, "--policy", "calendar", "--root", root,
            "--model", TINY_ARG, "--max-epochs", str(EPOCHS), "--rf-trees", "20", "--out", out]
    code, err = run_cli(*args, "--resume")
    return {"code": code, "stderr": err, "record": json.loads(out.read_text()), "interrupted": interrupted,
            "root": root, "out": out, "args": args}


@pytest.mark.slow
def test_the_record_holds_steps_gates_and_walk_forward_scores_with_ordered_intervals(replay):
    assert replay["code"] == 0, replay["stderr"]
    r = replay["record"]
    assert {"config", "steps", "retrains", "promotions", "auc", "brier", "mean_auc_difference", "wrong_promotions",
            "summary"} <= set(r)
    assert r["config"]["policy"] == json.loads(json.dumps(POLICIES["calendar"].to_dict()))
    assert r["config"]["start"] == START and r["config"]["model"] == TINY and r["config"]["max_epochs"] == EPOCHS

    steps = r["steps"]
    assert [s["session"] for s in steps] == SESSIONS and all(s["status"] == "published" for s in steps)
    assert r["retrains"] == sum(s["retrained"] for s in steps) >= 2  # the first model and a quarterly one
    assert r["promotions"] == sum(s["promoted"] for s in steps) >= 2
    first = steps[0]
    assert first["reasons"] == ["no_champion"] and first["champion_before"] is None
    assert first["gate"]["rule"] == "no_champion" and first["champion_after"] == first["challenger"]
    for s in steps:
        if s["retrained"]:
            assert s["gate"]["promote"] == s["promoted"] and len(s["gate"]["holdout"]) == 2
        if not s["promoted"]:
            assert s["champion_after"] == s["champion_before"]
    assert "max_age" in [c for s in steps for c in s["reasons"]]

    for h in H:
        auc, brier = r["auc"][h], r["brier"][h]
        n = auc["patchtst"]["n"]
        assert n >= 100 and auc["random_forest"]["n"] == brier["patchtst"]["n"] == n  # the same sessions
        for model in ("patchtst", "random_forest"):
            assert ordered(auc[model]["ci"][0], auc[model]["auc"], auc[model]["ci"][1])
            assert ordered(brier[model]["ci"][0], brier[model]["brier"], brier[model]["ci"][1])
        d = auc["difference"]
        assert ordered(d["ci_low"], d["estimate"], d["ci_high"]) and 0 <= d["p_a_better"] <= 1
        assert d["estimate"] == pytest.approx(auc["patchtst"]["auc"] - auc["random_forest"]["auc"])
    m = r["mean_auc_difference"]
    assert ordered(m["ci_low"], m["estimate"], m["ci_high"])
    s = r["summary"]
    assert s["policy"] == "calendar" and s["span"]["end"] == SESSIONS[-1] and 0.5 < s["span"]["years"] < 0.6
    assert s["events_per_year"] == pytest.approx(r["counts"]["alarms"] / s["span"]["years"], rel=1e-3)
    assert s["train_seconds"] == pytest.approx(sum(x["train_seconds"] or 0 for x in steps), abs=0.2)


@pytest.mark.slow
def test_resume_continues_where_the_interrupted_replay_stopped_without_redoing_a_step(replay):
    progress = [line for line in replay["stderr"].splitlines() if line.startswith("[")]
    assert [line.split()[1] for line in progress] == SESSIONS[2:]  # only the steps left, in order
    assert progress[0].startswith(f"[3/{len(SESSIONS)}] ") and "ETA" in progress[0]
    assert replay["record"]["steps"][:2] == replay["interrupted"]  # recorded once, kept as they were


@pytest.mark.slow
def test_each_promotion_is_reviewed_on_the_sessions_after_it(replay):
    from spywatch.bundle import ModelBundle
    from spywatch.dataset import build_table
    from spywatch.layout import RootLayout
    from spywatch.registry import ModelRegistry
    from spywatch.store import ParquetStore

    r = replay["record"]
    replaced = [s for s in r["steps"] if s["promoted"] and s["champion_before"]]
    review = r["wrong_promotions"]["promotions"]
    assert [(p["session"], p["new"], p["old"]) for p in review] == [
        (s["session"], s["champion_after"], s["champion_before"]) for s in replaced]
    assert r["wrong_promotions"]["count"] == sum(bool(p["wrong"]) for p in review)
    table = build_table(ParquetStore(replay["root"]).read("SPY"))
    registry = ModelRegistry(RootLayout(replay["root"]).models)
    p = review[0]
    assert p["n_sessions"] >= 20 and p["wrong"] == (p["difference"] < 0)
    assert ordered(p["ci_low"], p["difference"], p["ci_high"])
    # recomputed here: the sessions after the promotion whose labels matured by the last bar
    after = table.targets.dropna().index
    after = after[after > pd.Timestamp(p["session"])][:250]
    assert p["span"] == [after[0].date().isoformat(), after[-1].date().isoformat()] and p["n_sessions"] == len(after)
    y = table.targets.loc[after].to_numpy()
    mean_auc = {}
    for version in (p["new"], p["old"]):
        proba = ModelBundle.load(registry.get(version).path).predict(table, after[0], after[-1]).to_numpy()
        mean_auc[version] = np.mean([roc_auc_score(y[:, j], proba[:, j]) for j in range(3)])
    assert p["new_mean_auc"] == pytest.approx(mean_auc[p["new"]])
    assert p["old_mean_auc"] == pytest.approx(mean_auc[p["old"]])
    assert p["difference"] == pytest.approx(p["new_mean_auc"] - p["old_mean_auc"])


@pytest.mark.slow
def test_a_recorded_replay_is_neither_overwritten_nor_resumed_with_other_settings(replay):
    before = replay["out"].stat().st_mtime_ns
    code, err = run_cli(*replay["args"])  # no --resume
    assert code == 2 and "already holds a backfill record" in err and "--resume" in err
    args = list(replay["args"])
    args[args.index("calendar")] = "never"
    code, err = run_cli(*args, "--resume")
    assert code == 2 and "policy 'calendar' (now 'never')" in err
    assert replay["out"].stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_fleet_backfill_in_lock_step_fits_each_sessions_retrains_in_one_pass(tmp_path):
    """Two tickers replayed session by session: the first session's retrains (no champion yet) are
    fitted in one stack (each epoch timed once for both), each ticker's night then gates its own
    challenger; each ticker keeps its own record and walk-forward scores."""
    from spywatch.backfill import run_fleet_backfill
    from spywatch.bundle import ModelBundle
    from spywatch.layout import RootLayout
    from spywatch.registry import ModelRegistry

    etf = Path(__file__).resolve().parents[2] / "data" / "etf"
    cfgs = {t: backfill_config(tmp_path / t, f"csv-dir:{etf}", t, "default", TINY, EPOCHS) for t in ("QQQ", "DIA")}
    out_dirs = {t: tmp_path / f"{t}-record" for t in cfgs}
    seen = []

    def interrupted(t: str, p) -> None:  # noqa: ANN001 - stopped between the two tickers' records of session 2
        seen.append((t, p.record.session, p.done))
        if (t, p.record.session) == ("QQQ", "2004-02-27"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fleet_backfill(cfgs, "2004-01-01", "2004-02-29", out_dirs=out_dirs, rf_trees=20, on_step=interrupted)
    assert seen == [("QQQ", "2004-01-30", 1), ("DIA", "2004-01-30", 1), ("QQQ", "2004-02-27", 2)]
    recorded = {t: json.loads((out_dirs[t] / "policy.json").read_text())["steps"] for t in cfgs}
    assert [len(v) for v in recorded.values()] == [2, 1]
    # resumed: only DIA's second session is replayed; QQQ's two steps and DIA's first are kept as recorded
    seen.clear()
    tables = run_fleet_backfill(cfgs, "2004-01-01", "2004-02-29", out_dirs=out_dirs, rf_trees=20, resume=True,
                                on_step=lambda t, p: seen.append((t, p.record.session, p.done)))
    assert seen == [("DIA", "2004-02-27", 2)]
    assert [s.seconds for s in tables["QQQ"].steps] == [s["seconds"] for s in recorded["QQQ"]]
    assert tables["DIA"].steps[0].seconds == recorded["DIA"][0]["seconds"]
    with pytest.raises(ValueError, match="other settings"):  # a record is never resumed with other settings
        run_fleet_backfill(cfgs, "2004-01-01", "2004-03-31", out_dirs=out_dirs, resume=True)
    epochs = {}
    for t, table in tables.items():
        first = table.steps[0]
        assert first.session == "2004-01-30" and first.retrain and first.retrained and first.gate is not None, first
        assert first.status in ("published", "failed") and first.status != "retrain_deferred"
        registry = ModelRegistry(RootLayout(cfgs[t].root).models)
        bundle = ModelBundle.load(registry.get(first.challenger).path)
        assert bundle.data["trained_session"] == "2004-01-30"
        epochs[t] = [e["seconds"] for m in bundle.metrics["members"] for e in m["history"]]
        record = json.loads((tmp_path / f"{t}-record" / "policy.json").read_text())
        assert [s["session"] for s in record["steps"]] == ["2004-01-30", "2004-02-27"]
        assert table.scores is not None
    assert epochs["QQQ"] == epochs["DIA"] and len(epochs["QQQ"]) == 2 * EPOCHS  # one stack, both tickers
