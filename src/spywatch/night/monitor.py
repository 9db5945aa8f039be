"""The night's monitoring stages: fetch and validate the bars, build the features, validate them
against the champion's suite, predict and audit the champion (collapse, decay, the baseline
verdict), and measure drift. Each takes values and returns values; none reads the night's state."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch.audit import CollapseVerdict, check_collapse, metrics_by_horizon
from spywatch.audit_schema import Performance
from spywatch.dataset import FeatureTable, build_table
from spywatch.layout import RootLayout
from spywatch.market_data import MarketDataSource
from spywatch.night.champion import Champion
from spywatch.night.config import PipelineConfig
from spywatch.store import ParquetStore

log = logging.getLogger(__name__)


def fetch_and_validate(source: MarketDataSource, root: Path, ticker: str, session: pd.Timestamp):
    """Update the store; the raw-bars suite checks the merged bars before anything is written.

    Returns (UpdateResult, ValidationResult). Raises ``ValidationFailed`` (store untouched).
    """
    from spywatch.validation import validate_bars

    outcome = {}

    def check(bars: pd.DataFrame) -> None:
        result = validate_bars(bars.loc[:session], session.date(), results_dir=RootLayout(root).validation)
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


def validate_current_features(table: FeatureTable, champion: Champion, session: pd.Timestamp, window: int,
                              results_dir: Path):
    from spywatch.validation import validate_features

    feats = table.features.loc[:session].iloc[-window:]
    return validate_features(feats, champion.path, results_dir=results_dir)


def measure_drift(table: FeatureTable, champion: Champion, session: pd.Timestamp, window: int,
                  current_proba: pd.DataFrame | None):
    """Evidently drift of the current window against the champion's training reference, and of its
    recent predictions against its validation predictions. Returns a ``drift.DriftReport``."""
    from spywatch.drift import current_window, recent_rows, reference_rows, run_drift_report
    from spywatch.drift_config import DriftConfig

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
    performance: Performance | None  # metrics on matured labels vs baselines, or None when too few
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
                           performance=performance(table, champion, w, all_proba, session, cfg),
                           history=all_proba.iloc[-cfg.performance_window:])


def performance(table: FeatureTable, champion: Champion, w, proba: pd.DataFrame, session: pd.Timestamp,
                 cfg: PipelineConfig) -> Performance | None:
    """The champion against the Random Forest, the logistic regression and the prior on matured labels.

    Two windows. What people see (``window``, ``horizons``, ROC, calibration): the last
    ``performance_window`` matured sessions after the champion's fit span and an embargo, out of
    sample. What decides (``decay``): every matured session since the champion was selected or
    last confirmed (``decay_window_start``), so never the holdout it won on; the floor and the
    CUSUM read only this one.
    """
    from spywatch.baselines import BaselineConfig, fit_or_load_baselines
    from spywatch.comparison import session_log_loss
    from spywatch.report.metrics import calibration_points, roc_points
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
    decay_lo = max(champion.decay_window_start(table, session), table.index[max(0, pos_end - cfg.decay_window_max + 1)])
    labelled = ~np.isnan(w.y).any(axis=1)
    show = (w.dates >= show_lo) & (w.dates <= hi) & labelled
    decay = (w.dates >= decay_lo) & (w.dates <= hi) & labelled
    out: dict = {"window": [show_lo.date().isoformat(), hi.date().isoformat()], "n": int(show.sum()), "horizons": None,
                 "vs_baseline": None,
                 "decay": {"window": [decay_lo.date().isoformat(), hi.date().isoformat()], "n": int(decay.sum()),
                           "auc_by_horizon": {}, "rf_auc_by_horizon": {}, "loss_diff": [], "sessions": []}}
    either = show | decay
    if not either.any():
        return Performance.model_validate(out)
    p_all = proba.to_numpy()
    fit = bundle.periods["fit"]
    train_w = bundle.windows(table, fit[0], fit[1]).labelled()
    # fitted on the champion's own training period: the same every night, so kept between nights
    from spywatch.evaluate import VOL_FEATURES

    vol_columns = tuple(bundle.scaler.features.index(c) for c in VOL_FEATURES if c in bundle.scaler.features)
    base = fit_or_load_baselines(train_w.X[:, -1, :], train_w.y, cfg.layout.baselines,
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
                               w.dates[show], block=max(10, horizon))
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
    return Performance.model_validate(out)


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
