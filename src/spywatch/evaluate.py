"""Out-of-time evaluation: PatchTST against the baselines on the same splits, with embargoes.

Train on the past, stop early on a later validation span, test on a still later period; an
embargo of h sessions (the longest horizon) separates the spans, because the label at t reads
closes up to t+h.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from spywatch.audit import CollapseVerdict, check_collapse, metrics_by_horizon
from spywatch.baselines import BaselineConfig, fit_baselines
from spywatch.dataset import FeatureTable, build_table
from spywatch.features import FEATURES, FeatureScaler
from spywatch.model import PatchTSTConfig
from spywatch.train import TrainConfig, Windows, inspect, make_windows, peak_rss_mb, train_model

log = logging.getLogger(__name__)

RAW_INPUTS = ("Close", "MACD", "ATR", "RSI", "Volume")


@dataclass(frozen=True)
class Split:
    """Date boundaries; ``val_start`` None = the last 20% of the training span."""

    train_end: str
    test_start: str
    test_end: str | None = None
    val_start: str | None = None
    train_start: str | None = None
    embargo: int | None = None  # sessions; None = the longest horizon


@dataclass(frozen=True)
class Periods:
    fit: tuple[pd.Timestamp, pd.Timestamp]
    val: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]
    embargo: int

    def to_dict(self) -> dict:
        d = lambda a: a.date().isoformat()  # noqa: E731
        return {"fit": [d(x) for x in self.fit], "val": [d(x) for x in self.val],
                "test": [d(x) for x in self.test], "embargo_sessions": self.embargo}


def resolve_periods(index: pd.DatetimeIndex, split: Split, max_horizon: int, first_valid: pd.Timestamp) -> Periods:
    """Session-exact fit / validation / test spans with ``embargo`` sessions dropped before each boundary."""
    emb = max_horizon if split.embargo is None else split.embargo
    sessions = index[index >= first_valid]
    if split.train_start:
        sessions = sessions[sessions >= pd.Timestamp(split.train_start)]
    train = sessions[sessions <= pd.Timestamp(split.train_end)]
    if len(train) < 100:
        raise ValueError(f"only {len(train)} usable sessions up to train end {split.train_end}")
    if split.val_start:
        val_pos = int(train.searchsorted(pd.Timestamp(split.val_start)))
    else:
        val_pos = int(len(train) * 0.8)
    if not 50 <= val_pos < len(train) - emb - 20:
        raise ValueError(f"validation start {split.val_start or 'last 20%'} leaves too little fit or validation data")
    test = index[index >= pd.Timestamp(split.test_start)]
    if split.test_end:
        test = test[test <= pd.Timestamp(split.test_end)]
    if len(test) == 0:
        raise ValueError(f"no sessions in the test period {split.test_start}..{split.test_end or 'end'}")
    if test[0] <= train[-1]:
        raise ValueError(f"test start {test[0].date()} is not after training end {train[-1].date()}")
    fit = (train[0], train[val_pos - 1 - emb])
    # Validation stops `emb` sessions before the test starts (or at the training end if earlier).
    val = (train[val_pos], min(train[-1], index[int(index.searchsorted(test[0])) - 1 - emb]))
    return Periods(fit=fit, val=val, test=(test[0], test[-1]), embargo=emb)


@dataclass(frozen=True)
class EvalConfig:
    features: str = "normalized"  # "normalized" (the model features) or "raw" (the original study's inputs)
    seeds: int = 3
    model: dict = field(default_factory=dict)  # PatchTSTConfig overrides
    train: TrainConfig = TrainConfig()
    baselines: BaselineConfig = BaselineConfig()
    lookback: int = 20

    def __post_init__(self) -> None:
        if self.features not in ("normalized", "raw"):
            raise ValueError(f"features={self.features!r}; expected 'normalized' or 'raw'")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")


@dataclass(frozen=True)
class ModelInputs:
    """Model inputs and the statistics they are judged against."""

    frame: pd.DataFrame  # what the model sees (scaled features, or raw columns unscaled)
    unscaled: pd.DataFrame  # the same columns before scaling
    stats: FeatureScaler  # training statistics of `unscaled` (fit period only)


def model_inputs(table: FeatureTable, mode: str, fit_end: pd.Timestamp) -> ModelInputs:
    if mode == "raw":
        raw = table.raw.loc[:, list(RAW_INPUTS)].copy()
        raw.loc[table.features.isna().any(axis=1)] = np.nan  # same sample set as the normalised run
        stats = FeatureScaler.fit(raw.loc[:fit_end])
        return ModelInputs(frame=raw, unscaled=raw, stats=stats)
    feats = table.features.loc[:, list(FEATURES)]
    stats = FeatureScaler.fit(feats.loc[:fit_end])
    return ModelInputs(frame=stats.transform(feats), unscaled=feats, stats=stats)


def evaluate(bars: pd.DataFrame, split: Split, config: EvalConfig = EvalConfig()) -> dict:
    """Train PatchTST (``config.seeds`` seeds) and the baselines; evaluate all on the test period.

    Returns the JSON-ready report described in the README (horizons, audit, timings).
    """
    t_start = time.perf_counter()
    table = build_table(bars)
    names = table.targets_config.names
    first_valid = table.features.dropna().index[0]
    periods = resolve_periods(table.index, split, table.targets_config.max_horizon, first_valid)
    inputs = model_inputs(table, config.features, periods.fit[1])
    lookback = config.lookback
    win = lambda span: make_windows(inputs.frame, table.targets, lookback, *span)  # noqa: E731
    fit_w, val_w, test_w = win(periods.fit).labelled(), win(periods.val).labelled(), win(periods.test).labelled()
    log.info("windows: fit %d, val %d, test %d", len(fit_w), len(val_w), len(test_w))
    model_cfg = PatchTSTConfig(n_channels=inputs.frame.shape[1], n_outputs=len(names), lookback=lookback,
                               **config.model)

    # Baselines see the same samples: the inputs at each window's last session.
    base = fit_baselines(fit_w.X[:, -1, :], fit_w.y, config.baselines, seed=0)
    base_pred = base.predict(test_w.X[:, -1, :])
    base_metrics = {k: metrics_by_horizon(test_w.y, p, names) for k, p in base_pred.items()}

    shift = inputs.stats.shift_std(inputs.unscaled.loc[periods.test[0]:periods.test[1]])
    runs = []
    for seed in range(config.seeds):
        res = train_model(fit_w, val_w, model_cfg, replace(config.train, seed=seed))
        ins = inspect(res.model, test_w.X)
        verdict = check_collapse(ins.proba, names, base.prior, test_w.y, ins.attention_entropy_ratio,
                                 ins.representation_std, ins.pos_to_content_ratio, shift)
        runs.append({"seed": seed, "train_seconds": res.seconds, "best_epoch": res.best_epoch,
                     "epochs": len(res.history), "best_val_loss": res.best_val_loss, "device": res.device,
                     "n_params": res.n_params, "metrics": metrics_by_horizon(test_w.y, ins.proba, names),
                     "verdict": verdict})
        log.info("seed %d: %.1fs, epochs %d, AUC %s, verdict %s", seed, res.seconds, len(res.history),
                 {h: round(m["auc"], 3) for h, m in runs[-1]["metrics"].items()}, verdict.verdict)
    return _report(names, runs, base_metrics, periods, config, model_cfg, len(fit_w), len(val_w), len(test_w),
                   time.perf_counter() - t_start)


def _report(names, runs, base_metrics, periods, config, model_cfg, n_fit, n_val, n_test, seconds) -> dict:
    horizons = {}
    for h in names:
        aucs = np.array([r["metrics"][h]["auc"] for r in runs])
        stds = np.array([r["metrics"][h]["pred_std"] for r in runs])
        horizons[h] = {
            "patchtst": {
                "auc": float(aucs.mean()), "auc_seed_std": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
                "auc_by_seed": [float(a) for a in aucs],
                "brier": float(np.mean([r["metrics"][h]["brier"] for r in runs])),
                "pr_auc": float(np.mean([r["metrics"][h]["pr_auc"] for r in runs])),
                "ece": float(np.mean([r["metrics"][h]["ece"] for r in runs])),
                "log_loss": float(np.mean([r["metrics"][h]["log_loss"] for r in runs])),
                "pred_mean": float(np.mean([r["metrics"][h]["pred_mean"] for r in runs])),
                "pred_std": float(stds.mean()),
                "collapsed": any(h in r["verdict"].collapsed_horizons for r in runs),
            },
            "random_forest": _pick(base_metrics["random_forest"][h]),
            "logistic": _pick(base_metrics["logistic"][h]),
            "prior": {"rate": float(base_metrics["prior"][h]["pred_mean"]), "auc": 0.5,
                      "brier": base_metrics["prior"][h]["brier"], "test_rate": base_metrics["prior"][h]["base_rate"]},
        }
    # The overall verdict is the worst over seeds: collapsed > inputs_out_of_range > healthy.
    rank = {"collapsed": 2, "inputs_out_of_range": 1, "healthy": 0}
    worst: CollapseVerdict = max((r["verdict"] for r in runs), key=lambda v: rank[v.verdict])
    return {
        "horizons": horizons,
        "audit": {"verdict": worst.verdict, "cause": worst.cause, "causes": worst.causes,
                  "findings": worst.findings, "evidence": worst.to_dict()["evidence"],
                  "verdict_by_seed": [r["verdict"].verdict for r in runs]},
        "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
        "train_seconds_by_seed": [r["train_seconds"] for r in runs],
        "epochs_by_seed": [r["epochs"] for r in runs],
        "peak_rss_mb": peak_rss_mb(),
        "total_seconds": seconds,
        "device": runs[0]["device"],
        "n_params": runs[0]["n_params"],
        "features": config.features,
        "periods": periods.to_dict(),
        "samples": {"fit": n_fit, "val": n_val, "test": n_test},
        "model": model_cfg.to_dict(),
        "train": config.train.to_dict(),
    }


def _pick(m: dict) -> dict:
    return {k: m[k] for k in ("auc", "pr_auc", "brier", "ece", "log_loss", "pred_mean", "pred_std")}


def format_report(report: dict) -> str:
    lines = [f"{'horizon':<8}{'model':<15}{'AUC':>8}{'+-seed':>8}{'Brier':>8}{'ECE':>7}{'pred_std':>10}"]
    for h, row in report["horizons"].items():
        p = row["patchtst"]
        lines.append(f"{h:<8}{'patchtst':<15}{p['auc']:>8.3f}{p['auc_seed_std']:>8.3f}{p['brier']:>8.4f}"
                     f"{p['ece']:>7.3f}{p['pred_std']:>10.4f}{'  COLLAPSED' if p['collapsed'] else ''}")
        for name in ("random_forest", "logistic"):
            b = row[name]
            lines.append(f"{'':<8}{name:<15}{b['auc']:>8.3f}{'':>8}{b['brier']:>8.4f}{b['ece']:>7.3f}{b['pred_std']:>10.4f}")
        lines.append(f"{'':<8}{'prior':<15}{0.5:>8.3f}{'':>8}{row['prior']['brier']:>8.4f}"
                     f"{'':>7}{0.0:>10.4f}  rate {row['prior']['rate']:.3f}")
    a = report["audit"]
    lines.append("")
    lines.append(f"audit: {a['verdict']}" + (f" (cause: {a['cause']})" if a["cause"] else ""))
    lines.extend(f"  - {f}" for f in a["findings"])
    lines.append(f"train {report['train_seconds']:.1f}s/seed on {report['device']}, peak RSS {report['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
