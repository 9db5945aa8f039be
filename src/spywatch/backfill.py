"""Backfill as a policy simulation: replay the nightly pipeline over past sessions, walk-forward,
and measure what a retrain policy would have done and what it would have been worth.

Each replay step is ``pipeline.run_nightly`` for one past session (monthly by default), on its
own root, so the store, the registry and the drift history evolve exactly as they would have
night after night, with nothing from the future: a step sees only bars up to its session. The
policy (``spywatch.policy``: default, never, calendar, legacy) is part of the step's config.

The policy table answers: how often would it have retrained, alarmed and promoted, and how good
were the predictions it published, against a Random Forest refitted at every step on the same
data. Predictions are scored two ways:

- *published*: the rows the replay steps actually published (one session per step);
- *walk-forward*: every session between two steps, predicted by the champion in force after the
  earlier step, which is what daily nightly runs under this policy would have published.

Labels come from bars the step did not see (they mature up to ``max_horizon`` sessions later);
sessions whose labels have not matured by the last bar are left out. Every walk-forward AUC and
Brier score carries a circular block-bootstrap interval (blocks at least the longest horizon:
labels overlap that long), the PatchTST - Random Forest difference is paired on the same
sessions, and each promotion is reviewed afterwards: the promoted model and the one it replaced
are scored on the next 250 sessions, and a promotion whose model scored worse counts as wrong.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch import sessions
from spywatch.lock import root_lock

log = logging.getLogger(__name__)

FREQUENCIES = ("monthly", "weekly", "daily")
FIT_SESSIONS = 500  # bundle.fit_periods refuses fewer sessions up to a model's train end
FIT_BEFORE_VALIDATION = 250  # ... and fewer fitted sessions before a validation span
REVIEW_SESSIONS = 250  # sessions after a promotion on which the promoted and the replaced model are compared


# ----------------------------------------------------------------------------- replay schedule


def replay_sessions(start: str, end: str, frequency: str = "monthly") -> list[pd.Timestamp]:
    """The NYSE sessions a backfill replays: the last session of each month (or week), or every one."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency={frequency!r}; expected one of {list(FREQUENCIES)}")
    if pd.Timestamp(start) > pd.Timestamp(end):
        raise ValueError(f"start {start} is after end {end}")
    sessions.settled_session(end)  # an end after the last settled session: UnsettledSession (exit 2)
    days = sessions.nyse_sessions(start, end)
    if len(days) == 0:
        raise ValueError(f"no NYSE session in {start}..{end}")
    if frequency == "daily":
        return list(days)
    period = days.to_period("M" if frequency == "monthly" else "W")
    last = pd.Series(days, index=days).groupby(period).max()
    return [pd.Timestamp(d) for d in last.sort_values()]


def history_needed(fit, horizon: int) -> int:
    """Sessions with complete features, up to and including a first model's session, that training
    it under ``fit`` (``policy.FitSettings``) needs: the sessions ``pipeline.holdout_span`` and
    ``bundle.fit_periods`` ask for, and at least one training batch of complete windows
    (``train.train_model``). The same arithmetic as those functions, kept in step by a test."""
    from spywatch.bundle import FitSpec
    from spywatch.train import TrainConfig

    spec = FitSpec(train_end="", recipe=fit.recipe)
    windows = TrainConfig().batch_size + spec.lookback - 1  # the first window ends lookback - 1 sessions in
    span = FIT_SESSIONS  # sessions up to the train end
    while True:
        n_val = {"full": 0, "recent_val": spec.val_sessions}.get(fit.recipe, int(span * 0.2))
        fitted = span - n_val - (horizon if n_val else 0)  # an embargo before the validation sessions
        if (n_val == 0 or fitted >= FIT_BEFORE_VALIDATION) and fitted >= windows:
            return span + 2 * horizon + fit.holdout  # + an embargo, the holdout, its last label's horizon
        span += 1


