"""A trained model with everything needed to use it: weights, architecture, training statistics.

Saved as one artifact folder (``artifact.py``): ``config.json``, ``weights.pt`` (a state dict,
loaded with ``weights_only=True``), ``scaler.json`` (the training statistics: scaler, drift
reference, validation bounds), ``metrics.json``, plus the manifest with a SHA-256 per file.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from spywatch.artifact import ArtifactError, verify_artifact, write_artifact
from spywatch.text import cut
from spywatch.atomic import json_bytes
from spywatch.dataset import FeatureTable
from spywatch.features import FEATURES, SCALINGS, FeatureScaler
from spywatch.targets import TargetConfig

if TYPE_CHECKING:
    from spywatch.model import PatchTSTConfig
    from spywatch.train import Windows

FILES = ("config.json", "weights.pt", "scaler.json", "metrics.json", "features_suite.json")


@dataclass
class ModelBundle:
    model: object  # PatchTSTEnsemble (torch imported lazily)
    scaler: FeatureScaler
    targets: TargetConfig
    train_config: dict
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # provenance: source, synthetic, periods, data hash

    @property
    def lookback(self) -> int:
        return self.model.cfg.lookback

    @property
    def horizons(self) -> list[str]:
        return self.targets.names

    @property
    def prior(self) -> np.ndarray:
        """Training positive rate per horizon (what a collapsed model predicts)."""
        return np.array([self.metrics["train_prior"][h] for h in self.horizons])

    # ----------------------------------------------------------------- inference

    def inputs(self, table: FeatureTable) -> pd.DataFrame:
        return self.scaler.transform(table.features.loc[:, self.scaler.features])

    def windows(self, table: FeatureTable, start=None, end=None):
        from spywatch.train import make_windows

        return make_windows(self.inputs(table), table.targets, self.lookback, start, end)

    def predict(self, table: FeatureTable, start=None, end=None) -> pd.DataFrame:
        """Probabilities per session in [start, end] (the members' mean): columns = horizons, index = dates."""
        from spywatch.train import predict_proba

        w = self.windows(table, start, end)
        return pd.DataFrame(predict_proba(self.model, w.X), index=w.dates, columns=self.horizons)

    @property
    def periods(self) -> dict:
        """``fit``, ``val`` (None without early stopping) and ``holdout`` spans as [first, last] ISO dates."""
        return self.metrics["periods"]

    @property
    def data_end(self) -> pd.Timestamp:
        """The last session whose label the model or its selection has seen (fit, validation, holdout)."""
        spans = [self.periods.get(k) for k in ("fit", "val", "holdout")]
        return max(pd.Timestamp(s[1]) for s in spans if s)

    # ----------------------------------------------------------------- persistence

    def files(self) -> dict[str, bytes]:
        import torch

        buf = io.BytesIO()
        torch.save(self.model.state_dict(), buf)
        config = {"model": self.model.cfg.to_dict(), "ensemble": {"members": len(self.model)}, "targets": {"horizons": list(self.targets.horizons),
                  "threshold": self.targets.threshold}, "train": self.train_config, "features": self.scaler.features,
                  "data": self.data}
        from spywatch.validation import build_features_suite

        # The features suite is generated from these training statistics and stored with the model.
        return {"config.json": json_bytes(config), "weights.pt": buf.getvalue(),
                "scaler.json": json_bytes(self.scaler.to_dict()), "metrics.json": json_bytes(self.metrics),
                "features_suite.json": json_bytes(build_features_suite(self.scaler))}

    def write_into(self, folder: Path) -> None:
        """Populate an (empty, staged) artifact folder; the registry calls this."""
        for name, data in self.files().items():
            (folder / name).write_bytes(data)

    def save(self, dest: Path) -> Path:
        return write_artifact(dest, self.files(), meta={"kind": "patchtst", "horizons": self.horizons})

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Verify every checksum first, then load; a tampered or truncated file is refused."""
        import torch

        from spywatch.model import PatchTSTClassifier, PatchTSTConfig, PatchTSTEnsemble

        verify_artifact(folder, required=FILES)
        config = json.loads((folder / "config.json").read_text())
        cfg = PatchTSTConfig(**config["model"])
        try:
            state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an UnpicklingError, or a file torch cannot read: refused
            raise ArtifactError(f"{folder}: weights.pt refused by torch.load(weights_only=True): "
                                f"{type(exc).__name__}: {cut(str(exc))}") from exc
        if "ensemble" in config:
            model = PatchTSTEnsemble(cfg, int(config["ensemble"]["members"]))
        else:  # a single model saved before ensembles: an ensemble of one
            single = PatchTSTClassifier(cfg)
            single.load_state_dict(state)
            model, state = PatchTSTEnsemble.of([single]), None
        if state is not None:
            model.load_state_dict(state)
        model.eval()
        return cls(model=model, scaler=FeatureScaler.load(folder / "scaler.json"),
                   targets=TargetConfig(horizons=tuple(config["targets"]["horizons"]),
                                        threshold=config["targets"]["threshold"]),
                   train_config=config["train"], metrics=json.loads((folder / "metrics.json").read_text()),
                   data=config.get("data", {}))


# ----------------------------------------------------------------------------- training a bundle

RECIPES = ("full", "recent_val", "legacy")
# The "full" recipe's epoch count, chosen out of time on 2013, 2017 and 2021 (bench/results/fit_window.md).
FULL_EPOCHS = 8


@dataclass(frozen=True)
class FitSpec:
    """What a model learns from.

    ``train_end`` is the last session whose window and label may be fitted; the pipeline puts it
    an embargo (the longest horizon) before the holdout the challenger is judged on. Recipes:

    - ``full``: fit on every labelled session up to ``train_end`` for exactly ``epochs`` epochs
      (the cosine schedule ends there); no validation span, so the newest data is learned from.
    - ``recent_val``: early stopping on the last ``val_sessions`` sessions up to ``train_end``;
      the fit span ends an embargo before them.
    - ``legacy``: early stopping on the last 20% of the history (about six years): the recipe
      before Step 6, kept to replay the old policy.
    """

    train_end: str
    train_start: str | None = None
    recipe: str = "full"
    epochs: int = FULL_EPOCHS  # the "full" recipe's fixed epoch count
    val_sessions: int = 250
    members: int = 1
    lookback: int = 20
    holdout: tuple[str, str] | None = None  # scored after fitting; its predictions are the drift reference
    model: dict = field(default_factory=dict)  # PatchTSTConfig overrides
    scaling: str = "standard"  # features.SCALINGS: how the inputs are scaled (features.FeatureScaler)

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r}; expected one of {SCALINGS}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe={self.recipe!r}; expected one of {RECIPES}")
        if self.epochs < 1 or self.members < 1 or self.val_sessions < 20:
            raise ValueError(f"epochs={self.epochs}, members={self.members}, val_sessions={self.val_sessions}: "
                             f"need epochs >= 1, members >= 1, val_sessions >= 20")


@dataclass(frozen=True)
class FitPeriods:
    fit: tuple[pd.Timestamp, pd.Timestamp]
    val: tuple[pd.Timestamp, pd.Timestamp] | None
    holdout: tuple[pd.Timestamp, pd.Timestamp] | None
    embargo: int

    def to_dict(self) -> dict:
        d = lambda span: None if span is None else [span[0].date().isoformat(), span[1].date().isoformat()]  # noqa: E731
        return {"fit": d(self.fit), "val": d(self.val), "holdout": d(self.holdout), "embargo_sessions": self.embargo}


def fit_periods(index: pd.DatetimeIndex, first_valid: pd.Timestamp, spec: FitSpec, embargo: int) -> FitPeriods:
    """Session-exact spans for ``spec``; an embargo of ``embargo`` sessions separates fit from validation."""
    end = pd.Timestamp(spec.train_end)
    sessions = index[(index >= first_valid) & (index <= end)]
    if spec.train_start:
        sessions = sessions[sessions >= pd.Timestamp(spec.train_start)]
    if len(sessions) < 500:
        raise ValueError(f"only {len(sessions)} usable sessions up to train end {spec.train_end}; need 500")
    holdout = None
    if spec.holdout is not None:
        lo, hi = (pd.Timestamp(x) for x in spec.holdout)
        gap = int(index.searchsorted(lo)) - int(index.searchsorted(sessions[-1])) - 1
        if gap < embargo:
            raise ValueError(f"holdout {lo.date()}..{hi.date()} starts {gap} sessions after train end "
                             f"{sessions[-1].date()}; the embargo is {embargo}")
        holdout = (lo, hi)
    if spec.recipe == "full":
        return FitPeriods(fit=(sessions[0], sessions[-1]), val=None, holdout=holdout, embargo=embargo)
    n_val = spec.val_sessions if spec.recipe == "recent_val" else int(len(sessions) * 0.2)
    val_pos = len(sessions) - n_val
    if val_pos - embargo < 250:
        raise ValueError(f"{len(sessions)} sessions leave too little to fit before {n_val} validation sessions")
    return FitPeriods(fit=(sessions[0], sessions[val_pos - 1 - embargo]), val=(sessions[val_pos], sessions[-1]),
                      holdout=holdout, embargo=embargo)


@dataclass
class _FitJob:
    """What a fit trains on, before training: the fitted scaler, the windows of each span, the model config."""

    table: FeatureTable
    spec: FitSpec
    periods: FitPeriods
    scaler: FeatureScaler
    fit_w: Windows
    val_w: Windows | None
    hold_w: Windows | None
    cfg: PatchTSTConfig


def _fit_job(table: FeatureTable, spec: FitSpec) -> _FitJob:
    from spywatch.model import PatchTSTConfig
    from spywatch.train import make_windows

    first_valid = table.features.dropna().index[0]
    periods = fit_periods(table.index, first_valid, spec, table.targets_config.max_horizon)
    scaler = FeatureScaler.fit(table.features.loc[periods.fit[0]:periods.fit[1], list(FEATURES)], kind=spec.scaling)
    inputs = scaler.transform(table.features.loc[:, list(FEATURES)])
    win = lambda span: make_windows(inputs, table.targets, spec.lookback, *span).labelled()  # noqa: E731
    cfg = PatchTSTConfig(n_channels=len(FEATURES), n_outputs=len(table.targets_config.horizons),
                         lookback=spec.lookback, **spec.model)
    return _FitJob(table, spec, periods, scaler, win(periods.fit), win(periods.val) if periods.val is not None else None,
                   win(periods.holdout) if periods.holdout else None, cfg)


def _fit_config(spec: FitSpec, train_config):
    from spywatch.train import TrainConfig

    train_config = train_config or TrainConfig()
    return replace(train_config, max_epochs=spec.epochs) if spec.recipe == "full" else train_config


def fit_bundle(table: FeatureTable, spec: FitSpec, train_config=None, data: dict | None = None) -> ModelBundle:
    """Fit the scaler on the fit span, then ``spec.members`` PatchTST members; score the holdout if given."""
    from spywatch.train import train_ensemble

    train_config = _fit_config(spec, train_config)
    job = _fit_job(table, spec)
    # Without a validation slice the training audit follows the holdout's loss per epoch (it never
    # steers training: the epochs are fixed); the gate then scores the same holdout.
    result = train_ensemble(job.fit_w, job.val_w, job.cfg, train_config, spec.members, monitor=job.hold_w,
                            monitor_name="holdout")
    return _bundle(job, result, train_config, data)


def fit_bundles(tables: dict[str, FeatureTable], spec: FitSpec | dict[str, FitSpec], train_config=None,
                data: dict | None = None, data_by_ticker: dict[str, dict] | None = None) -> dict[str, ModelBundle]:
    """``fit_bundle`` for every ticker of a fleet in one pass (``train.train_fleet``: tickers x
    members on one stack's leading axis, one device): each ticker with its own scaler, spans,
    windows, prior and early stopping, as it would be fitted alone.

    ``spec``: one for all, or one per ticker (their spans may differ; the model, members, recipe
    and epochs must not: one stack trains them). ``data``: the provenance for all;
    ``data_by_ticker``: each ticker's own (added over it)."""
    from spywatch.model import PatchTSTEnsemble, stackable
    from spywatch.train import EnsembleResult, StackJob, train_fleet

    specs = spec if isinstance(spec, dict) else {t: spec for t in tables}
    shared = {json.dumps({**asdict(s), "train_end": None, "train_start": None, "holdout": None}, sort_keys=True)
              for s in specs.values()}
    if len(shared) != 1:
        raise ValueError(f"one pass trains one model shape, recipe and member count: the specs differ ({shared})")
    first_spec = next(iter(specs.values()))
    train_config = _fit_config(first_spec, train_config)
    jobs = {t: _fit_job(table, specs[t]) for t, table in tables.items()}
    first = next(iter(jobs.values()))
    if not (train_config.stacked and stackable(first.cfg)):
        raise ValueError("fit_bundles trains on the stacked path only (norm='layernorm', stacked=True)")
    trained = train_fleet([StackJob(j.fit_w, j.val_w, j.hold_w, "holdout") for j in jobs.values()], first.cfg,
                          train_config, first_spec.members)
    own = data_by_ticker or {}
    return {t: _bundle(j, EnsembleResult(model=PatchTSTEnsemble.of([r.model for r in rs]), members=rs),
                       train_config, {**(data or {}), **own.get(t, {})})
            for (t, j), rs in zip(jobs.items(), trained)}


def _bundle(job: _FitJob, result, train_config, data: dict | None) -> ModelBundle:
    """The bundle of a trained ensemble: its metrics, training record and reference predictions."""
    from spywatch.audit import metrics_by_horizon
    from spywatch.train import predict_members
    from spywatch.training_audit import training_section

    table, spec, periods, fit_w, val_w, hold_w = job.table, job.spec, job.periods, job.fit_w, job.val_w, job.hold_w
    scaler = job.scaler
    names = table.targets_config.names
    first = result.members[0]
    metrics: dict = {
        "training": training_section([m.evidence for m in result.members], names),
        "train_prior": {h: float(fit_w.y[:, j].mean()) for j, h in enumerate(names)},
        "periods": periods.to_dict(), "recipe": spec.recipe,
        "samples": {"fit": len(fit_w), "val": len(val_w) if val_w is not None else 0},
        "train_seconds": result.seconds, "device": first.device, "peak_rss_mb": max(m.peak_rss_mb for m in result.members),
        "peak_gpu_mb": first.peak_gpu_mb, "n_params": first.n_params * len(result.members),
        "members": [{"seed": train_config.seed + i, "best_epoch": m.best_epoch, "epochs": len(m.history),
                     "best_val_loss": m.best_val_loss, "train_seconds": m.seconds, "history": m.history}
                    for i, m in enumerate(result.members)],
        # the first member's curve, kept under the keys the report reads
        "best_epoch": first.best_epoch, "epochs": len(first.history), "history": first.history,
        "best_val_loss": first.best_val_loss,
    }
    # Reference predictions for the drift of the champion's outputs: out-of-sample ones (holdout,
    # else validation), never the fitted sessions, where a model is more confident than it will be.
    for key, span, w in (("validation", periods.val, val_w),
                         ("holdout", periods.holdout, hold_w)):
        if w is None or len(w) == 0:
            continue
        members = predict_members(result.model, w.X)  # (K, N, H)
        proba = members.mean(axis=0)
        metrics[key] = metrics_by_horizon(w.y, proba, names)
        metrics[f"{key}_member_auc"] = [{h: m["auc"] for h, m in metrics_by_horizon(w.y, p, names).items()}
                                        for p in members]
        metrics["validation_predictions"] = {h: [round(float(p), 5) for p in proba[:, j]] for j, h in enumerate(names)}
        metrics["reference_predictions"] = key
    return ModelBundle(model=result.model, scaler=scaler, targets=table.targets_config,
                       train_config=replace(train_config).to_dict(), metrics=metrics,
                       data={**dict(data or {}), "members": spec.members})
