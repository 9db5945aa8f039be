"""The nightly pipeline as plain Python: fetch -> validate -> features -> drift -> predict + audit
-> decide -> (retrain) -> publish -> alerts.

Each stage is a function of plain values so that the Prefect tasks (``tasks/``) can wrap them one
by one; :func:`run_nightly` chains them for ``spywatch run`` and the tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch import names, sessions
from spywatch.artifact import ArtifactError
from spywatch.audit import CollapsePolicy, CollapseVerdict, check_collapse, metrics_by_horizon
from spywatch.audit_schema import SCHEMA_VERSION, FailureKind, RunStatus, check_audit
from spywatch.dataset import FeatureTable, build_table
from spywatch.decision import (BaselineSignal, CollapseSignal, DriftSignal, PerformanceSignal, RetrainDecision,
                               RetrainPolicy, decide)
from spywatch.market_data import MarketDataSource, source_from_spec
from spywatch.policy import FitSettings, policy_named
from spywatch.publish import Publisher
from spywatch.registry import GateResult, ModelRegistry, ModelScore, NoChampionError, PromotionPolicy, training_gate
from spywatch.store import ParquetStore, UpdateResult
from spywatch.training_audit import finding_line, summary_line
from spywatch.text import bounded, cut
from spywatch.vs_baseline import phrase

log = logging.getLogger(__name__)

DRIFT_EVENT = "spywatch.drift.detected"
COLLAPSE_EVENT = "spywatch.collapse.detected"
PROMOTED_EVENT = "spywatch.model.promoted"
LAGGING_EVENT = "spywatch.model.lagging"  # the champion behind the Random Forest beyond its interval
TRAINING_EVENT = "spywatch.training.unhealthy"  # a challenger refused on its training verdict
VALIDATION_EVENT = "spywatch.validation.failed"
# A failure's reason as quoted in the audit, latest.json, the report, the log and the alerts: long
# enough for a few values already cut at their source (``spywatch.text``), never the input itself.
REASON_LIMIT = 1000


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PipelineConfig:
    source: str = "synthetic"
    root: Path = Path("workspace")
    ticker: str = "SPY"
    as_of: str | None = None  # None: the last settled NYSE session
    drift_window: int = 60  # sessions of current features compared with the training reference
    performance_window: int = 250  # sessions of matured labels shown in the report
    # The decay test reads every matured label since the champion was selected (or confirmed), up
    # to this many sessions: the CUSUM is a running sum, so its window must not slide.
    decay_window_max: int = 1000
    retrain: str = "inline"  # "inline": train here when the decision says so; "never": only record it
    model: dict = field(default_factory=dict)  # PatchTSTConfig overrides
    max_epochs: int | None = None  # training override (tests, quick runs)
    device: str = "auto"
    threads: int | None = None  # CPU training threads (None: min(2, cores)); 1 when benches share a host
    policy: str = "default"  # the name the three settings below came from (recorded in the audit)
    retrain_policy: RetrainPolicy = RetrainPolicy()
    promotion: PromotionPolicy = PromotionPolicy()
    fit: FitSettings = FitSettings()
    collapse: CollapsePolicy = CollapsePolicy()
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.retrain not in ("inline", "never"):
            raise ValueError(f"retrain={self.retrain!r}; expected 'inline' or 'never'")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs={self.max_epochs}; expected >= 1")
        names.ticker(self.ticker)  # the names that become paths (``spywatch.names``): BadName, before any work
        if self.run_id is not None:
            names.run_id(self.run_id)

    @classmethod
    def for_policy(cls, name: str, **kwargs) -> PipelineConfig:
        """A config whose retrain, promotion and fit settings are the named policy's."""
        p = policy_named(name)
        return cls(policy=p.name, retrain_policy=p.retrain, promotion=p.promotion, fit=p.fit, **kwargs)

    @property
    def holdout(self) -> int:
        return self.fit.holdout

    def session(self) -> pd.Timestamp:
        """The settled NYSE session on or before ``as_of`` (``sessions.settled_session``: a later
        date raises ``UnsettledSession``)."""
        return sessions.settled_session(self.as_of)


def models_root(root: Path) -> Path:
    return Path(root) / "models"


# ----------------------------------------------------------------------------- stages


def fetch_and_validate(source: MarketDataSource, root: Path, ticker: str, session: pd.Timestamp):
    """Update the store; the raw-bars suite checks the merged bars before anything is written.

    Returns (UpdateResult, ValidationResult). Raises ``ValidationFailed`` (store untouched).
    """
    from spywatch.validation import validate_bars

    outcome = {}

    def check(bars: pd.DataFrame) -> None:
        result = validate_bars(bars.loc[:session], session.date(), results_dir=Path(root) / "validation")
        outcome["validation"] = result
        result.raise_if_failed()

    update = ParquetStore(root).update(ticker, source, session.date(), check=check)
    return update, outcome["validation"]


def load_features(root: Path, ticker: str, session: pd.Timestamp) -> FeatureTable:
    bars = ParquetStore(root).read(ticker).loc[:session]
    if len(bars) == 0 or bars.index[-1] != session:
        raise ValueError(f"store has no bar for session {session.date()} (last: "
                         f"{bars.index[-1].date() if len(bars) else 'none'})")
    return build_table(bars)


@dataclass
class Champion:
    version: str
    path: Path
    bundle: object  # ModelBundle
    confirmations: tuple[pd.Timestamp, ...] = ()  # sessions it held against a challenger (registry history)


def load_champion(root: Path, promotion: PromotionPolicy = PromotionPolicy()) -> Champion | None:
    """The verified champion, or None when nothing has been promoted yet."""
    from spywatch.bundle import ModelBundle

    registry = ModelRegistry(models_root(root))
    try:
        mv = registry.load_champion()
    except NoChampionError:
        return None
    confirmations = tuple(pd.Timestamp(s) for s in registry.confirmations(mv.version, promotion.auc_floor))
    return Champion(version=mv.version, path=mv.path, bundle=ModelBundle.load(mv.path), confirmations=confirmations)


def validate_current_features(table: FeatureTable, champion: Champion, session: pd.Timestamp, window: int,
                              results_dir: Path):
    from spywatch.validation import validate_features

    feats = table.features.loc[:session].iloc[-window:]
    return validate_features(feats, champion.path, results_dir=results_dir)


