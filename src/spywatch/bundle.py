"""A trained model with everything needed to use it: weights, architecture, training statistics.

Saved as one artifact folder (``artifact.py``): ``config.json``, ``weights.pt`` (a state dict,
loaded with ``weights_only=True``), ``scaler.json`` (the training statistics: scaler, drift
reference, validation bounds), ``metrics.json``, plus the manifest with a SHA-256 per file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch.artifact import verify_artifact, write_artifact
from spywatch.atomic import json_bytes
from spywatch.dataset import FeatureTable
from spywatch.features import FEATURES, FeatureScaler
from spywatch.targets import TargetConfig

FILES = ("config.json", "weights.pt", "scaler.json", "metrics.json", "features_suite.json")


@dataclass
class ModelBundle:
    model: object  # PatchTSTClassifier (torch imported lazily)
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
        """Probabilities per session in [start, end]: columns = horizons, index = session dates."""
        from spywatch.train import predict_proba

        w = self.windows(table, start, end)
        return pd.DataFrame(predict_proba(self.model, w.X), index=w.dates, columns=self.horizons)

    # ----------------------------------------------------------------- persistence

    def files(self) -> dict[str, bytes]:
        import torch

        buf = io.BytesIO()
        torch.save(self.model.state_dict(), buf)
        config = {"model": self.model.cfg.to_dict(), "targets": {"horizons": list(self.targets.horizons),
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
            (Path(folder) / name).write_bytes(data)

    def save(self, dest: Path) -> Path:
        return write_artifact(Path(dest), self.files(), meta={"kind": "patchtst", "horizons": self.horizons})

    @classmethod
    def load(cls, folder: Path) -> ModelBundle:
        """Verify every checksum first, then load; a tampered or truncated file is refused."""
        import torch

        from spywatch.model import PatchTSTClassifier, PatchTSTConfig

        folder = Path(folder)
        verify_artifact(folder, required=FILES)
        config = json.loads((folder / "config.json").read_text())
        model = PatchTSTClassifier(PatchTSTConfig(**config["model"]))
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        return cls(model=model, scaler=FeatureScaler.load(folder / "scaler.json"),
                   targets=TargetConfig(horizons=tuple(config["targets"]["horizons"]),
                                        threshold=config["targets"]["threshold"]),
                   train_config=config["train"], metrics=json.loads((folder / "metrics.json").read_text()),
                   data=config.get("data", {}))


# ----------------------------------------------------------------------------- training a bundle


@dataclass(frozen=True)
class FitSpec:
    """What to train on: sessions up to ``train_end``; validation is the last ``val_fraction``."""

    train_end: str
    train_start: str | None = None
    val_fraction: float = 0.2
    lookback: int = 20
    model: dict = field(default_factory=dict)  # PatchTSTConfig overrides


def fit_bundle(table: FeatureTable, spec: FitSpec, train_config=None, data: dict | None = None) -> ModelBundle:
    """Fit scaler + PatchTST on the training span with an embargo before validation."""
    from spywatch.evaluate import Split, resolve_periods
    from spywatch.model import PatchTSTConfig
    from spywatch.train import TrainConfig, make_windows, train_model

    train_config = train_config or TrainConfig()
    first_valid = table.features.dropna().index[0]
    idx = table.index
    # A dummy test start one session after train end lets resolve_periods place the embargoes.
    after = idx[idx > pd.Timestamp(spec.train_end)]
    test_start = after[0] if len(after) else pd.Timestamp(spec.train_end) + pd.Timedelta(days=1)
    padded = idx.append(pd.DatetimeIndex([test_start])) if not len(after) else idx
    train_sessions = idx[(idx >= first_valid) & (idx <= pd.Timestamp(spec.train_end))]
    val_start = train_sessions[int(len(train_sessions) * (1 - spec.val_fraction))]
    periods = resolve_periods(padded, Split(train_end=spec.train_end, test_start=str(test_start.date()),
                                            val_start=str(val_start.date()), train_start=spec.train_start),
                              table.targets_config.max_horizon, first_valid)
    scaler = FeatureScaler.fit(table.features.loc[first_valid:periods.fit[1], list(FEATURES)])
    inputs = scaler.transform(table.features.loc[:, list(FEATURES)])
    fit_w = make_windows(inputs, table.targets, spec.lookback, *periods.fit).labelled()
    val_w = make_windows(inputs, table.targets, spec.lookback, *periods.val).labelled()
    cfg = PatchTSTConfig(n_channels=len(FEATURES), n_outputs=len(table.targets_config.horizons),
                         lookback=spec.lookback, **spec.model)
    result = train_model(fit_w, val_w, cfg, train_config)
    from spywatch.train import predict_proba

    val_proba = predict_proba(result.model, val_w.X)
    from spywatch.audit import metrics_by_horizon

    names = table.targets_config.names
    metrics = {
        "train_prior": {h: float(fit_w.y[:, j].mean()) for j, h in enumerate(names)},
        "validation": metrics_by_horizon(val_w.y, val_proba, names),
        # kept so that drift of the champion's predictions can be measured against them
        "validation_predictions": {h: [round(float(p), 5) for p in val_proba[:, j]] for j, h in enumerate(names)},
        "periods": periods.to_dict(), "samples": {"fit": len(fit_w), "val": len(val_w)},
        "train_seconds": result.seconds, "best_epoch": result.best_epoch, "epochs": len(result.history),
        "best_val_loss": result.best_val_loss, "device": result.device, "peak_rss_mb": result.peak_rss_mb,
        "peak_gpu_mb": result.peak_gpu_mb, "n_params": result.n_params, "history": result.history,
    }
    return ModelBundle(model=result.model, scaler=scaler, targets=table.targets_config,
                       train_config=replace(train_config).to_dict(), metrics=metrics, data=dict(data or {}))
