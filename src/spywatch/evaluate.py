"""Out-of-time evaluation: PatchTST against the baselines on the same splits, with embargoes.

Train on the past, stop early on a later validation span, test on a still later period; an
embargo of h sessions (the longest horizon) separates the spans, because the label at t reads
closes up to t+h.

PatchTST is reported as the ensemble of its seeds (the mean of their probabilities), with each
member beside it. Every model's AUC carries a block-bootstrap interval, and the ensemble is
compared with each baseline on the same test sessions (``spywatch.comparison``): a difference is
read against its interval, not against the seed noise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from spywatch.audit import CollapseVerdict, check_collapse, metrics_by_horizon
from spywatch.audit_schema import Training
from spywatch.training_audit import finding_line, member_lines, training_section
from spywatch.baselines import BaselineConfig, fit_baselines, fit_logistic
from spywatch.bundle import FULL_EPOCHS
from spywatch.comparison import BootstrapConfig, auc_interval, compare, side_of_zero
from spywatch.dataset import FeatureTable, build_table
from spywatch.features import FEATURES, FeatureScaler
from spywatch.model import PatchTSTConfig
from spywatch.train import TrainConfig, inspect, make_windows, peak_rss_mb, train_ensemble

log = logging.getLogger(__name__)

RAW_INPUTS = ("Close", "MACD", "ATR", "RSI", "Volume")
# The original study's other choices (with ``features="raw"``: the collapse demonstration): the
# ``randn`` positional encoding, sigmoid + BCELoss, a flatten head without the skip inputs, the
# paper's post-norm BatchNorm encoder with 3 layers, the output bias at the layer's own init.
ORIGINAL_MODEL = {"pos_init": "randn", "head": "flatten", "head_skip": False, "norm": "batchnorm", "n_layers": 3}
ORIGINAL_TRAIN = {"loss": "sigmoid_bce", "prior_bias": False}
# The volatility family of FEATURES: how far the price has been moving, not which way. The label
# (a gain of at least 1% within h sessions) is largely a question of how far the price moves, so
# a logistic on these alone is the bar a model must clear to show that it reads more than the
# volatility regime (returns, trend, oscillators and volume are left out on purpose).
VOL_FEATURES: tuple[str, ...] = ("vol_5", "vol_20", "vol_60", "vol_ratio_5_60", "atr_14_pct", "range_pct")
# The baselines the ensemble is compared with, in the order the report prints them.
BASELINES: tuple[str, ...] = ("random_forest", "logistic", "vol_logistic")
LABELS = {"random_forest": "RF", "logistic": "logistic", "vol_logistic": "vol logistic"}


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
    val: tuple[pd.Timestamp, pd.Timestamp] | None  # None: fixed epochs, no early stopping
    test: tuple[pd.Timestamp, pd.Timestamp]
    embargo: int

    def to_dict(self) -> dict:
        d = lambda a: a.date().isoformat()  # noqa: E731
        return {"fit": [d(x) for x in self.fit], "val": [d(x) for x in self.val] if self.val else None,
                "test": [d(x) for x in self.test], "embargo_sessions": self.embargo}


def resolve_periods(index: pd.DatetimeIndex, split: Split, max_horizon: int, first_valid: pd.Timestamp,
                    early_stopping: bool = True) -> Periods:
    """Session-exact fit / validation / test spans with ``embargo`` sessions dropped before each boundary.

    Without ``early_stopping`` (the pipeline's "full" recipe) there is no validation span: the fit
    runs to an embargo before the test, and ``split.val_start`` is ignored.
    """
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
    # Validation (or, without it, the fit) stops `emb` sessions before the test starts.
    last = min(train[-1], index[int(index.searchsorted(test[0])) - 1 - emb])
    if not early_stopping:
        return Periods(fit=(train[0], last), val=None, test=(test[0], test[-1]), embargo=emb)
    fit = (train[0], train[val_pos - 1 - emb])
    return Periods(fit=fit, val=(train[val_pos], last), test=(test[0], test[-1]), embargo=emb)


@dataclass(frozen=True)
class EvalConfig:
    features: str = "normalized"  # "normalized" (the model features) or "raw" (the original study's inputs)
    seeds: int = 3
    model: dict = field(default_factory=dict)  # PatchTSTConfig overrides
    train: TrainConfig = TrainConfig()
    baselines: BaselineConfig = BaselineConfig()
    lookback: int = 20
    n_boot: int = 2000  # block-bootstrap resamples for the AUC intervals and the paired comparisons
    # "full": every session up to an embargo before the test, ``epochs`` epochs (the pipeline's
    # default recipe, bench/results/fit_window.md); "early_stopping": the split's validation span.
    recipe: str = "full"
    epochs: int = FULL_EPOCHS

    def __post_init__(self) -> None:
        if self.features not in ("normalized", "raw"):
            raise ValueError(f"features={self.features!r}; expected 'normalized' or 'raw'")
        if self.recipe not in ("full", "early_stopping"):
            raise ValueError(f"recipe={self.recipe!r}; expected 'full' or 'early_stopping'")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        BootstrapConfig(n_boot=self.n_boot)  # rejects a bad n_boot now rather than after the training


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


def vol_inputs(table: FeatureTable, fit_end: pd.Timestamp) -> pd.DataFrame:
    """The :data:`VOL_FEATURES` in training-std units, scaled as the model's features are.

    Taken from the feature table whatever ``EvalConfig.features`` says, so that the volatility
    reference is the same for the normalised and the raw run.
    """
    vol = table.features.loc[:, list(VOL_FEATURES)]
    return FeatureScaler.fit(vol.loc[:fit_end]).transform(vol)


@dataclass(frozen=True)
class Predictions:
    """Every model's probabilities on the same labelled test sessions."""

    y: np.ndarray  # (N, H) 0/1
    dates: pd.DatetimeIndex  # (N,) the sessions the windows end on
    horizons: list[str]  # H names
    members: np.ndarray  # (K, N, H) one PatchTST per seed
    baselines: dict[str, np.ndarray]  # name -> (N, H): random_forest, logistic, vol_logistic, prior

    @property
    def ensemble(self) -> np.ndarray:
        return ensemble_proba(self.members)


def ensemble_proba(members: np.ndarray) -> np.ndarray:
    """(K, N, H) member probabilities -> (N, H) their mean.

    Probabilities, not logits, are averaged, so that a member that is confidently wrong moves the
    mean by at most 1/K.
    """
    members = np.asarray(members, dtype="float64")
    if members.ndim != 3 or len(members) == 0:
        raise ValueError(f"member probabilities must be (K >= 1, N, H), got shape {members.shape}")
    return members.mean(axis=0)


def bootstrap_config(max_horizon: int, n_boot: int) -> BootstrapConfig:
    """Blocks at least as long as the longest horizon (labels overlap that long), and never under
    10 sessions (regimes cluster for longer than a day)."""
    return BootstrapConfig(n_boot=n_boot, block=max(10, max_horizon))


def comparison_verdict(ci_low: float, ci_high: float) -> str:
    """"better", "worse" or "not distinguishable": where the difference's interval lies against 0."""
    return {"above": "better", "below": "worse", "holds": "not distinguishable"}[side_of_zero(ci_low, ci_high)]


def paired_comparisons(preds: Predictions, boot: BootstrapConfig) -> dict:
    """The ensemble minus each baseline, on the same sessions.

    Returns ``{baseline: {"mean_auc": PairedComparison dict, "auc_by_horizon": {h: dict | None}}}``
    (None where a horizon has one class only in the test period), and for the Random Forest also
    ``"log_loss"`` (reported as RF - ensemble, so positive favours the ensemble).
    """
    ens, y, names = preds.ensemble, preds.y, preds.horizons
    out = {}
    for b in BASELINES:
        p_b = preds.baselines[b]
        run = lambda cols, metric: compare(y[:, cols], ens[:, cols], p_b[:, cols],  # noqa: E731
                                           [names[j] for j in cols], preds.dates, metric, boot,
                                           a="patchtst", b=b).to_dict()
        every = list(range(len(names)))
        entry = {"mean_auc": run(every, "mean_auc"),
                 "auc_by_horizon": {h: run([j], "mean_auc") if _both_classes(y[:, j]) else None
                                    for j, h in enumerate(names)}}
        if b == "random_forest":
            entry["log_loss"] = run(every, "log_loss")
        out[b] = entry
    return out


def _both_classes(y: np.ndarray) -> bool:
    return bool(0 < np.sum(y) < len(y))


def _check_test_labels(y: np.ndarray, names: list[str], boot: BootstrapConfig) -> None:
    """Refuse before training a test period the intervals cannot be drawn on."""
    if len(y) < 2 * boot.block:
        raise ValueError(f"{len(y)} labelled test sessions are too few for the block bootstrap "
                         f"(blocks of {boot.block} sessions; need at least {2 * boot.block})")
    if not any(_both_classes(y[:, j]) for j in range(len(names))):
        raise ValueError(f"no horizon of {names} has both classes in the {len(y)} labelled test sessions")


def evaluate(bars: pd.DataFrame, split: Split, config: EvalConfig = EvalConfig()) -> dict:
    """Train PatchTST (``config.seeds`` seeds) and the baselines; evaluate all on the test period.

    Returns the JSON-ready report described in the README (horizons, comparisons, audit, timings).
    """
    t_start = time.perf_counter()
    table = build_table(bars)
    names = table.targets_config.names
    first_valid = table.features.dropna().index[0]
    full = config.recipe == "full"
    periods = resolve_periods(table.index, split, table.targets_config.max_horizon, first_valid,
                              early_stopping=not full)
    inputs = model_inputs(table, config.features, periods.fit[1])
    lookback = config.lookback
    win = lambda span: make_windows(inputs.frame, table.targets, lookback, *span)  # noqa: E731
    fit_w, test_w = win(periods.fit).labelled(), win(periods.test).labelled()
    val_w = None if full else win(periods.val).labelled()
    train_cfg = replace(config.train, max_epochs=config.epochs) if full else config.train
    log.info("windows: fit %d, val %d, test %d", len(fit_w), len(val_w) if val_w else 0, len(test_w))
    boot = bootstrap_config(table.targets_config.max_horizon, config.n_boot)
    _check_test_labels(test_w.y, names, boot)
    model_cfg = PatchTSTConfig(n_channels=inputs.frame.shape[1], n_outputs=len(names), lookback=lookback,
                               **config.model)

    # Baselines see the same samples: the inputs at each window's last session.
    base = fit_baselines(fit_w.X[:, -1, :], fit_w.y, config.baselines, seed=0)
    base_pred = base.predict(test_w.X[:, -1, :])
    vol = vol_inputs(table, periods.fit[1])
    vol_lr = fit_logistic(vol.loc[fit_w.dates].to_numpy(), fit_w.y, config.baselines)
    x_vol_test = vol.loc[test_w.dates].to_numpy()
    base_pred["vol_logistic"] = np.column_stack([m.predict_proba(x_vol_test)[:, 1] for m in vol_lr])

    shift = inputs.stats.shift_std(inputs.unscaled.loc[periods.test[0]:periods.test[1]])
    runs, member_proba = [], []
    trained = train_ensemble(fit_w, val_w, model_cfg, replace(train_cfg, seed=0), config.seeds).members
    for seed, res in enumerate(trained):
        ins = inspect(res.model, test_w.X)
        verdict = check_collapse(ins.proba, names, base.prior, test_w.y, ins.attention_entropy_ratio,
                                 ins.representation_std, ins.pos_to_content_ratio, shift)
        member_proba.append(ins.proba)
        training = training_section([res.evidence], names)
        runs.append({"seed": seed, "train_seconds": res.seconds, "best_epoch": res.best_epoch,
                     "epochs": len(res.history), "best_val_loss": res.best_val_loss, "device": res.device,
                     "n_params": res.n_params, "verdict": verdict, "training": training})
        log.info("seed %d: %.1fs, epochs %d, verdict %s, training %s", seed, res.seconds, len(res.history),
                 verdict.verdict, training["verdict"] if training else "not recorded")
    preds = Predictions(y=test_w.y.astype("float64"), dates=test_w.dates, horizons=names,
                        members=np.stack(member_proba), baselines=base_pred)
    return _report(preds, runs, boot, periods, config, model_cfg, len(fit_w), len(val_w) if val_w else 0,
                   time.perf_counter() - t_start)


def _report(preds: Predictions, runs: list[dict], boot: BootstrapConfig, periods: Periods, config: EvalConfig,
            model_cfg: PatchTSTConfig, n_fit: int, n_val: int, seconds: float) -> dict:
    names, y = preds.horizons, preds.y
    ens = metrics_by_horizon(y, preds.ensemble, names)
    members = [metrics_by_horizon(y, p, names) for p in preds.members]
    base = {k: metrics_by_horizon(y, p, names) for k, p in preds.baselines.items()}
    ci = lambda p, j: auc_interval(y[:, j], p[:, j], boot)["ci"]  # noqa: E731
    horizons = {}
    for j, h in enumerate(names):
        aucs = np.array([m[h]["auc"] for m in members])
        horizons[h] = {
            "patchtst": {
                **_pick(ens[h]), "auc_ci": ci(preds.ensemble, j), "n_members": len(members),
                # The spread of the members' AUCs is the seed noise; the interval above is the
                # uncertainty that matters for a comparison (which sessions happened to be tested).
                "auc_seed_std": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
                "auc_by_seed": [float(a) for a in aucs], "auc_member_mean": float(aucs.mean()),
                # The collapse check reads each model's internals (attention, representation), which
                # an average has not got; one collapsed member pulls the ensemble toward the prior.
                "collapsed": any(h in r["verdict"].collapsed_horizons for r in runs),
            },
            "patchtst_members": [{"seed": r["seed"], **_pick(m[h]), "auc_ci": ci(p, j)}
                                 for r, m, p in zip(runs, members, preds.members)],
            **{b: {**_pick(base[b][h]), "auc_ci": ci(preds.baselines[b], j)} for b in BASELINES},
            "prior": {"rate": float(base["prior"][h]["pred_mean"]), "auc": 0.5, "brier": base["prior"][h]["brier"],
                      "log_loss": base["prior"][h]["log_loss"], "test_rate": base["prior"][h]["base_rate"]},
        }
    # The overall verdict is the worst over seeds: collapsed > inputs_out_of_range > healthy.
    rank = {"collapsed": 2, "inputs_out_of_range": 1, "healthy": 0}
    worst: CollapseVerdict = max((r["verdict"] for r in runs), key=lambda v: rank[v.verdict])
    return {
        "horizons": horizons,
        "comparisons": paired_comparisons(preds, boot),
        "bootstrap": boot.to_dict(),
        "audit": {"verdict": worst.verdict, "cause": worst.cause, "causes": worst.causes,
                  "findings": worst.findings, "evidence": worst.to_dict()["evidence"],
                  "verdict_by_seed": [r["verdict"].verdict for r in runs]},
        # the training half, seed by seed, beside the inference verdict above
        "training_audit": _training_audit(runs),
        "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
        "train_seconds_by_seed": [r["train_seconds"] for r in runs],
        "epochs_by_seed": [r["epochs"] for r in runs],
        "peak_rss_mb": peak_rss_mb(),
        "total_seconds": seconds,
        "device": runs[0]["device"],
        "n_params": runs[0]["n_params"],
        "features": config.features,
        "vol_features": list(VOL_FEATURES),
        "periods": periods.to_dict(),
        "samples": {"fit": n_fit, "val": n_val, "test": len(y)},
        "model": model_cfg.to_dict(),
        "train": config.train.to_dict(),
    }


def _pick(m: dict) -> dict:
    return {k: m[k] for k in ("auc", "pr_auc", "brier", "ece", "log_loss", "pred_mean", "pred_std")}


# ----------------------------------------------------------------------------- the printed report


def format_report(report: dict) -> str:
    pct = round(100 * report["bootstrap"]["level"])
    lines = [f"{'horizon':<8}{'model':<16}{'AUC':>6}  {f'{pct}% CI':<15}{'Brier':>8}{'ECE':>7}{'log loss':>9}"
             f"{'pred_std':>10}"]
    for h, row in report["horizons"].items():
        p = row["patchtst"]
        lines.append(_model_line(h, f"patchtst x{p['n_members']}", p) + ("  COLLAPSED" if p["collapsed"] else ""))
        a = p["auc_by_seed"]
        lines.append(f"{'':<8}{'  members':<16}AUC {min(a):.3f}..{max(a):.3f}, mean {p['auc_member_mean']:.3f}, "
                     f"seed std {p['auc_seed_std']:.3f}")
        lines.extend(_model_line("", b, row[b]) for b in BASELINES)
        pr = row["prior"]
        lines.append(f"{'':<8}{'prior':<16}{0.5:>6.3f}  {'(constant)':<15}{pr['brier']:>8.4f}{'':>7}"
                     f"{pr['log_loss']:>9.4f}{0.0:>10.4f}  rate {pr['rate']:.3f}")
    lines += ["", *_comparison_lines(report, pct)]
    a = report["audit"]
    lines.append("")
    lines.append(f"audit: {a['verdict']}" + (f" (cause: {a['cause']})" if a["cause"] else ""))
    lines.extend(f"  - {f}" for f in a["findings"])
    t = report.get("training_audit")
    if t:
        lines.append(f"training audit: {t['verdict']} (by seed: {', '.join(t['verdict_by_seed'])})")
        lines.extend(f"  - {f}" for f in t["findings"])
        lines.extend(f"  . {r}" for r in t["readings"])
    lines.append(f"train {report['train_seconds']:.1f}s/seed on {report['device']}, peak RSS {report['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def _training_audit(runs: list[dict]) -> dict | None:
    sections = [r["training"] for r in runs]
    if any(t is None for t in sections):
        return None
    unhealthy = [t for t in sections if t["verdict"] != "healthy"]
    return {"verdict": unhealthy[0]["verdict"] if unhealthy else "healthy",
            "verdict_by_seed": [t["verdict"] for t in sections],
            "findings": [finding_line(f, f"seed {r['seed']}") for r, t in zip(runs, sections) for f in t["findings"]],
            "readings": [line for r, t in zip(runs, sections)
                         for line in member_lines(Training.model_validate(t), [f"seed {r['seed']}"])],
            "thresholds": sections[0]["thresholds"], "by_seed": sections}


def _model_line(h: str, name: str, m: dict) -> str:
    ci = f"[{m['auc_ci'][0]:.3f}, {m['auc_ci'][1]:.3f}]" if m["auc_ci"] else "n/a"
    return (f"{h:<8}{name:<16}{m['auc']:>6.3f}  {ci:<15}{m['brier']:>8.4f}{m['ece']:>7.3f}{m['log_loss']:>9.4f}"
            f"{m['pred_std']:>10.4f}")


def _comparison_lines(report: dict, pct: int) -> list[str]:
    boot, comps = report["bootstrap"], report["comparisons"]
    first = comps["random_forest"]["mean_auc"]
    lines = [f"Paired differences on the same {first['n_sessions']} test sessions {first['span'][0]}.."
             f"{first['span'][1]}, PatchTST ensemble - baseline (positive = PatchTST better);",
             f"{pct}% CI from a circular block bootstrap ({boot['n_boot']} resamples, blocks of {boot['block']} "
             f"sessions), P(better) = the share of resamples in which PatchTST is better.",
             "AUC:"]
    for b in BASELINES:
        for h, c in comps[b]["auc_by_horizon"].items():
            lines.append(_difference_line(f"PatchTST - {LABELS[b]}", h, c, pct))
        lines.append(_difference_line(f"PatchTST - {LABELS[b]}", "mean", comps[b]["mean_auc"], pct))
    lines.append("Log loss (RF - PatchTST, lower loss is better):")
    lines.append(_difference_line("RF - PatchTST", "mean", comps["random_forest"]["log_loss"], pct))
    verdict = comparison_verdict(first["ci_low"], first["ci_high"])
    sentence = {"better": "better than the RF", "worse": "worse than the RF",
                "not distinguishable": "not distinguishable from the RF (the interval straddles 0)"}[verdict]
    lines.append(f"On mean AUC over the horizons, at the {pct}% level, the PatchTST ensemble is {sentence}.")
    return lines


def _difference_line(what: str, h: str, c: dict | None, pct: int) -> str:
    label = f"  {what} {h}:"
    if c is None:
        return f"{label:<32}n/a (one class only in the test period)"
    verdict = comparison_verdict(c["ci_low"], c["ci_high"])
    if verdict == "not distinguishable":
        verdict += " (the interval straddles 0)"
    return (f"{label:<32}{c['estimate']:+.3f} [{pct}% CI {c['ci_low']:+.3f}, {c['ci_high']:+.3f}], "
            f"P(better) {c['p_a_better']:.2f}: {verdict}")