def measure_drift(table: FeatureTable, champion: Champion, session: pd.Timestamp, window: int,
                  current_proba: pd.DataFrame | None):
    """Evidently drift of the current window against the champion's training reference, and of its
    recent predictions against its validation predictions. Returns a ``drift.DriftReport``."""
    from spywatch.drift import DriftConfig, current_window, recent_rows, reference_rows, run_drift_report

    bundle = champion.bundle
    config = DriftConfig.load(window=window)
    scaler = bundle.scaler
    ref = reference_rows(table.features, config.features, scaler.train_start, scaler.train_end)
    cur = current_window(table.features, config.features, window, end=session)
    pred_ref = pd.DataFrame(bundle.metrics.get("validation_predictions") or {})
    pred_cur = current_proba.iloc[-window:] if current_proba is not None and len(pred_ref) else None
    # The regime check compares the window with the sessions just before it (a volatility regime
    # change inside the training range); it needs a year of history before the window.
    try:
        recent = recent_rows(table.features, config.features, cur, config.recent_sessions)
    except ValueError as exc:
        log.warning("regime drift check skipped: %s", exc)
        recent = None
    return run_drift_report(ref, cur, config, recent=recent,
                            reference_predictions=pred_ref if pred_cur is not None else None,
                            current_predictions=pred_cur)


@dataclass
class PredictionAudit:
    proba: pd.DataFrame  # session x horizon, the recent window (last row = tonight), members' mean
    spread: pd.DataFrame  # the members' standard deviation, same shape as ``proba``
    collapse: CollapseVerdict
    members: list[dict]  # per member: prediction std and mean per horizon on the recent window
    performance: dict | None  # metrics on matured labels vs baselines, or None when too few
    history: pd.DataFrame  # probabilities over the performance window, for the report


def predict_and_audit(table: FeatureTable, champion: Champion, session: pd.Timestamp, cfg: PipelineConfig
                      ) -> PredictionAudit:
    """Champion predictions for the recent window, the collapse check, and decay on matured labels."""
    from spywatch.train import inspect, predict_members

    bundle = champion.bundle
    names = bundle.horizons
    pos = table.index.get_loc(session)
    start = table.index[max(0, pos - max(cfg.drift_window, cfg.performance_window, cfg.decay_window_max) - 10)]
    w = bundle.windows(table, start, session)
    if len(w) == 0 or w.dates[-1] != session:
        raise ValueError(f"no complete feature window ends at session {session.date()}")
    recent = slice(max(0, len(w) - cfg.drift_window), len(w))
    ins = inspect(bundle.model, w.X[recent])
    shift = bundle.scaler.shift_std(table.features.loc[w.dates[recent][0]:session])
    verdict = check_collapse(ins.proba, names, bundle.prior, w.y[recent], ins.attention_entropy_ratio,
                             ins.representation_std, ins.pos_to_content_ratio, shift, cfg.collapse)
    members = [{"member": k, "pred_std": {h: float(p[:, j].std()) for j, h in enumerate(names)},
                "pred_mean": {h: float(p[:, j].mean()) for j, h in enumerate(names)}}
               for k, p in enumerate(ins.member_proba)]
    each = predict_members(bundle.model, w.X)  # (K, N, H)
    all_proba = pd.DataFrame(each.mean(axis=0), index=w.dates, columns=names)
    spread = pd.DataFrame(each.std(axis=0), index=w.dates, columns=names)
    return PredictionAudit(proba=all_proba.iloc[recent], spread=spread.iloc[recent], collapse=verdict, members=members,
                           performance=_performance(table, champion, w, all_proba, session, cfg),
                           history=all_proba.iloc[-cfg.performance_window:])


def decay_window_start(table: FeatureTable, champion: Champion, session: pd.Timestamp) -> pd.Timestamp:
    """The first session of the decay window: after the holdout the champion was selected on (its
    labels matured by the night it was trained), and after the last night it held against a
    challenger (the test restarts there: the champion was just shown to be as good as a fresh model)."""
    bundle = champion.bundle
    h = bundle.targets.max_horizon
    end = bundle.data_end
    pos = int(table.index.searchsorted(end, side="right")) + h  # an embargo after the model's data
    starts = [table.index[pos] if pos < len(table.index) else end + pd.Timedelta(days=1),
              model_session(bundle) + pd.Timedelta(days=1)]
    confirmed = last_confirmation(champion, session)
    if confirmed is not None:
        starts.append(confirmed + pd.Timedelta(days=1))
    first = int(table.index.searchsorted(max(starts)))  # the first session on or after
    return table.index[first] if first < len(table.index) else max(starts)


def _performance(table: FeatureTable, champion: Champion, w, proba: pd.DataFrame, session: pd.Timestamp,
                 cfg: PipelineConfig) -> dict | None:
    """The champion against the Random Forest, the logistic regression and the prior on matured labels.

    Two windows. What people see (``window``, ``horizons``, ROC, calibration): the last
    ``performance_window`` matured sessions after the champion's fit span and an embargo, out of
    sample. What decides (``decay``): every matured session since the champion was selected or
    last confirmed (``decay_window_start``), so never the holdout it won on; the floor and the
    CUSUM read only this one.
    """
    from spywatch.baselines import BaselineConfig, fit_or_load_baselines
    from spywatch.comparison import session_log_loss
    from spywatch.report import calibration_points, roc_points
    from spywatch.vs_baseline import judge

    bundle = champion.bundle
    names = bundle.horizons
    horizon = bundle.targets.max_horizon
    pos_end = table.index.get_loc(session) - horizon  # labels matured by tonight
    if pos_end < 0:
        return None
    hi = table.index[pos_end]
    fit_end = pd.Timestamp(bundle.periods["fit"][1])
    pos_fit = int(table.index.searchsorted(fit_end, side="right")) + horizon
    show_lo = table.index[max(min(pos_fit, pos_end), pos_end - cfg.performance_window + 1)]
    decay_lo = max(decay_window_start(table, champion, session), table.index[max(0, pos_end - cfg.decay_window_max + 1)])
    labelled = ~np.isnan(w.y).any(axis=1)
    show = (w.dates >= show_lo) & (w.dates <= hi) & labelled
    decay = (w.dates >= decay_lo) & (w.dates <= hi) & labelled
    out: dict = {"window": [show_lo.date().isoformat(), hi.date().isoformat()], "n": int(show.sum()), "horizons": None,
                 "vs_baseline": None,
                 "decay": {"window": [decay_lo.date().isoformat(), hi.date().isoformat()], "n": int(decay.sum()),
                           "auc_by_horizon": {}, "rf_auc_by_horizon": {}, "loss_diff": [], "sessions": []}}
    either = show | decay
    if not either.any():
        return out
    p_all = proba.to_numpy()
    fit = bundle.periods["fit"]
    train_w = bundle.windows(table, fit[0], fit[1]).labelled()
    # fitted on the champion's own training period: the same every night, so kept between nights
    from spywatch.evaluate import VOL_FEATURES

    vol_columns = tuple(bundle.scaler.features.index(c) for c in VOL_FEATURES if c in bundle.scaler.features)
    base = fit_or_load_baselines(train_w.X[:, -1, :], train_w.y, Path(cfg.root) / "cache" / "baselines.npz",
                                 tag=champion.version, config=BaselineConfig(rf_trees=100), seed=0,
                                 vol_columns=vol_columns)
    base_all = {k: np.full(p_all.shape, np.nan) for k in ("random_forest", "logistic", "vol_logistic")}
    predicted = base.predict(w.X[either][:, -1, :])
    for k in base_all:
        base_all[k][either] = predicted[k]
    if decay.any():
        y, p, rf = w.y[decay], p_all[decay], base_all["random_forest"][decay]
        d = out["decay"]
        d["loss_diff"] = [round(float(x), 6) for x in (session_log_loss(y, p) - session_log_loss(y, rf)).mean(axis=1)]
        d["sessions"] = [x.date().isoformat() for x in w.dates[decay]]
        if len(y) >= 20:
            d["auc_by_horizon"] = {h: m["auc"] for h, m in metrics_by_horizon(y, p, names).items()}
            d["rf_auc_by_horizon"] = {h: m["auc"] for h, m in metrics_by_horizon(y, rf, names).items()}
    # the baseline verdict: the champion against the RF on the shown (trailing, out-of-sample) sessions
    out["vs_baseline"] = judge(w.y[show], p_all[show], {k: v[show] for k, v in base_all.items()}, names,
                               w.dates[show], block=max(10, horizon)).to_dict()
    if show.sum() >= 20:
        y, p = w.y[show], p_all[show]
        champ = metrics_by_horizon(y, p, names)
        rf = metrics_by_horizon(y, base_all["random_forest"][show], names)
        lr = metrics_by_horizon(y, base_all["logistic"][show], names)
        out["horizons"] = {h: {"champion": champ[h], "random_forest": rf[h], "logistic": lr[h],
                               "prior": {"rate": float(base.prior[j]),
                                         "brier": float(np.mean((y[:, j] - base.prior[j]) ** 2))}}
                           for j, h in enumerate(names)}
        out["roc"] = {h: roc_points(y[:, j], p[:, j]) for j, h in enumerate(names)}
        out["calibration"] = {h: calibration_points(y[:, j], p[:, j]) for j, h in enumerate(names)}
    return out


