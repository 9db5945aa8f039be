"""The retrain: train a challenger on every labelled session up to an embargo before a recent
holdout, score it and the champion on that same holdout, and promote only through the gate."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
import numpy as np
import pandas as pd

from spywatch.audit import check_collapse, metrics_by_horizon
from spywatch.audit_schema import Retrain, Training
from spywatch.dataset import FeatureTable
from spywatch.night.champion import load_champion
from spywatch.night.config import PipelineConfig
from spywatch.promotion import GateResult, ModelScore, training_gate
from spywatch.registry import ModelRegistry


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
    peak_gpu_mb: float | None = None  # the training's peak CUDA memory (None on the CPU)

    def to_dict(self) -> dict:
        """The JSON the ``retrain`` flow hands back to the night (``Retrain`` in the audit)."""
        return {"challenger": self.challenger, "promoted": self.promoted, "gate": self.gate.to_dict(),
                "window": self.window, "challenger_metrics": self.challenger_metrics,
                "train_seconds": self.train_seconds, "periods": self.periods, "members": self.members,
                "device": self.device, "training": self.training,
                "peak_gpu_mb": None if self.peak_gpu_mb is None else round(float(self.peak_gpu_mb), 1)}


    def section(self) -> Retrain:
        """The audit's ``retrain`` section."""
        return Retrain.model_validate(self.to_dict())


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


def train_challenger(cfg: PipelineConfig, session: pd.Timestamp | None = None, table: FeatureTable | None = None,
                     data_info: dict | None = None) -> RetrainOutcome:
    """Train a challenger on every labelled session up to an embargo before a recent holdout, score
    it and the champion on that same holdout, and promote only through the gate (a paired block
    bootstrap of the difference in mean AUC under the default policy).

    ``session``: the night's (default: ``cfg.session()``). ``table`` and ``data_info``: tonight's
    features and data identity when the night trains in its own process; without them (the ``retrain`` flow, on whichever worker runs it) they are read
    from the store, which the nightly run fetched and validated.
    """
    from spywatch.bundle import FitSpec, ModelBundle, fit_bundle
    from spywatch.comparison import compare
    from spywatch.night.monitor import data_hash, load_features
    from spywatch.sources import source_from_spec
    from spywatch.train import TrainConfig, inspect

    session = cfg.session() if session is None else session
    root = cfg.root
    if table is None:
        table = load_features(root, cfg.ticker, session)
        source = source_from_spec(cfg.source)
        data_info = {"source": source.name, "synthetic": source.synthetic, "data_hash": data_hash(table, session)}

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
    registry = ModelRegistry(cfg.layout.models)
    version = registry.register(bundle.write_into, meta={"kind": "patchtst", "session": str(session.date()),
                                                         "train_end": str(train_end.date()),
                                                         "members": cfg.fit.members, "periods": bundle.periods})
    window_name = f"{lo.date()}..{hi.date()}"
    context = {"session": str(session.date()), "holdout": [str(lo.date()), str(hi.date())], "policy": cfg.policy}
    outcome = partial(RetrainOutcome, challenger=version, window=[str(lo.date()), str(hi.date())],
                      train_seconds=bundle.metrics["train_seconds"], periods=bundle.periods, members=cfg.fit.members,
                      device=str(bundle.metrics.get("device")), training=bundle.metrics.get("training"),
                      peak_gpu_mb=bundle.metrics.get("peak_gpu_mb"))
    refused = training_gate(Training.of_metrics(bundle.metrics))
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
