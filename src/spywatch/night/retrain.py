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


@dataclass(frozen=True)
class ChallengerPlan:
    """What a challenger for ``session`` is fitted on and judged on, before it is trained."""

    spec: object  # bundle.FitSpec
    train_config: object  # train.TrainConfig
    train_end: pd.Timestamp
    window: tuple[pd.Timestamp, pd.Timestamp]  # the holdout both models are scored on
    data: dict  # the bundle's provenance

    @property
    def window_name(self) -> str:
        return f"{self.window[0].date()}..{self.window[1].date()}"


def plan_challenger(cfg: PipelineConfig, session: pd.Timestamp, table: FeatureTable, data_info: dict) -> ChallengerPlan:
    """Every labelled session up to an embargo before a recent holdout, with the policy's recipe."""
    from spywatch.bundle import FitSpec
    from spywatch.train import TrainConfig

    train_end, lo, hi = holdout_span(table, session, cfg.fit.holdout)
    train_cfg = TrainConfig(device=cfg.device, threads=cfg.threads)
    epochs = cfg.fit.epochs
    if cfg.max_epochs:
        train_cfg = replace(train_cfg, max_epochs=cfg.max_epochs)
        epochs = cfg.max_epochs
    spec = FitSpec(train_end=str(train_end.date()), recipe=cfg.fit.recipe, epochs=epochs, members=cfg.fit.members,
                   holdout=(str(lo.date()), str(hi.date())), model=dict(cfg.model))
    return ChallengerPlan(spec, train_cfg, train_end, (lo, hi),
                          {**data_info, "trained_session": str(session.date()), "policy": cfg.policy})


def tonight_data(cfg: PipelineConfig, session: pd.Timestamp) -> tuple[FeatureTable, dict]:
    """Tonight's features and data identity from the store (which the night fetched and validated),
    for a retrain that runs apart from the night (the ``retrain`` flow, the fleet's one pass)."""
    from spywatch.night.monitor import data_hash, load_features
    from spywatch.sources import source_from_spec

    table = load_features(cfg.root, cfg.ticker, session)
    source = source_from_spec(cfg.source)
    return table, {"source": source.name, "synthetic": source.synthetic, "data_hash": data_hash(table, session)}


def register_challenger(cfg: PipelineConfig, session: pd.Timestamp, plan: ChallengerPlan, bundle) -> str:  # noqa: ANN001
    """The fitted challenger into the root's registry (not promoted); its version."""
    return ModelRegistry(cfg.layout.models).register(
        bundle.write_into, meta={"kind": "patchtst", "session": str(session.date()), "train_end": str(plan.train_end.date()),
                                 "members": plan.spec.members, "periods": bundle.periods})


def train_challenger(cfg: PipelineConfig, session: pd.Timestamp | None = None, table: FeatureTable | None = None,
                     data_info: dict | None = None) -> RetrainOutcome:
    """Train a challenger on every labelled session up to an embargo before a recent holdout, score
    it and the champion on that same holdout, and promote only through the gate (a paired block
    bootstrap of the difference in mean AUC under the default policy).

    ``session``: the night's (default: ``cfg.session()``). ``table`` and ``data_info``: tonight's
    features and data identity when the night trains in its own process; without them (the ``retrain`` flow, on whichever worker runs it) they are read
    from the store, which the nightly run fetched and validated.
    """
    from spywatch.bundle import fit_bundle

    session = cfg.session() if session is None else session
    if table is None:
        table, data_info = tonight_data(cfg, session)
    plan = plan_challenger(cfg, session, table, data_info)
    bundle = fit_bundle(table, plan.spec, plan.train_config, data=plan.data)
    version = register_challenger(cfg, session, plan, bundle)
    return gate_challenger(cfg, session, table, plan, version, bundle)