def consecutive_drift(history: list[dict], session: str, drifted: bool, since: str | None = None) -> int:
    """Consecutive drifted runs ending tonight (tonight counted), from the drift history; only runs
    after ``since`` (the champion's promotion) count: a new champion starts its own count."""
    from spywatch.drift import consecutive_drift_runs

    return consecutive_drift_runs([h["dataset_drift"] for h in history
                                   if h["session"] < session and (since is None or h["session"] > since)]
                                  + [drifted])


def make_decision(drift_result, audit: PredictionAudit | None, champion: Champion | None, session: pd.Timestamp,
                  drift_history: list[dict], policy: RetrainPolicy) -> RetrainDecision:
    if champion is None:
        return decide(None, None, None, None, policy)
    drift_signal = None
    if drift_result is not None:
        runs = consecutive_drift(drift_history, session.date().isoformat(), drift_result.dataset_drift,
                                 since=model_session(champion.bundle).date().isoformat())
        drift_signal = DriftSignal(drift_result.dataset_drift, float(drift_result.share), runs)
    collapse = None
    perf = None
    if audit is not None:
        collapse = CollapseSignal(audit.collapse.collapsed, audit.collapse.verdict, audit.collapse.cause)
        d = (audit.performance or {}).get("decay")
        if d and d["sessions"]:
            perf = PerformanceSignal(d["auc_by_horizon"], d["rf_auc_by_horizon"], d["n"],
                                     loss_diff=tuple(d["loss_diff"]), sessions=tuple(d["sessions"]))
    baseline = None
    vs = (audit.performance or {}).get("vs_baseline") if audit is not None else None
    if vs:
        baseline = BaselineSignal(vs["verdict"], vs.get("difference"), tuple(vs["ci"]) if vs.get("ci") else None,
                                  vs.get("sessions", 0), phrase(vs))
    # a session re-run after the champion was trained or confirmed later counts it as new (age 0)
    age = max(0, (session - age_start(champion, session)).days)
    return decide(drift_signal, collapse, perf, float(age), policy, baseline)


def model_session(bundle) -> pd.Timestamp:
    """The session a model was trained at (in data time, so replays age too)."""
    trained = bundle.data.get("trained_session")
    return pd.Timestamp(trained) if trained else bundle.data_end


def last_confirmation(champion: Champion, session: pd.Timestamp) -> pd.Timestamp | None:
    """The last night up to ``session`` the champion held against a challenger, if any."""
    earlier = [c for c in champion.confirmations if c <= session]
    return max(earlier) if earlier else None


def age_start(champion: Champion, session: pd.Timestamp) -> pd.Timestamp:
    """Where the champion's age counts from at ``session``: its training, or the last night it held
    against a challenger trained on fresher data (else a refused max-age retrain would fire every night)."""
    confirmed = last_confirmation(champion, session)
    trained = model_session(champion.bundle)
    return trained if confirmed is None else max(trained, confirmed)


@dataclass
class RetrainOutcome:
    challenger: str
    gate: GateResult
    promoted: bool
    window: list[str]
    challenger_metrics: dict
    train_seconds: float
    periods: dict = field(default_factory=dict)  # the challenger's fit / val / holdout spans
    members: int = 1
    device: str = "cpu"  # where the challenger trained (torch's device string)
    training: dict | None = None  # the challenger's training audit (metrics["training"])

    def to_dict(self) -> dict:
        return {"challenger": self.challenger, "promoted": self.promoted, "gate": self.gate.to_dict(),
                "window": self.window, "challenger_metrics": self.challenger_metrics,
                "train_seconds": self.train_seconds, "periods": self.periods, "members": self.members,
                "device": self.device, "training": self.training}