def check_replay_inputs(cfg, schedule: list[pd.Timestamp]) -> None:
    """Refuse a replay its source cannot serve, before anything is written: replay sessions the
    source has no bar for, or too little history before the first step to train a first model.

    Raises:
        ValueError: naming the source, the sessions it lacks or the first session it holds.
    """
    from spywatch.dataset import build_table
    from spywatch.market_data import source_from_spec

    first, last = schedule[0], schedule[-1]
    bars = source_from_spec(cfg.source).fetch(cfg.ticker, None, last.date())
    if len(bars) == 0:
        raise ValueError(f"source {cfg.source!r} has no {cfg.ticker} bar up to {last.date()}")
    span = f"{bars.index[0].date()}..{bars.index[-1].date()}"
    missing = [d for d in schedule if d not in bars.index]
    if missing:
        shown = ", ".join(d.date().isoformat() for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(f"source {cfg.source!r} lacks {len(missing)} of the {len(schedule)} replay session(s) "
                         f"({shown}); its {cfg.ticker} bars span {span}")
    table = build_table(bars)
    complete = table.features.dropna().index  # features are causal: the rows up to `first` are what it sees
    needed = history_needed(cfg.fit, table.targets_config.max_horizon)
    have = int((complete <= first).sum())
    if have < needed:
        earliest = ""
        if len(complete):  # counted on the calendar from the first complete row (the source may end at `last`)
            days = sessions.nyse_sessions(complete[0], complete[0] + pd.DateOffset(years=5))
            earliest = f"; the first replay step must be on or after {days[needed - 1].date()}"
        raise ValueError(
            f"source {cfg.source!r}: the first session available is {bars.index[0].date()}, which leaves {have} "
            f"sessions with complete features up to the first replay step {first.date()}; a first model under "
            f"policy {cfg.policy!r} needs {needed} (to fit on, an embargo, a {cfg.fit.holdout}-session holdout), "
            f"after a year of feature warm-up{earliest}")


# ----------------------------------------------------------------------------- configuration


def backfill_config(root: Path | str, source: str, ticker: str = "SPY", policy: str = "default",
                    model: dict | None = None, max_epochs: int | None = None, device: str = "auto",
                    retrain: str = "inline"):
    """The ``PipelineConfig`` every replayed night runs with: the named policy's retrain, promotion
    and fit settings (``PipelineConfig.for_policy``); raises ``ValueError`` for an unknown policy."""
    from spywatch.pipeline import PipelineConfig

    return PipelineConfig.for_policy(policy, source=source, root=Path(root).expanduser().resolve(), ticker=ticker,
                                     model=dict(model or {}), max_epochs=max_epochs, device=device, retrain=retrain)


def policy_settings(cfg) -> dict:
    """The policy in force, whole: the settings the config carries under the policy's name."""
    from spywatch.policy import POLICIES, Policy

    named = POLICIES.get(cfg.policy)
    return Policy(cfg.policy, named.description if named else "", cfg.retrain_policy, cfg.promotion,
                  cfg.fit).to_dict()


def backfill_settings(cfg, start: str, end: str, frequency: str) -> dict:
    """What a replay's steps depend on (a resumed run must match it)."""
    return {"ticker": cfg.ticker, "source": cfg.source, "root": str(cfg.root), "start": str(start), "end": str(end),
            "frequency": frequency, "model": dict(cfg.model), "max_epochs": cfg.max_epochs,
            "retrain": cfg.retrain, "policy": policy_settings(cfg)}


# ----------------------------------------------------------------------------- one step


@dataclass
class StepRecord:
    """What one replayed night did (one row of the policy table)."""

    session: str
    status: str  # published | validation_failed | failed | error
    champion_before: str | None
    champion_after: str | None
    drift: bool | None = None
    drift_share: float | None = None
    collapse: str | None = None
    retrain: bool = False  # the decision said so
    reasons: list[str] = field(default_factory=list)
    challenger: str | None = None
    retrained: bool = False  # a challenger was trained (and gated)
    promoted: bool = False
    gate: dict | None = None  # gate_summary of the challenger's gate
    alarms: list[str] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float | None = None
    error: str | None = None
    # the night's baseline verdict for the champion that published: {"verdict", "difference", "ci", "sessions"}
    vs_baseline: dict | None = None

    @classmethod
    def from_dict(cls, d: dict) -> StepRecord:
        d = {**d, "retrained": d.get("retrained", d.get("challenger") is not None)}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def row(self) -> dict:
        """Flat: one CSV row or one line of a Prefect table artifact."""
        out = asdict(self)
        gate = out.pop("gate") or {}
        vs = out.pop("vs_baseline") or {}
        out.update({"vs_baseline": vs.get("verdict"), "vs_baseline_difference": vs.get("difference")})
        out["reasons"] = ";".join(self.reasons)
        out["alarms"] = ";".join(self.alarms)
        out.update({f"gate_{k}": gate.get(k) for k in ("rule", "estimate", "ci_low", "ci_high", "p_better")})
        return out


def gate_summary(retrain: dict) -> dict:
    """The gate's verdict on one challenger: the rule that decided, the paired estimate of
    challenger - champion mean AUC with its interval and P(challenger better), on which holdout.
    Rules without a comparison (no champion, margin, always) carry the plain difference, no interval."""
    gate = retrain.get("gate") or {}
    details = gate.get("details") or {}
    comparison = details.get("comparison") or {}
    return {"rule": gate.get("rule"), "promote": bool(gate.get("promote")),
            "estimate": comparison.get("estimate", details.get("delta_mean_auc")),
            "ci_low": comparison.get("ci_low"), "ci_high": comparison.get("ci_high"),
            "p_better": comparison.get("p_a_better"), "n_sessions": comparison.get("n_sessions"),
            "holdout": retrain.get("window") or comparison.get("span"), "reasons": list(gate.get("reasons", []))}


def champion_version(root: Path) -> str | None:
    from spywatch.pipeline import models_root
    from spywatch.registry import ModelRegistry

    return ModelRegistry(models_root(root)).champion


def replay_step(cfg, session: pd.Timestamp) -> StepRecord:
    """``run_nightly`` for one past session; a crash is recorded (with its traceback in the log), not hidden."""
    from spywatch.pipeline import run_nightly

    sid = session.date().isoformat()
    before = champion_version(cfg.root)
    t0 = time.perf_counter()
    try:
        result = run_nightly(replace(cfg, as_of=sid, run_id=f"backfill-{sid}"))
    except Exception as exc:  # recorded in the table and counted as an error; the caller decides
        log.error("backfill step %s failed:\n%s", sid, traceback.format_exc())
        return StepRecord(session=sid, status="error", champion_before=before, champion_after=champion_version(cfg.root),
                          seconds=round(time.perf_counter() - t0, 2), error=f"{type(exc).__name__}: {exc}")
    a = result.audit
    failure = a.get("failure") or {}
    if failure.get("kind") == "stage_error":  # a crash inside a stage: counted as an error, as before
        return StepRecord(session=sid, status="error", champion_before=before, champion_after=champion_version(cfg.root),
                          seconds=round(time.perf_counter() - t0, 2), error=failure["reason"])
    drift = a.get("drift") or {}
    decision = a.get("decision") or {}
    retrain = a.get("retrain") or {}
    return StepRecord(
        session=sid, status=result.status, champion_before=before, champion_after=champion_version(cfg.root),
        drift=drift.get("dataset_drift") if drift else None,
        drift_share=round(float(drift["share"]), 4) if drift.get("share") is not None else None,
        collapse=(a.get("collapse") or {}).get("verdict"), retrain=bool(decision.get("retrain")),
        reasons=[r["code"] for r in decision.get("reasons", [])], challenger=retrain.get("challenger"),
        retrained=bool(retrain.get("challenger")), promoted=bool(retrain.get("promoted")),
        gate=gate_summary(retrain) if retrain else None, alarms=[e["event"] for e in a.get("alerts", [])],
        seconds=round(time.perf_counter() - t0, 2),
        train_seconds=round(float(retrain["train_seconds"]), 2) if retrain.get("train_seconds") else None,
        error=failure.get("reason"), vs_baseline=_verdict_brief((a.get("health") or {}).get("vs_baseline")))


def _verdict_brief(vs: dict | None) -> dict | None:
    if not vs:
        return None
    return {k: vs.get(k) for k in ("verdict", "difference", "ci", "sessions")}


# ----------------------------------------------------------------------------- scoring


@dataclass
class PolicyScores:
    """How good the policy's predictions were, on the same sessions as the baselines."""

    published: dict  # horizon -> {"n", "patchtst", "n_with_rf", "patchtst_same_sessions", "random_forest"}
    walk_forward: dict  # horizon -> {"n", "patchtst", "random_forest", "logistic"}: AUC, every session between steps
    walk_forward_window: list[str]
    # Walk-forward, with intervals: horizon -> {"patchtst": {"auc", "ci", "n"}, "random_forest": {...},
    # "difference": {"estimate", "ci_low", "ci_high", "p_a_better", "n"} (PatchTST - RF, paired) or None}
    auc: dict = field(default_factory=dict)
    brier: dict = field(default_factory=dict)  # the same shape with "brier"; difference = RF - PatchTST Brier
    mean_auc_difference: dict | None = None  # PatchTST - RF mean AUC over horizons, paired
    promotions: list[dict] = field(default_factory=list)  # review_promotions
    bootstrap: dict = field(default_factory=dict)
    rf_trees: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from spywatch.audit import horizon_metrics

    ok = ~np.isnan(y)
    if ok.sum() < 10 or not 0 < y[ok].sum() < ok.sum():
        return None
    return round(horizon_metrics(y[ok], p[ok])["auc"], 4)


def walk_forward_frame(table, registry, steps: list[StepRecord], rf_trees: int) -> pd.DataFrame:
    """One row per session between two steps (date order): the champion in force after the earlier
    step, the Random Forest and the logistic regression refitted at that step on every label matured
    by then, and the labels. Columns ``patchtst_h``, ``random_forest_h``, ``logistic_h``, ``y_h``
    per horizon, and ``model_version``."""
    from spywatch.baselines import BaselineConfig, fit_baselines
    from spywatch.bundle import ModelBundle

    names = table.targets_config.names
    horizon = table.targets_config.max_horizon
    labels = table.targets.to_numpy(dtype="float64")
    rows: list[pd.DataFrame] = []
    for prev, cur in zip(steps, steps[1:]):
        if prev.champion_after is None:
            continue  # no model in force yet: nothing would have been published
        lo, hi = pd.Timestamp(prev.session), pd.Timestamp(cur.session)
        bundle = ModelBundle.load(registry.get(prev.champion_after).path)
        proba = bundle.predict(table, lo + pd.Timedelta(days=1), hi)
        if proba.empty:
            continue
        # the baselines see the same inputs at t (the window's last session), fitted on labels matured by `prev`
        x_all = bundle.inputs(table)
        pos_prev = table.index.get_loc(lo)
        fit_idx = table.index[:max(0, pos_prev - horizon + 1)]
        fit_x = x_all.loc[fit_idx]
        keep = fit_x.notna().all(axis=1).to_numpy() & ~np.isnan(labels[:len(fit_idx)]).any(axis=1)
        base = fit_baselines(fit_x.to_numpy()[keep], labels[:len(fit_idx)][keep],
                             BaselineConfig(rf_trees=rf_trees), seed=0)
        pred = base.predict(x_all.loc[proba.index].to_numpy())
        frame = pd.DataFrame(index=proba.index)
        for j, h in enumerate(names):
            frame[f"patchtst_{h}"] = proba[h].to_numpy()
            frame[f"random_forest_{h}"] = pred["random_forest"][:, j]
            frame[f"logistic_{h}"] = pred["logistic"][:, j]
            frame[f"y_{h}"] = table.targets.loc[proba.index].iloc[:, j].to_numpy()
        frame["model_version"] = prev.champion_after
        rows.append(frame)
    return pd.concat(rows) if rows else pd.DataFrame()


def brier_interval(y: np.ndarray, p: np.ndarray, config) -> dict:
    """One model's Brier score on one horizon with its block-bootstrap interval (NaN labels dropped)."""
    from spywatch.comparison import block_weights, interval

    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    ok = ~(np.isnan(y) | np.isnan(p))
    loss = (y[ok] - p[ok]) ** 2
    if len(loss) < 2 * config.block:
        return {"brier": None, "ci": None, "n": int(len(loss))}
    w = block_weights(len(loss), config)
    low, high = interval(w @ loss / w.sum(axis=1), config.level)
    return {"brier": float(loss.mean()), "ci": [low, high], "n": int(len(loss))}


def paired_brier(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, config) -> dict | None:
    """Brier(b) - Brier(a) on the same sessions (positive favours a), its interval and P(a better)."""
    from spywatch.comparison import block_weights, interval

    y, p_a, p_b = (np.asarray(v, dtype="float64") for v in (y, p_a, p_b))
    ok = ~(np.isnan(y) | np.isnan(p_a) | np.isnan(p_b))
    diff = (y[ok] - p_b[ok]) ** 2 - (y[ok] - p_a[ok]) ** 2
    if len(diff) < 2 * config.block:
        return None
    w = block_weights(len(diff), config)
    boot = w @ diff / w.sum(axis=1)
    low, high = interval(boot, config.level)
    return {"estimate": float(diff.mean()), "ci_low": low, "ci_high": high, "p_a_better": float((boot > 0).mean()),
            "n": int(len(diff))}


def paired_auc(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, horizons: list[str], dates, config) -> dict | None:
    """``comparison.compare`` of a - b mean AUC, or None where it has too few labelled sessions or
    no horizon with both classes to say anything."""
    from spywatch.comparison import compare

    y, p_a, p_b = (np.asarray(v, dtype="float64").reshape(len(v), -1) for v in (y, p_a, p_b))
    ok = ~(np.isnan(y).any(axis=1) | np.isnan(p_a).any(axis=1) | np.isnan(p_b).any(axis=1))
    n = int(ok.sum())
    if n < 2 * config.block or not any(0 < y[ok, j].sum() < n for j in range(y.shape[1])):
        return None
    c = compare(y, p_a, p_b, horizons, dates, "mean_auc", config)
    return {"estimate": c.estimate, "ci_low": c.ci_low, "ci_high": c.ci_high, "p_a_better": c.p_a_better,
            "a": c.a_value, "b": c.b_value, "n": c.n_sessions, "span": c.span}


def auc_scores(walk: pd.DataFrame, names: list[str], config) -> dict:
    """Per horizon: the walk-forward AUC of PatchTST and of the Random Forest with their intervals,
    and PatchTST - Random Forest paired on the same sessions."""
    from spywatch.comparison import auc_interval

    out = {}
    for h in names:
        y, pt, rf = (walk[f"{c}_{h}"].to_numpy(dtype="float64") for c in ("y", "patchtst", "random_forest"))
        out[h] = {"patchtst": auc_interval(y, pt, config), "random_forest": auc_interval(y, rf, config),
                  "difference": paired_auc(y, pt, rf, [h], walk.index, config)}
    return out


def brier_scores(walk: pd.DataFrame, names: list[str], config) -> dict:
    """Per horizon: the walk-forward Brier score of PatchTST and of the Random Forest with their
    intervals, and Random Forest - PatchTST paired (positive: PatchTST better)."""
    out = {}
    for h in names:
        y, pt, rf = (walk[f"{c}_{h}"].to_numpy(dtype="float64") for c in ("y", "patchtst", "random_forest"))
        out[h] = {"patchtst": brier_interval(y, pt, config), "random_forest": brier_interval(y, rf, config),
                  "difference": paired_brier(y, pt, rf, config)}
    return out


def review_promotions(table, registry, steps: list[StepRecord], config,
                      sessions_after: int = REVIEW_SESSIONS) -> list[dict]:
    """Each promotion that replaced a champion, judged afterwards: the promoted and the replaced
    model scored on the ``sessions_after`` sessions after it whose labels matured by the last bar
    (mean AUC over horizons, paired). ``wrong``: the promoted model scored worse; None when too
    few sessions followed to say."""
    from spywatch.bundle import ModelBundle

    names = table.targets_config.names
    matured = table.targets.dropna().index
    loaded: dict[str, object] = {}

    def predict(version: str, dates: pd.DatetimeIndex) -> np.ndarray:
        if version not in loaded:
            loaded[version] = ModelBundle.load(registry.get(version).path)
        return loaded[version].predict(table, dates[0], dates[-1]).reindex(dates).to_numpy(dtype="float64")

    out = []
    for r in steps:
        if not (r.promoted and r.champion_before and r.champion_after and r.champion_before != r.champion_after):
            continue
        after = matured[matured > pd.Timestamp(r.session)][:sessions_after]
        c = None
        if len(after) >= 2 * config.block:
            c = paired_auc(table.targets.loc[after].to_numpy(dtype="float64"), predict(r.champion_after, after),
                           predict(r.champion_before, after), names, after, config)
        if c is None:  # too few sessions (or one class only) after it: not judged
            c = {"a": None, "b": None, "estimate": None, "ci_low": None, "ci_high": None, "p_a_better": None,
                 "n": int(len(after)), "span": [d.date().isoformat() for d in after[[0, -1]]] if len(after) else []}
        out.append({"session": r.session, "new": r.champion_after, "old": r.champion_before,
                    "rule": (r.gate or {}).get("rule"), "reasons": list(r.reasons),
                    "new_mean_auc": c["a"], "old_mean_auc": c["b"], "difference": c["estimate"],
                    "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_new_better": c["p_a_better"],
                    "n_sessions": c["n"], "span": c["span"],
                    "wrong": None if c["estimate"] is None else bool(c["estimate"] < 0)})
    return out


def score_policy(root: Path, ticker: str, records: list[StepRecord], rf_trees: int = 100,
                 frame_path: Path | None = None) -> PolicyScores:
    """Score the published and the walk-forward predictions against a Random Forest (and a logistic
    regression) refitted at every step on all labels matured by that step; review every promotion.

    ``frame_path``: also write the walk-forward frame (one row per session) there as parquet.
    """
    from spywatch.comparison import BootstrapConfig
    from spywatch.dataset import build_table
    from spywatch.pipeline import models_root
    from spywatch.publish import Publisher
    from spywatch.registry import ModelRegistry
    from spywatch.store import ParquetStore

    table = build_table(ParquetStore(root).read(ticker))
    names = table.targets_config.names
    registry = ModelRegistry(models_root(root))
    steps = [r for r in records if r.status != "error"]
    walk = walk_forward_frame(table, registry, steps, rf_trees)
    if frame_path is not None and len(walk):
        from spywatch.atomic import atomic_write

        atomic_write(Path(frame_path), lambda tmp: walk.to_parquet(tmp))
    # labels overlap for max_horizon sessions: blocks at least that long
    bootstrap = BootstrapConfig(block=max(BootstrapConfig().block, table.targets_config.max_horizon))

    published = Publisher(root).read_predictions()
    if len(published):  # the replayed sessions only (the root may hold earlier ones)
        published = published[published["session"].isin({r.session for r in steps})]
    pub_scores: dict = {}
    wf_scores: dict = {}
    for j, h in enumerate(names):
        if len(walk):
            y = walk[f"y_{h}"].to_numpy(dtype="float64")
            wf_scores[h] = {"n": int((~np.isnan(y)).sum()),
                            **{m: _auc(y, walk[f"{m}_{h}"].to_numpy()) for m in ("patchtst", "random_forest",
                                                                                 "logistic")}}
        rows = published[published["horizon"] == h] if len(published) else published
        if len(rows):
            dates = pd.DatetimeIndex(pd.to_datetime(rows["session"]))
            y = table.targets.iloc[:, j].reindex(dates).to_numpy(dtype="float64")
            rf = walk[f"random_forest_{h}"].reindex(dates).to_numpy(dtype="float64") if len(walk) else np.full(len(y), np.nan)
            both = ~np.isnan(rf)
            pub_scores[h] = {"n": int((~np.isnan(y)).sum()), "patchtst": _auc(y, rows["probability"].to_numpy()),
                             "n_with_rf": int((both & ~np.isnan(y)).sum()),
                             "patchtst_same_sessions": _auc(y[both], rows["probability"].to_numpy()[both]),
                             "random_forest": _auc(y[both], rf[both])}
    window = [walk.index[0].date().isoformat(), walk.index[-1].date().isoformat()] if len(walk) else []
    mean = None
    if len(walk):
        columns = lambda model: walk[[f"{model}_{h}" for h in names]].to_numpy(dtype="float64")  # noqa: E731
        mean = paired_auc(columns("y"), columns("patchtst"), columns("random_forest"), names, walk.index, bootstrap)
    return PolicyScores(published=pub_scores, walk_forward=wf_scores, walk_forward_window=window,
                        auc=auc_scores(walk, names, bootstrap) if len(walk) else {},
                        brier=brier_scores(walk, names, bootstrap) if len(walk) else {}, mean_auc_difference=mean,
                        promotions=review_promotions(table, registry, steps, bootstrap),
                        bootstrap=bootstrap.to_dict(), rf_trees=rf_trees)


# ----------------------------------------------------------------------------- the outputs


def check_outputs(root: Path, records: list[StepRecord]) -> list[str]:
    """Problems with what the replayed nights left under ``root/published`` (empty: all good).

    Every published step has its session folder with an audit that parses and says so, a report,
    the Evidently reports, and exactly one prediction row per horizon, from the champion in force
    after that step, in the folder and in the cumulative table (no duplicates).
    """
    from spywatch.publish import Publisher

    publisher = Publisher(root)
    problems: list[str] = []
    table = publisher.read_predictions()
    for r in records:
        if r.status != "published":
            continue
        folder = publisher.session_dir(r.session)
        try:
            audit = publisher.read_audit(r.session)
            rows = pd.read_parquet(folder / "predictions.parquet")
        except (OSError, ValueError) as exc:
            problems.append(f"{r.session}: outputs do not read back ({type(exc).__name__}: {exc})")
            continue
        if audit.get("status") != "published" or audit.get("session") != r.session:
            problems.append(f"{r.session}: audit says status {audit.get('status')!r}, session {audit.get('session')!r}")
        for name in ("report.html", "drift.html", "drift.json"):
            path = folder / name
            if not path.is_file() or path.stat().st_size == 0:
                problems.append(f"{r.session}: {name} missing or empty")
        cumulative = table[table["session"] == r.session] if len(table) else table
        for label, frame in (("predictions.parquet", rows), ("cumulative predictions", cumulative)):
            if len(frame) == 0 or not frame["horizon"].is_unique or not frame["probability"].between(0, 1).all():
                problems.append(f"{r.session}: {label} has {len(frame)} rows, horizons {list(frame.get('horizon', []))}")
            elif set(frame["model_version"]) != {r.champion_after}:
                problems.append(f"{r.session}: {label} model {sorted(set(frame['model_version']))} "
                                f"!= champion {r.champion_after}")
    return problems


# ----------------------------------------------------------------------------- the table


@dataclass
class PolicyTable:
    steps: list[StepRecord]
    scores: PolicyScores | None
    config: dict

    @property
    def counts(self) -> dict:
        alarms = Counter(a for r in self.steps for a in r.alarms)
        return {"runs": len(self.steps), "published": sum(r.status == "published" for r in self.steps),
                "validation_failed": sum(r.status == "validation_failed" for r in self.steps),
                "errors": sum(r.status == "error" for r in self.steps),
                "retrain_decisions": sum(r.retrain for r in self.steps),
                "retrains": sum(r.challenger is not None for r in self.steps),
                "promotions": sum(r.promoted for r in self.steps),
                "drift_alarms": sum(r.drift is True for r in self.steps),
                "collapse_alarms": sum((r.collapse or "healthy") != "healthy" for r in self.steps),
                "alarms": sum(len(r.alarms) for r in self.steps), "alarms_by_event": dict(alarms),
                "vs_baseline": dict(Counter((r.vs_baseline or {}).get("verdict") or "none" for r in self.steps)),
                "reasons": dict(Counter(c for r in self.steps for c in r.reasons)),
                "train_seconds": round(sum(r.train_seconds or 0 for r in self.steps), 1),
                "wall_seconds": round(sum(r.seconds for r in self.steps), 1)}

    @property
    def span(self) -> dict:
        """From the requested start to the last replayed session: what rates per year divide by."""
        start = str(self.config.get("start"))
        end = self.steps[-1].session if self.steps else None
        days = (pd.Timestamp(end) - pd.Timestamp(start)).days if end else 0
        return {"start": start, "end": end, "years": round(max(days, 0) / 365.25, 3)}

    @property
    def summary(self) -> dict:
        """The policy's numbers for a side-by-side comparison (``bench/policy_comparison.py``)."""
        c = self.counts
        years = self.span["years"]
        review = self.scores.promotions if self.scores else []
        judged = [p for p in review if p["wrong"] is not None]
        per_year = lambda n: round(n / years, 3) if years > 0 else None  # noqa: E731
        return {"policy": (self.config.get("policy") or {}).get("name"), "span": self.span, "steps": c["runs"],
                "errors": c["errors"], "retrains": c["retrains"], "retrains_per_year": per_year(c["retrains"]),
                "promotions": c["promotions"], "promotions_reviewed": len(review), "promotions_judged": len(judged),
                "wrong_promotions": sum(p["wrong"] for p in judged),
                "wrong_beyond_interval": sum(p["ci_high"] < 0 for p in judged),
                # the gate's error rate by the rule that promoted: judged, worse, worse beyond the interval
                "wrong_by_rule": {rule: {"judged": len(ps), "wrong": sum(p["wrong"] for p in ps),
                                         "wrong_beyond_interval": sum(p["ci_high"] < 0 for p in ps)}
                                  for rule in sorted({str(p.get("rule")) for p in judged})
                                  for ps in [[p for p in judged if str(p.get("rule")) == rule]]},
                "events": c["alarms"], "events_per_year": per_year(c["alarms"]),
                "events_per_year_by_event": {k: per_year(v) for k, v in c["alarms_by_event"].items()},
                "train_seconds": c["train_seconds"], "wall_seconds": c["wall_seconds"]}

    def to_dict(self) -> dict:
        """The backfill record: ``spywatch backfill --out``, ``policy.json``, the policy comparison."""
        c, summary, s = self.counts, self.summary, self.scores
        lifted = ("auc", "brier", "mean_auc_difference", "promotions")  # top-level keys of the record
        return {"config": self.config, "summary": summary, "counts": c, "retrains": c["retrains"],
                "promotions": c["promotions"], "auc": s.auc if s else {}, "brier": s.brier if s else {},
                "mean_auc_difference": s.mean_auc_difference if s else None,
                "wrong_promotions": {"count": summary["wrong_promotions"], "judged": summary["promotions_judged"],
                                     "sessions_after": REVIEW_SESSIONS, "promotions": s.promotions if s else []},
                "scores": {k: v for k, v in s.to_dict().items() if k not in lifted} if s else None,
                "steps": [asdict(r) for r in self.steps]}

    @classmethod
    def from_dict(cls, record: dict) -> PolicyTable:
        """Read back what ``to_dict`` wrote."""
        scores = None
        if record.get("scores") is not None:
            scores = PolicyScores(**record["scores"], auc=record.get("auc") or {}, brier=record.get("brier") or {},
                                  mean_auc_difference=record.get("mean_auc_difference"),
                                  promotions=(record.get("wrong_promotions") or {}).get("promotions", []))
        return cls([StepRecord.from_dict(d) for d in record["steps"]], scores, record["config"])

    def markdown(self) -> str:
        c = self.counts
        cfg = self.config
        policy = cfg.get("policy") or {}
        lines = [f"# Backfill policy simulation: {cfg.get('ticker')} {cfg.get('start')} .. {cfg.get('end')} "
                 f"({cfg.get('frequency')}), policy `{policy.get('name')}`", "",
                 f"source `{cfg.get('source')}`, model overrides `{cfg.get('model') or 'default'}`, "
                 f"max_epochs `{cfg.get('max_epochs') or 'default'}`; policy: {policy.get('description', '')}", "",
                 "| runs | published | validation failed | errors | retrain decisions | retrains | promotions "
                 "| drift alarms | collapse alarms | events |",
                 "|---|---|---|---|---|---|---|---|---|---|",
                 f"| {c['runs']} | {c['published']} | {c['validation_failed']} | {c['errors']} | "
                 f"{c['retrain_decisions']} | {c['retrains']} | {c['promotions']} | {c['drift_alarms']} | "
                 f"{c['collapse_alarms']} | {c['alarms']} |", "",
                 "Retrain reasons: " + (", ".join(f"`{k}` x{v}" for k, v in c["reasons"].items()) or "none"),
                 "", "Events: " + (", ".join(f"`{k}` x{v}" for k, v in c["alarms_by_event"].items()) or "none"),
                 "", f"Wall time of the replay steps: {c['wall_seconds']} s (training {c['train_seconds']} s).", ""]
        if self.scores:
            lines += self._scores_markdown(self.scores)
        lines += ["", "## Steps", "", "| session | status | drift | collapse | decision | gate | promoted | "
                  "champion after | s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in self.steps:
            decision = ("retrain: " + ", ".join(r.reasons)) if r.retrain else "keep"
            share = f" ({r.drift_share:.2f})" if r.drift_share is not None else ""
            drift = "—" if r.drift is None else ("DRIFT" if r.drift else "quiet") + share
            lines.append(f"| {r.session} | {r.status}{' ' + r.error if r.error else ''} | {drift} | "
                         f"{r.collapse or '—'} | {decision} | {gate_cell(r.gate)} | {'yes' if r.promoted else ''} | "
                         f"{r.champion_after or '—'} | {r.seconds:.0f} |")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _scores_markdown(s: PolicyScores) -> list[str]:
        pct = round(100 * s.bootstrap.get("level", 0.9))
        lines = ["## Walk-forward predictions against the baselines", "",
                 "Every session between two steps, predicted by the champion in force after the earlier step "
                 f"({' .. '.join(s.walk_forward_window) or 'none'}). Random Forest ({s.rf_trees} trees) and logistic "
                 f"regression refitted at every step on all labels matured by then. {pct}% intervals: circular block "
                 f"bootstrap, blocks of {s.bootstrap.get('block')} sessions, paired for differences.", "",
                 "| horizon | n | PatchTST AUC | Random Forest AUC | PatchTST - RF AUC (P better) | PatchTST Brier "
                 "| Random Forest Brier | RF - PatchTST Brier (P better) | logistic AUC |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for h, v in s.auc.items():
            b = s.brier.get(h, {})
            logistic = (s.walk_forward.get(h) or {}).get("logistic")
            lines.append(f"| {h} | {v['patchtst']['n']} | {interval_cell(v['patchtst'], 'auc')} | "
                         f"{interval_cell(v['random_forest'], 'auc')} | {difference_cell(v['difference'])} | "
                         f"{interval_cell(b.get('patchtst'), 'brier')} | "
                         f"{interval_cell(b.get('random_forest'), 'brier')} | "
                         f"{difference_cell(b.get('difference'))} | {_f(logistic)} |")
        lines += ["", f"Mean AUC over horizons, PatchTST - RF: {difference_cell(s.mean_auc_difference)}", ""]
        if s.promotions:
            lines += [f"## Promotions reviewed on the next {REVIEW_SESSIONS} matured sessions", "",
                      "| session | promoted | replaced | n | promoted mean AUC | replaced mean AUC | difference "
                      "| wrong |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {p['session']} | {p['new']} | {p['old']} | {p['n_sessions']} | {_f(p['new_mean_auc'])} | "
                      f"{_f(p['old_mean_auc'])} | {difference_cell(_as_difference(p))} | "
                      f"{'—' if p['wrong'] is None else ('**yes**' if p['wrong'] else 'no')} |" for p in s.promotions]
            lines.append("")
        lines += ["Published rows only (one session per replay step; few rows, so noisy):", "",
                  "| horizon | n | PatchTST | n (with RF) | PatchTST, same sessions | Random Forest |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {h} | {v['n']} | {_f(v['patchtst'])} | {v['n_with_rf']} | "
                  f"{_f(v['patchtst_same_sessions'])} | {_f(v['random_forest'])} |" for h, v in s.published.items()]
        return lines

    def write(self, out_dir: Path) -> dict[str, Path]:
        """``policy_steps.csv``, ``policy.json`` and ``policy.md`` under ``out_dir`` (each atomic)."""
        from spywatch.atomic import atomic_write, atomic_write_json, atomic_write_text, make_dirs

        out_dir = Path(out_dir)
        make_dirs(out_dir)
        frame = pd.DataFrame([r.row() for r in self.steps])
        paths = {"csv": out_dir / "policy_steps.csv", "json": out_dir / "policy.json", "markdown": out_dir / "policy.md"}
        atomic_write(paths["csv"], lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write_json(paths["json"], json.loads(json.dumps(self.to_dict(), default=str)))
        atomic_write_text(paths["markdown"], self.markdown())
        return paths


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def interval_cell(v: dict | None, key: str) -> str:
    """``0.612 [0.581, 0.640]`` from an ``auc_interval`` / ``brier_interval`` record."""
    if not v or v.get(key) is None:
        return "—"
    return f"{v[key]:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"


def difference_cell(d: dict | None) -> str:
    if not d:
        return "—"
    return f"{d['estimate']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] ({d['p_a_better']:.2f})"


def gate_cell(gate: dict | None) -> str:
    if not gate:
        return ""
    if gate.get("ci_low") is None:
        return f"{gate['rule']}" + (f" {gate['estimate']:+.3f}" if gate.get("estimate") is not None else "")
    return f"{gate['rule']} {gate['estimate']:+.3f} [{gate['ci_low']:+.3f}, {gate['ci_high']:+.3f}]"


def _as_difference(p: dict) -> dict | None:
    if p["difference"] is None:
        return None
    return {"estimate": p["difference"], "ci_low": p["ci_low"], "ci_high": p["ci_high"],
            "p_a_better": p["p_new_better"]}


# ----------------------------------------------------------------------------- the replay


@dataclass(frozen=True)
class StepProgress:
    """Where a replay stands after a step: for a progress line."""

    done: int  # steps recorded, resumed ones included
    total: int
    record: StepRecord
    eta_seconds: float  # the mean of this run's steps times the steps left

    def line(self) -> str:
        r = self.record
        if r.status == "error":
            what = f"ERROR {r.error}"
        else:
            what = f"{r.status}: " + (f"retrain ({', '.join(r.reasons)})" if r.retrain else "keep")
        if r.retrained:
            what += ", challenger " + ("PROMOTED" if r.promoted else "refused")
            what += f" [{r.gate['rule']}]" if r.gate else ""
        return f"[{self.done}/{self.total}] {r.session} {what} {r.seconds:.0f}s ETA {_duration(self.eta_seconds)}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def run_backfill(cfg, start: str, end: str, frequency: str = "monthly", out_dir: Path | None = None,
                 rf_trees: int = 100, resume: bool = False,
                 on_step: Callable[[StepProgress], None] | None = None) -> PolicyTable:
    """Replay every step in order (plain Python; the ``backfill`` flow runs the same functions as tasks).

    ``out_dir``: the record of the steps so far (``policy.json``, ``.csv``, ``.md``), rewritten after
    each step, then the whole table and the walk-forward frame (``walk_forward.parquet``).
    ``resume``: keep the steps recorded in ``out_dir/policy.json`` by an interrupted run with the
    same settings on the same root, and go on from the next session. A step cut short is simply
    replayed: its fetch and publish are idempotent, and a challenger it may have registered
    without a verdict stays an unused version.
    ``on_step``: called after each replayed step (and after its record is on disk).
    """
    config = backfill_settings(cfg, start, end, frequency)
    schedule = replay_sessions(start, end, frequency)
    steps = resumed_steps(out_dir, config) if resume and out_dir is not None else []
    done = {r.session for r in steps}
    todo = [s for s in schedule if s.date().isoformat() not in done]
    spent = 0.0
    with root_lock(cfg.root, "backfill"):  # the whole replay: no nightly run may write this root meanwhile
        for i, session in enumerate(todo, start=1):
            record = replay_step(cfg, session)
            steps.append(record)
            spent += record.seconds
            if out_dir is not None:  # progress on disk: a long backfill can be watched and its partial table read
                PolicyTable(steps, None, config).write(out_dir)
            if on_step is not None:
                on_step(StepProgress(len(steps), len(schedule), record, spent / i * (len(todo) - i)))
    frame = Path(out_dir) / "walk_forward.parquet" if out_dir is not None else None
    table = PolicyTable(steps, score_policy(Path(cfg.root), cfg.ticker, steps, rf_trees, frame), config)
    if out_dir is not None:
        table.write(out_dir)
    return table


def resumed_steps(out_dir: Path, config: dict) -> list[StepRecord]:
    """Steps of an interrupted run; refuses a record written with other settings."""
    path = Path(out_dir) / "policy.json"
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    old, new = record.get("config") or {}, json.loads(json.dumps(config, default=str))
    if old != new:
        named = lambda v: v.get("name") if isinstance(v, dict) and "name" in v else v  # noqa: E731
        differ = [f"{k} {named(old.get(k))!r} (now {named(new.get(k))!r})" for k in sorted(set(old) | set(new))
                  if old.get(k) != new.get(k)]
        raise ValueError(f"{path} was written with other settings: {'; '.join(differ)}; resume with the same "
                         f"settings, or use a fresh root")
    return [StepRecord.from_dict(d) for d in record["steps"]]