def gate_fitted(cfg: PipelineConfig, session: pd.Timestamp, table: FeatureTable, data_info: dict,
                version: str) -> RetrainOutcome:
    """The gate for a challenger fitted apart from the night (the fleet's one pass) and registered
    as ``version``: scored and promoted exactly as ``train_challenger`` does its own."""
    from spywatch.bundle import ModelBundle

    plan = plan_challenger(cfg, session, table, data_info)
    bundle = ModelBundle.load(ModelRegistry(cfg.layout.models).get(version).path)
    fitted_for = bundle.data.get("trained_session")
    if fitted_for != str(session.date()):
        raise ValueError(f"challenger {version} was fitted for session {fitted_for}, not {session.date()}")
    if bundle.periods.get("holdout") != [str(d.date()) for d in plan.window]:
        raise ValueError(f"challenger {version} was fitted for the holdout {bundle.periods.get('holdout')}, "
                         f"not tonight's {plan.window_name}")
    return gate_challenger(cfg, session, table, plan, version, bundle)


def gate_challenger(cfg: PipelineConfig, session: pd.Timestamp, table: FeatureTable, plan: ChallengerPlan,
                    version: str, bundle) -> RetrainOutcome:  # noqa: ANN001
    """Score the registered challenger and the champion on the plan's holdout and promote only
    through the gate."""
    from spywatch.bundle import ModelBundle
    from spywatch.comparison import compare
    from spywatch.train import inspect

    root = cfg.root
    registry = ModelRegistry(cfg.layout.models)
    lo, hi = plan.window
    window, window_name = plan.window, plan.window_name
    context = {"session": str(session.date()), "holdout": [str(lo.date()), str(hi.date())], "policy": cfg.policy}
    outcome = partial(RetrainOutcome, challenger=version, window=[str(lo.date()), str(hi.date())],
                      train_seconds=bundle.metrics["train_seconds"], periods=bundle.periods, members=plan.spec.members,
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


def fit_fleet_challengers(cfgs: dict[str, PipelineConfig],
                          sessions: dict[str, pd.Timestamp]) -> dict[str, str | Exception]:
    """The fleet's one pass: every ticker's challenger for its session fitted together
    (``bundle.fit_bundles``: tickers x members on one stack, one device), each planned as
    ``train_challenger`` plans its own (its spans, scaler and windows) and registered in its own
    root's registry, not promoted: its night gates it (``gate_fitted``). Tickers whose policies
    train another model shape or recipe go in a pass of their own.

    Returns ticker -> the registered version, or the exception that kept it from one (a ticker's
    failure is its own; a pass that fails is the failure of each ticker in it)."""
    import json as _json
    from dataclasses import asdict

    from spywatch.bundle import fit_bundles
    from spywatch.lock import root_lock

    out: dict[str, str | Exception] = {}
    plans, tables = {}, {}
    for t, cfg in cfgs.items():
        try:
            table, data_info = tonight_data(cfg, sessions[t])
            plans[t], tables[t] = plan_challenger(cfg, sessions[t], table, data_info), table
        except Exception as exc:  # noqa: BLE001 - this ticker's failure; the others train
            out[t] = exc
    passes: dict[str, list[str]] = {}
    for t, plan in plans.items():
        shape = {**asdict(plan.spec), "train_end": None, "train_start": None, "holdout": None,
                 "train_config": plan.train_config.to_dict()}
        passes.setdefault(_json.dumps(shape, sort_keys=True, default=str), []).append(t)
    for names in passes.values():
        try:
            bundles = fit_bundles({t: tables[t] for t in names}, {t: plans[t].spec for t in names},
                                  plans[names[0]].train_config, data_by_ticker={t: plans[t].data for t in names})
        except Exception as exc:  # noqa: BLE001 - the pass's tickers fail; another pass may still train
            out.update({t: exc for t in names})
            continue
        for t in names:
            try:
                with root_lock(cfgs[t].root, "fleet-retrain"):
                    out[t] = register_challenger(cfgs[t], sessions[t], plans[t], bundles[t])
            except Exception as exc:  # noqa: BLE001
                out[t] = exc
    return out