def holdout_span(table: FeatureTable, session: pd.Timestamp, holdout: int) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(train_end, holdout start, holdout end) for a challenger trained at ``session``.

    The holdout is the ``holdout`` sessions whose labels have matured by ``session`` (the last one
    ``max_horizon`` sessions back); the fit span ends an embargo of ``max_horizon`` sessions before it.
    """
    horizon = table.targets_config.max_horizon
    pos_end = table.index.get_loc(session) - horizon  # last session whose labels have matured
    pos_start = pos_end - holdout + 1
    if pos_start - horizon - 1 < 0:
        raise ValueError(f"session {session.date()}: {pos_end + 1} sessions with matured labels cannot hold a "
                         f"{holdout}-session holdout and a fit span before it")
    return table.index[pos_start - horizon - 1], table.index[pos_start], table.index[pos_end]


def retrain_and_gate(table: FeatureTable, session: pd.Timestamp, root: Path, cfg: PipelineConfig,
                     data_info: dict) -> RetrainOutcome:
    """Train a challenger on every labelled session up to an embargo before a recent holdout, score
    it and the champion on that same holdout, and promote only through the gate (a paired block
    bootstrap of the difference in mean AUC under the default policy)."""
    from spywatch.bundle import FitSpec, ModelBundle, fit_bundle
    from spywatch.comparison import compare
    from spywatch.train import TrainConfig, inspect

    train_end, lo, hi = holdout_span(table, session, cfg.fit.holdout)
    window = (lo, hi)
    train_cfg = TrainConfig(device=cfg.device, threads=cfg.threads)
    epochs = cfg.fit.epochs
    if cfg.max_epochs:
        train_cfg = replace(train_cfg, max_epochs=cfg.max_epochs)
        epochs = cfg.max_epochs
    spec = FitSpec(train_end=str(train_end.date()), recipe=cfg.fit.recipe, epochs=epochs, members=cfg.fit.members,
                   holdout=(str(lo.date()), str(hi.date())), model=dict(cfg.model))
    bundle = fit_bundle(table, spec, train_cfg, data={**data_info, "trained_session": str(session.date()),
                                                      "policy": cfg.policy})
    registry = ModelRegistry(models_root(root))
    version = registry.register(bundle.write_into, meta={"kind": "patchtst", "session": str(session.date()),
                                                         "train_end": str(train_end.date()),
                                                         "members": cfg.fit.members, "periods": bundle.periods})
    window_name = f"{lo.date()}..{hi.date()}"
    context = {"session": str(session.date()), "holdout": [str(lo.date()), str(hi.date())], "policy": cfg.policy}
    outcome = partial(RetrainOutcome, challenger=version, window=[str(lo.date()), str(hi.date())],
                      train_seconds=bundle.metrics["train_seconds"], periods=bundle.periods, members=cfg.fit.members,
                      device=str(bundle.metrics.get("device")), training=bundle.metrics.get("training"))
    refused = training_gate(bundle.metrics.get("training"))
    if refused is not None:  # before the holdout is read: nothing to compare
        gate = registry.refuse(version, refused, context)
        return outcome(gate=gate, promoted=False, challenger_metrics={})

    def score(b: ModelBundle):
        w = b.windows(table, *window).labelled()
        ins = inspect(b.model, w.X)
        verdict = check_collapse(ins.proba, b.horizons, b.prior, w.y, ins.attention_entropy_ratio,
                                 ins.representation_std, ins.pos_to_content_ratio, policy=cfg.collapse)
        metrics = metrics_by_horizon(w.y, ins.proba, b.horizons)
        return ModelScore({h: m["auc"] for h, m in metrics.items()}, verdict.collapsed, window_name), metrics, w, ins

    challenger_score, challenger_metrics, w, ch_ins = score(ModelBundle.load(registry.get(version).path))
    champion = load_champion(root, cfg.promotion)
    champion_score, comparison, fresher = None, None, False
    if champion is not None:
        champion_score, _, w_champ, cp_ins = score(champion.bundle)
        if not np.array_equal(w.dates.asi8, w_champ.dates.asi8):
            raise ValueError(f"champion and challenger windows differ on the holdout {window_name}")
        comparison = compare(w.y, ch_ins.proba, cp_ins.proba, bundle.horizons, w.dates, "mean_auc",
                             cfg.promotion.bootstrap(table.targets_config.max_horizon), a="challenger", b="champion")
        champ_fit_end = pd.Timestamp(champion.bundle.periods["fit"][1])
        fresher = pd.Timestamp(bundle.periods["fit"][1]) > champ_fit_end
    gate = registry.promote_if_better(version, challenger_score, champion_score, cfg.promotion, context=context,
                                      comparison=comparison, fresher=fresher,
                                      champion_version=champion.version if champion is not None else None)
    return outcome(gate=gate, promoted=gate.promote, challenger_metrics=challenger_metrics)


def data_hash(table: FeatureTable, session: pd.Timestamp) -> str:
    """Identity of the bars up to ``session``: every OHLCV column the features read (a revised High
    changes it as surely as a revised Close)."""
    from spywatch.market_data import BAR_COLUMNS

    f = table.bars.loc[:session, list(BAR_COLUMNS)]
    h = hashlib.sha256(f.index.asi8.tobytes())
    h.update(np.ascontiguousarray(f.to_numpy()).tobytes())
    return h.hexdigest()[:16]


def feature_hash(table: FeatureTable, session: pd.Timestamp, lookback: int) -> str:
    f = table.features.loc[:session].iloc[-lookback:]
    return hashlib.sha256(np.ascontiguousarray(f.to_numpy()).tobytes()).hexdigest()[:16]


def alerts_for(audit: dict) -> list[dict]:
    """Events to emit for tonight, with the numbers in their payload."""
    out = []
    base = {"session": audit["session"], "run_id": audit["run_id"], "synthetic": audit.get("synthetic", False)}
    val = audit.get("validation") or {}
    failed = [line for part in val.values() if part and not part.get("success", True) for line in part["failures"]]
    if failed:
        out.append({"event": VALIDATION_EVENT, "payload": {**base, "failures": failed[:10], "n_failures": len(failed)}})
    drift = audit.get("drift")
    if drift and drift.get("dataset_drift"):
        from spywatch.report import drift_detail, drift_severity

        per_feature = drift.get("per_feature") or {}
        ranked = sorted((k for k, v in per_feature.items() if v.get("drifted")),
                        key=lambda k: (-drift_severity(per_feature[k]), k))
        out.append({"event": DRIFT_EVENT, "payload": {
            **base, "share": round(float(drift["share"]), 3), "n_drifted": drift["n_drifted"],
            "n_features": drift.get("n_features"), "reasons": drift.get("drift_reasons") or [],
            "drifted_features": ranked[:10], "drifted_features_cut": len(ranked) > 10,
            "detail": drift_detail(drift)}})
    collapse = audit.get("collapse")
    if collapse and collapse["verdict"] != "healthy":
        out.append({"event": COLLAPSE_EVENT, "payload": {**base, "verdict": collapse["verdict"],
                                                          "cause": collapse["cause"], "findings": collapse["findings"]}})
    vs = (audit.get("health") or {}).get("vs_baseline")
    if vs and vs.get("verdict") == "lagging":
        out.append({"event": LAGGING_EVENT, "payload": {
            **base, "baseline": vs["baseline"], "difference": vs["difference"], "ci": vs["ci"],
            "sessions": vs["sessions"], "span": vs.get("span"), "detail": phrase(vs),
            "version": audit.get("model_version")}})
    retrain = audit.get("retrain")
    if retrain and retrain.get("promoted"):
        out.append({"event": PROMOTED_EVENT, "payload": {**base, "version": retrain["challenger"],
                                                          "gate": retrain["gate"]["reasons"]}})
    training = (retrain or {}).get("training")
    if training and training["verdict"] != "healthy":  # the retrain that was needed produced a broken model
        out.append({"event": TRAINING_EVENT, "payload": {
            **base, "version": retrain["challenger"], "verdict": training["verdict"],
            "findings": [finding_line(f) for f in training["findings"]][:6]}})
    return out


# ----------------------------------------------------------------------------- the whole night
#
# One definition of the night, for the plain path (``spywatch run --no-prefect``, the backfill, the
# tests) and the Prefect ``nightly`` flow alike: :func:`run_night` runs the stages in order through
# a *runner* (plain: call the function; Prefect: run it as the stage's task, ``tasks/night.py``),
# records each stage's returned value in the audit, and sends every failure through one table,
# ``FAILURES``. The stage functions take values and return values; none of them reads or writes
# the night's state.


@dataclass(frozen=True)
class FailureRule:
    status: RunStatus
    publish_predictions: bool  # tonight's predictions go out anyway (with the champion that passed tonight)
    meaning: str


# What each failure does; every failure also ends the run failed (exit 1, the flow run Failed) and
# emits its alerts. Without published predictions, the last good ones are marked stale in
# latest.json (reason, since when) and the failure audit goes beside a published session's
# outputs (``attempts/<run>/``) or, for a session never published, becomes its folder.
FAILURES: dict[FailureKind, FailureRule] = {
    FailureKind.RAW_BARS_INVALID: FailureRule(RunStatus.VALIDATION_FAILED, False,
                                              "the bars failed the raw-bars suite; the store is untouched"),
    FailureKind.FEATURES_INVALID: FailureRule(RunStatus.VALIDATION_FAILED, False,
                                              "tonight's features failed the champion's features suite"),
    FailureKind.CHAMPION_REFUSED: FailureRule(RunStatus.FAILED, False,
                                              "the champion failed its checksums; the alias is left for a human"),
    FailureKind.FETCH_FAILED: FailureRule(RunStatus.FAILED, False,
                                          "the provider kept failing (after the fetch's retries)"),
    FailureKind.NO_CHAMPION: FailureRule(RunStatus.FAILED, False, "no champion to predict with"),
    FailureKind.RETRAIN_FAILED: FailureRule(RunStatus.PUBLISHED, True,
                                            "the retrain failed; tonight is published with the champion"),
    FailureKind.STAGE_ERROR: FailureRule(RunStatus.FAILED, False, "a stage raised (a bug or the machine)"),
}



@dataclass
class NightlyResult:
    session: str
    status: str  # a RunStatus value
    audit: dict
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def failure(self) -> dict | None:
        return self.audit.get("failure")

    @property
    def ok(self) -> bool:
        """Published (or already published) with no failure: the run succeeded."""
        return self.status in (RunStatus.PUBLISHED, RunStatus.ALREADY_PUBLISHED) and not self.failure

    def summary(self) -> str:
        a = self.audit
        lines = [f"spywatch nightly {a.get('ticker') or 'SPY'} for session {self.session}: {self.status.upper()}"
                 + ("  [SYNTHETIC DATA]" if a.get("synthetic") else "")]
        if a.get("failure"):
            f = a["failure"]
            lines.append(f"  FAILURE {f['kind']} in stage {f['stage']}: {f['reason']}")
        if a.get("data"):
            d = a["data"]
            lines.append(f"  data: {d['source']} {d['first_session']}..{d['last_session']}, "
                         f"{d['new_sessions']} new session(s), {d['revisions']} revision(s)")
        for name, part in (a.get("validation") or {}).items():
            if part:
                lines.append(f"  validation {name}: {'passed' if part['success'] else 'FAILED'}")
                lines.extend(f"    {f}" for f in part.get("failures", [])[:10])
        if a.get("drift"):
            lines.append(f"  drift: {'DETECTED' if a['drift']['dataset_drift'] else 'quiet'} "
                         f"(share {a['drift']['share']:.2f})")
        if a.get("collapse"):
            c = a["collapse"]
            lines.append(f"  model health: {c['verdict']}" + (f" (cause: {c['cause']})" if c["cause"] else "")
                         + f" · {phrase((a.get('health') or {}).get('vs_baseline'))}")
        if a.get("decision"):
            reasons = ", ".join(r["code"] for r in a["decision"]["reasons"]) or "none"
            lines.append(f"  decision: {'retrain' if a['decision']['retrain'] else 'keep champion'} (reasons: {reasons})")
        if (a.get("retrain") or {}).get("error"):
            lines.append(f"  retrain FAILED: {a['retrain']['error']}")
        elif a.get("retrain"):
            r = a["retrain"]
            lines.append(f"  challenger {r['challenger']}: {'PROMOTED' if r['promoted'] else 'not promoted'} "
                         f"({summary_line(r.get('training'))}; gate rule {(r.get('gate') or {}).get('rule')})")
        if a.get("predictions"):
            lines.append("  tonight: " + ", ".join(f"P({h}) = {v:.3f}" for h, v in a["predictions"]["latest"].items()
                                                   if h != "date"))
        if (a.get("stale") or {}).get("stale"):
            s = a["stale"]
            lines.append(f"  last good predictions ({s['last_good_session']}) are STALE since {s['stale_since']}: "
                         f"{s['reason']}" if s.get("last_good_session") else
                         f"  nothing was published before: no predictions since {s['stale_since']}: {s['reason']}")
        lines.extend(f"  {name}: {path}" for name, path in self.outputs.items())
        return "\n".join(lines)


class StageFailed(Exception):
    """A stage ended the night in a way ``FAILURES`` names (raised inside :func:`run_night`)."""

    def __init__(self, kind: FailureKind, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.stage, self.reason = kind, stage, reason


class PlainRunner:
    """Runs a stage by calling it; the fetch is retried on provider errors like the flow's task."""

    def __init__(self, fetch_retries: int = 2, fetch_backoff_s: float = 10.0) -> None:
        self.fetch_retries, self.fetch_backoff_s = fetch_retries, fetch_backoff_s

    @staticmethod
    def say(line: str) -> None:
        """A line of the night's story (``spywatch run --no-prefect`` shows the ``spywatch`` log)."""
        log.info(line)

    def call(self, stage: str, session: str, fn, *args):  # noqa: ANN001
        if stage != "fetch":
            return fn(*args)
        from spywatch.market_data import MarketDataError

        for attempt in range(self.fetch_retries + 1):
            try:
                return fn(*args)
            except MarketDataError as exc:
                if attempt == self.fetch_retries:
                    raise
                delay = self.fetch_backoff_s * 2 ** attempt
                log.warning("fetch failed (%s); retry %d/%d in %.0f s", exc, attempt + 1, self.fetch_retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def retrain_inline(night: Night) -> dict:
    """The plain path's retrain: train and gate here (the flow runs the ``retrain`` flow instead)."""
    return retrain_and_gate(night.table, night.session, night.root, night.cfg, night.data_info).to_dict()


def retrain_session(cfg: PipelineConfig) -> dict:
    """Train and gate a challenger for ``cfg``'s session from the store (the ``retrain`` flow, on
    whichever worker runs it: the nightly run fetched and validated these bars)."""
    session = cfg.session()
    table = load_features(cfg.root, cfg.ticker, session)
    source = source_from_spec(cfg.source)
    data_info = {"source": source.name, "synthetic": source.synthetic, "data_hash": data_hash(table, session)}
    return retrain_and_gate(table, session, Path(cfg.root), cfg, data_info).to_dict()


@dataclass
class Night:
    """One night's state as :func:`run_night` moves it through the stages (what the audit will say)."""

    cfg: PipelineConfig
    session: pd.Timestamp
    run_id: str
    source: MarketDataSource
    audit: dict
    table: FeatureTable | None = None
    champion: Champion | None = None
    predictions: PredictionAudit | None = None
    drift: object | None = None  # drift.DriftReport (verdicts + Evidently snapshots)
    decision: RetrainDecision | None = None
    data_info: dict = field(default_factory=dict)
    current_stage: str | None = None  # the stage running now (what a failure is attributed to)

    @property
    def sid(self) -> str:
        return self.session.date().isoformat()

    @property
    def root(self) -> Path:
        return Path(self.cfg.root)

    def stage(self, runner, name: str, fn, *args):  # noqa: ANN001
        """Run one stage through ``runner`` and time it; an exception names the stage."""
        self.current_stage = name
        t = time.perf_counter()
        try:
            result = runner.call(name, self.sid, fn, *args)
        finally:
            self.audit["timings"][name] = round(time.perf_counter() - t, 3)
        return result

    def narrate(self, runner, name: str) -> None:  # noqa: ANN001
        """One line about what ``name`` recorded, through the runner (the run log in a flow)."""
        line = narrate(name, self.audit)
        if line:
            getattr(runner, "say", log.info)(f"[{self.sid}] {line}")


def start_night(cfg: PipelineConfig) -> Night:
    session = cfg.session()
    source = source_from_spec(cfg.source)
    run_id = cfg.run_id or uuid.uuid4().hex[:12]
    audit = {"schema_version": SCHEMA_VERSION, "session": session.date().isoformat(), "run_id": run_id,
             "ticker": names.ticker(cfg.ticker),
             "synthetic": source.synthetic, "policy": cfg.policy, "source": source.name,
             "status": RunStatus.RUNNING.value, "failure": None,
             "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "model_version": None, "data": None, "validation": {}, "drift": None, "collapse": None, "health": None,
             "performance": None, "decision": None, "retrain": None, "predictions": None,
             "prediction_history": [], "stale": None, "alerts": [], "timings": {}}
    return Night(cfg=cfg, session=session, run_id=run_id, source=source, audit=audit)


def run_night(cfg: PipelineConfig, runner=None, retrain=retrain_inline, force: bool = False,  # noqa: ANN001
              lock_timeout_s: float | None = None) -> NightlyResult:
    """The night for one session, under the root's lock: fetch -> validate -> features -> champion
    -> validate features -> predict + audit -> drift -> decide -> (retrain) -> publish.

    ``runner.call(stage, session, fn, *args)`` runs each stage (``PlainRunner``, or the flow's task runner);
    ``retrain(night) -> outcome dict`` trains and gates a challenger (None: only record the
    decision). A session already published (and consistent) is not redone unless ``force``.
    """
    from spywatch.lock import root_lock

    runner = runner or PlainRunner()
    night = start_night(cfg)  # an unsettled session or a bad source is refused here, before anything is written
    with root_lock(cfg.root, "nightly", lock_timeout_s):
        publisher = Publisher(cfg.root)
        for line in publisher.recover():
            log.warning("publishing recovery: %s", line)
        if not force and publisher.is_published(night.sid):
            problems = publisher.consistency(night.sid)
            if problems:  # the folder is published but the shared files disagree: repair from the folder
                log.warning("session %s: %s; repairing from its folder", night.sid, "; ".join(problems))
                audit = publisher.read_audit(night.sid)
                publisher.repair(night.sid, audit["run_id"], audit.get("model_version"))
            return NightlyResult(session=night.sid, status=RunStatus.ALREADY_PUBLISHED.value,
                                 audit=publisher.read_audit(night.sid),
                                 outputs={"session folder": publisher.session_dir(night.sid)})
        try:
            _stages(night, runner, retrain)
            result = night.stage(runner, "publish", publish_night, night, publisher)
        except StageFailed as failed:
            result = night.stage(runner, "publish_failure", _fail, night, publisher, failed.kind, failed.stage,
                                 failed.reason)
        except Exception as exc:
            stage = night.current_stage or "?"
            log.exception("session %s: stage %s raised", night.sid, stage)
            result = night.stage(runner, "publish_failure", _fail, night, publisher, FailureKind.STAGE_ERROR, stage,
                                 _exc_text(exc))
        night.narrate(runner, "publish" if result.status == RunStatus.PUBLISHED else "publish_failure")
        return result


def run_nightly(cfg: PipelineConfig, force: bool = True) -> NightlyResult:
    """``run_night`` on the plain path, every stage in this process (the backfill and the tests)."""
    return run_night(cfg, retrain=retrain_inline if cfg.retrain == "inline" else None, force=force)


def _stages(night: Night, runner, retrain) -> None:  # noqa: ANN001
    from spywatch.market_data import MarketDataError
    from spywatch.validation import ValidationFailed

    cfg, a = night.cfg, night.audit
    try:
        update, raw = night.stage(runner, "fetch", fetch_and_validate, night.source, night.root, cfg.ticker,
                                  night.session)
    except ValidationFailed as exc:
        a["validation"]["raw_bars"] = _validation_dict(exc.result)
        raise StageFailed(FailureKind.RAW_BARS_INVALID, "fetch",
                          f"raw_bars validation failed ({len(exc.result.failures)} check(s))") from exc
    except MarketDataError as exc:
        raise StageFailed(FailureKind.FETCH_FAILED, "fetch", f"market data: {_exc_text(exc, named=False)}") from exc
    a["validation"]["raw_bars"] = _validation_dict(raw)
    a["data"] = _update_dict(update)
    night.narrate(runner, "fetch")

    night.table = night.stage(runner, "features", load_features, night.root, cfg.ticker, night.session)
    night.data_info = {"source": night.source.name, "synthetic": night.source.synthetic,
                       "data_hash": data_hash(night.table, night.session)}

    _load_champion(night, runner)
    if night.champion is not None:
        result = night.stage(runner, "validate_features", validate_current_features, night.table, night.champion,
                             night.session, cfg.drift_window, night.root / "validation")
        a["validation"]["features"] = _validation_dict(result)
        night.narrate(runner, "validate_features")
        if not result.success:
            raise StageFailed(FailureKind.FEATURES_INVALID, "validate_features", "features validation failed")
        _audit_champion(night, runner)

    history = _read_drift_history(night.root)
    drift = night.drift.result if night.drift is not None else None
    night.decision = night.stage(runner, "decide", make_decision, drift, night.predictions, night.champion,
                                 night.session, history, cfg.retrain_policy)
    a["decision"] = night.decision.to_dict()
    night.narrate(runner, "decide")
    if drift is not None:
        _write_drift_history(night.root, history, night.sid, drift.dataset_drift)

    if night.decision.retrain and retrain is not None:
        try:
            outcome = night.stage(runner, "retrain", retrain, night)
        except Exception as exc:  # tonight still goes out with the champion that passed its audit
            log.exception("session %s: the retrain failed", night.sid)
            a["retrain"] = {"error": _exc_text(exc), "challenger": None, "promoted": False}
            if night.champion is None:
                raise StageFailed(FailureKind.NO_CHAMPION, "retrain",
                                  f"no champion, and the retrain failed: {_exc_text(exc)}") from exc
            a["failure"] = _failure_dict(FailureKind.RETRAIN_FAILED, "retrain", _exc_text(exc))
            night.narrate(runner, "retrain")
        else:
            a["retrain"] = outcome
            night.narrate(runner, "retrain")
            previous = night.champion.version if night.champion else None
            _load_champion(night, runner)
            if night.champion is not None and night.champion.version != previous:
                _audit_champion(night, runner)  # the new champion publishes tonight, audited
    if night.champion is None or night.predictions is None:
        raise StageFailed(FailureKind.NO_CHAMPION, night.current_stage or "decide", _no_champion_reason(night.audit))


def _no_champion_reason(audit: dict) -> str:
    """Why there is nothing to predict with: no retrain, or the gate's refusal with its numbers
    (the failed check first: a floor, a collapse, a training verdict)."""
    retrain = audit.get("retrain") or {}
    gate = retrain.get("gate") or {}
    if not gate:
        return "no champion model to predict with"
    reasons = list(gate.get("reasons") or [])
    failed = [r for r in reasons if " < floor" in r or r.startswith("challenger predictions collapsed")
              or "training verdict" in r]
    shown = failed + [r for r in reasons if r not in failed]
    return (f"no champion model to predict with: challenger {retrain.get('challenger')} refused by the gate "
            f"({gate.get('rule') or 'refused'}): {'; '.join(shown)}")


def _load_champion(night: Night, runner) -> None:  # noqa: ANN001
    try:
        night.champion = night.stage(runner, "champion", load_champion, night.root, night.cfg.promotion)
    except ArtifactError as exc:
        night.audit["champion_error"] = _exc_text(exc, named=False)
        raise StageFailed(FailureKind.CHAMPION_REFUSED, "champion", f"champion model refused: {_exc_text(exc, named=False)}") from exc
    night.audit["model_version"] = night.champion.version if night.champion else None
    if night.champion is not None:
        confirmed = last_confirmation(night.champion, night.session)
        night.audit["champion"] = {"trained_session": model_session(night.champion.bundle).date().isoformat(),
                                   "confirmed_session": confirmed.date().isoformat() if confirmed else None,
                                   "training": night.champion.bundle.metrics.get("training")}
    night.narrate(runner, "champion")


def _audit_champion(night: Night, runner) -> None:  # noqa: ANN001
    """Predict with the champion, check for collapse and decay, and measure drift."""
    night.predictions = night.stage(runner, "audit", predict_and_audit, night.table, night.champion,
                                    night.session, night.cfg)
    night.drift = night.stage(runner, "drift", measure_drift, night.table, night.champion, night.session,
                              night.cfg.drift_window, night.predictions.proba)
    night.audit["drift"] = night.drift.result.to_dict()
    night.audit["collapse"] = {**night.predictions.collapse.to_dict(), "members": night.predictions.members}
    night.audit["performance"] = night.predictions.performance
    night.audit["health"] = {"verdict": night.predictions.collapse.verdict,
                             "vs_baseline": (night.predictions.performance or {}).get("vs_baseline")}
    night.narrate(runner, "audit")
    night.narrate(runner, "drift")


def narrate(stage: str, audit: dict) -> str | None:
    """The one line a reader of the run log needs about ``stage``, from what it recorded."""
    a = audit
    if stage == "fetch" and a.get("data"):
        d, v = a["data"], (a.get("validation") or {}).get("raw_bars") or {}
        return (f"data: {d['source']} {d['first_session']}..{d['last_session']}, {d['new_sessions']} new session(s), "
                f"{d['revisions']} revision(s); raw-bars suite: {v.get('n_checks', '?')} checks passed")
    if stage == "champion":
        c = a.get("champion") or {}
        return (f"champion: {a['model_version']} (trained at {c.get('trained_session')}, confirmed "
                f"{c.get('confirmed_session') or 'never'}; {summary_line(c.get('training'))})"
                if a.get("model_version") else "champion: none yet")
    if stage == "validate_features":
        v = (a.get("validation") or {}).get("features") or {}
        return f"features suite: {'passed' if v.get('success') else 'FAILED'} ({v.get('n_checks', '?')} checks)"
    if stage == "audit" and a.get("collapse"):
        c = a["collapse"]
        spread = (c.get("evidence") or {}).get("pred_std") or {}
        return (f"health: {c['verdict']}" + (f" (cause: {c['cause']})" if c.get("cause") else "")
                + f" · {phrase((a.get('health') or {}).get('vs_baseline'))}"
                + f"; {len(c.get('members') or [])} member(s)"
                + (f"; std of P over the window {' / '.join(f'{h} {v:.3f}' for h, v in spread.items())}" if spread
                   else ""))
    if stage == "drift" and a.get("drift"):
        from spywatch.report import drift_detail

        return f"drift: {'DETECTED' if a['drift']['dataset_drift'] else 'quiet'} ({drift_detail(a['drift'])})"
    if stage == "decide" and a.get("decision"):
        d = a["decision"]
        why = d["reasons"] if d["retrain"] else d.get("notes") or []  # what fired, or what each trigger read
        reasons = "; ".join(r["message"] for r in why) or "no trigger fired"
        return f"decision: {'RETRAIN' if d['retrain'] else 'keep the champion'} ({reasons})"
    if stage == "retrain" and a.get("retrain"):
        r = a["retrain"]
        if r.get("error"):
            return f"retrain FAILED: {r['error']}"
        gate = r.get("gate") or {}
        cmp_ = (gate.get("details") or {}).get("comparison") or {}
        est = (f", challenger - champion mean AUC {cmp_['estimate']:+.4f} [{cmp_['ci_low']:+.4f}, "
               f"{cmp_['ci_high']:+.4f}], P(better) {cmp_['p_a_better']:.2f}" if cmp_.get("estimate") is not None
               else "")
        return (f"challenger {r['challenger']} ({r.get('members', 1)} member(s), trained on "
                f"{r.get('device') or 'an unrecorded device'} in "
                f"{r.get('train_seconds', 0):.0f} s; {summary_line(r.get('training'))}): "
                f"{'PROMOTED' if r['promoted'] else 'not promoted'} "
                f"(rule {(gate.get('details') or {}).get('rule', gate.get('rule'))}{est})")
    if stage == "publish" and a.get("predictions"):
        p, spread = a["predictions"]["latest"], a["predictions"].get("member_std") or {}
        return "published: " + ", ".join(f"P({h}) = {v:.3f} ± {spread.get(h, float('nan')):.3f}"
                                          for h, v in p.items() if h != "date")
    if stage == "publish_failure" and a.get("failure"):
        f = a["failure"]
        return f"FAILED ({f['kind']} in {f['stage']}): {f['reason']}; the last good predictions are marked stale" \
            if not f["predictions_published"] else None
    return None


def _exc_text(exc: BaseException, named: bool = True) -> str:
    """An exception as the audit, the log and the alerts quote it: bounded (``spywatch.text``)."""
    return cut(f"{type(exc).__name__}: {exc}" if named else str(exc), REASON_LIMIT)


def _failure_dict(kind: FailureKind, stage: str, reason: str) -> dict:
    rule = FAILURES[kind]
    return {"kind": kind.value, "stage": stage, "reason": cut(reason, REASON_LIMIT), "meaning": rule.meaning,
            "predictions_published": rule.publish_predictions}


def publish_night(night: Night, publisher: Publisher | None = None) -> NightlyResult:
    """Publish tonight's predictions with their audit, as one recoverable unit."""
    publisher = publisher or Publisher(night.root)
    latest = night.predictions.proba.iloc[-1]
    spread = night.predictions.spread.iloc[-1]
    a = night.audit
    a["predictions"] = {"file": "predictions.parquet", "rows": len(latest),
                        "latest": {"date": night.sid, **{h: float(v) for h, v in latest.items()}},
                        "member_std": {h: float(v) for h, v in spread.items()},
                        "members": len(night.champion.bundle.model)}
    a["prediction_history"] = [{"date": d.date().isoformat(), **{h: round(float(v), 5) for h, v in row.items()}}
                               for d, row in night.predictions.history.iterrows()]
    rows = pd.DataFrame({"session": night.sid, "horizon": list(latest.index),
                         "probability": latest.to_numpy(dtype="float64"),
                         "member_std": spread.reindex(latest.index).to_numpy(dtype="float64"),
                         "model_version": night.champion.version, "data_hash": night.data_info["data_hash"],
                         "feature_hash": feature_hash(night.table, night.session, night.champion.bundle.lookback),
                         "run_id": night.run_id, "synthetic": night.source.synthetic})
    a["status"] = RunStatus.PUBLISHED.value
    a["stale"] = None
    a["alerts"] = alerts_for(a)
    a["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    link = publisher.publish_night(night.sid, night.run_id, night.champion.version,
                                   {"predictions.parquet": lambda p: rows.to_parquet(p, index=False),
                                    **_audit_files(a, drift_html=night.drift is not None)},
                                   populate=_drift_files(night.drift))
    return NightlyResult(session=night.sid, status=a["status"], audit=a,
                         outputs={"session folder": link, "audit": link / "audit.json",
                                  "report": link / "report.html", "predictions": publisher.predictions_path,
                                  "latest": publisher.latest_path})


def _fail(night: Night, publisher: Publisher, kind: FailureKind, stage: str, reason: str) -> NightlyResult:
    """No predictions tonight: the failure audit is published (beside a published session's outputs,
    which stay as they are), and the last good predictions are marked stale."""
    a = night.audit
    rule = FAILURES[kind]
    a["status"] = rule.status.value
    a["failure"] = _failure_dict(kind, stage, reason)
    a["predictions"], a["prediction_history"] = None, []
    a["stale"] = publisher.mark_stale(night.sid, cut(reason, REASON_LIMIT), night.run_id)
    a["alerts"] = alerts_for(a)
    a["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    files = _audit_files(a)
    if publisher.is_published(night.sid):
        folder = publisher.publish_attempt(night.sid, night.run_id, files)
    else:
        folder = publisher.publish_session(night.sid, night.run_id, files)
    return NightlyResult(session=night.sid, status=a["status"], audit=a,
                         outputs={"audit": folder / "audit.json", "report": folder / "report.html",
                                  "latest": publisher.latest_path})


# ----------------------------------------------------------------------------- helpers


def _audit_files(audit: dict, drift_html: bool = False) -> dict[str, bytes]:
    """``audit.json`` and its HTML report (linking the Evidently report when it is beside them)."""
    import json

    from spywatch.atomic import json_bytes
    from spywatch.report import render_audit_html

    check_audit(audit)  # what is written follows the schema (AuditSchemaError names the field otherwise)
    audit_bytes = json_bytes(bounded(audit, REASON_LIMIT))  # the last guard: no string beyond the bound
    html = render_audit_html(json.loads(audit_bytes), drift_report_href="drift.html" if drift_html else None)
    return {"audit.json": audit_bytes, "report.html": html.encode()}


def _drift_files(drift_report):  # noqa: ANN001, ANN202
    def write(folder: Path) -> None:
        if drift_report is not None:
            from spywatch.drift import save_drift_report

            save_drift_report(drift_report, folder, stem="drift")
    return write


def _validation_dict(result) -> dict:
    return {"success": result.success, "failures": result.lines(), "n_checks": result.n_checks,
            "seconds": result.seconds}


def _update_dict(update: UpdateResult) -> dict:
    return {"source": update.source, "synthetic": update.synthetic, "first_session": update.first_session,
            "last_session": update.last_session, "new_sessions": len(update.new_sessions),
            "revisions": len(update.revisions), "path": str(update.path)}


def _read_drift_history(root: Path) -> list[dict]:
    import json

    path = Path(root) / "state" / "drift_history.json"
    return json.loads(path.read_text()) if path.exists() else []


def _write_drift_history(root: Path, history: list[dict], session: str, drifted: bool) -> None:
    from spywatch.atomic import atomic_write_json

    kept = [h for h in history if h["session"] != session] + [{"session": session, "dataset_drift": bool(drifted)}]
    atomic_write_json(Path(root) / "state" / "drift_history.json", sorted(kept, key=lambda h: h["session"])[-500:])
