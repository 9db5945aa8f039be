"""What a replayed policy was worth: its predictions scored against the baselines, its promotions
reviewed afterwards, and the published outputs checked.

Predictions are scored two ways:

- *published*: the rows the replay steps actually published (one session per step);
- *walk-forward*: every session between two steps, predicted by the champion in force after the
  earlier step, which is what daily nightly runs under this policy would have published.

Labels come from bars the step did not see (they mature up to ``max_horizon`` sessions later);
sessions whose labels have not matured by the last bar are left out. Every walk-forward AUC and
Brier score carries a circular block-bootstrap interval (blocks at least the longest horizon:
labels overlap that long), the PatchTST - Random Forest difference is paired on the same
sessions, and each promotion is reviewed afterwards: the promoted model and the one it replaced
are scored on the next 250 sessions, and a promotion whose model scored worse counts as wrong.
The statistics themselves are ``spywatch.comparison``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch.backfill.step import StepRecord
from spywatch.comparison import (BootstrapConfig, auc_interval, brier_interval, labelled_auc, paired_auc,
                                 paired_brier)

REVIEW_SESSIONS = 250  # sessions after a promotion on which the promoted and the replaced model are compared


@dataclass(frozen=True)
class PromotionReview:
    """A promotion that replaced a champion, judged afterwards (``review_promotions``): the promoted
    (new) and the replaced (old) model's mean AUC over horizons on the sessions after it, paired.
    ``wrong``: the promoted model scored worse; None when too few sessions followed to say."""

    session: str
    new: str
    old: str
    rule: str | None  # the gate's rule that promoted
    reasons: list[str]  # why the step retrained
    new_mean_auc: float | None
    old_mean_auc: float | None
    difference: float | None  # new - old
    ci_low: float | None
    ci_high: float | None
    p_new_better: float | None
    n_sessions: int
    span: list[str]
    wrong: bool | None

    @classmethod
    def from_dict(cls, d: dict) -> PromotionReview:
        """A review as the record holds it (records written before the rule and reasons were kept have none)."""
        return cls(**{"rule": None, "reasons": [], **d})

    def as_difference(self) -> dict | None:
        """The difference as a paired-comparison record (``table.difference_cell``), None when not judged."""
        if self.difference is None:
            return None
        return {"estimate": self.difference, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_a_better": self.p_new_better}


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
    promotions: list[PromotionReview] = field(default_factory=list)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    rf_trees: int = 100

    @classmethod
    def from_dict(cls, d: dict) -> PolicyScores:
        """Read back what ``to_dict`` wrote."""
        return cls(**{**d, "promotions": [PromotionReview.from_dict(p) for p in d["promotions"]],
                      "bootstrap": BootstrapConfig(**d["bootstrap"])})

    def to_dict(self) -> dict:
        return asdict(self)


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


def auc_scores(walk: pd.DataFrame, names: list[str], config) -> dict:
    """Per horizon: the walk-forward AUC of PatchTST and of the Random Forest with their intervals,
    and PatchTST - Random Forest paired on the same sessions."""
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
                      sessions_after: int = REVIEW_SESSIONS) -> list[PromotionReview]:
    """Each promotion that replaced a champion, judged afterwards: the promoted and the replaced
    model scored on the ``sessions_after`` sessions after it whose labels matured by the last bar
    (mean AUC over horizons, paired)."""
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
        out.append(PromotionReview(session=r.session, new=r.champion_after, old=r.champion_before,
                                   rule=r.gate.rule if r.gate else None, reasons=list(r.reasons),
                                   new_mean_auc=c["a"], old_mean_auc=c["b"], difference=c["estimate"],
                                   ci_low=c["ci_low"], ci_high=c["ci_high"], p_new_better=c["p_a_better"],
                                   n_sessions=c["n"], span=c["span"],
                                   wrong=None if c["estimate"] is None else bool(c["estimate"] < 0)))
    return out


def score_policy(root: Path, ticker: str, records: list[StepRecord], rf_trees: int = 100,
                 frame_path: Path | None = None) -> PolicyScores:
    """Score the published and the walk-forward predictions against a Random Forest (and a logistic
    regression) refitted at every step on all labels matured by that step; review every promotion.

    ``frame_path``: also write the walk-forward frame (one row per session) there as parquet.
    """
    from spywatch.dataset import build_table
    from spywatch.layout import RootLayout
    from spywatch.publish import Publisher
    from spywatch.registry import ModelRegistry
    from spywatch.store import ParquetStore

    table = build_table(ParquetStore(root).read(ticker))
    names = table.targets_config.names
    registry = ModelRegistry(RootLayout(root).models)
    steps = [r for r in records if r.status != "error"]
    walk = walk_forward_frame(table, registry, steps, rf_trees)
    if frame_path is not None and len(walk):
        from spywatch.atomic import atomic_write

        atomic_write(frame_path, lambda tmp: walk.to_parquet(tmp))
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
                            **{m: labelled_auc(y, walk[f"{m}_{h}"].to_numpy())
                               for m in ("patchtst", "random_forest", "logistic")}}
        rows = published[published["horizon"] == h] if len(published) else published
        if len(rows):
            dates = pd.DatetimeIndex(pd.to_datetime(rows["session"]))
            y = table.targets.iloc[:, j].reindex(dates).to_numpy(dtype="float64")
            rf = walk[f"random_forest_{h}"].reindex(dates).to_numpy(dtype="float64") if len(walk) else np.full(len(y), np.nan)
            both = ~np.isnan(rf)
            pub_scores[h] = {"n": int((~np.isnan(y)).sum()),
                             "patchtst": labelled_auc(y, rows["probability"].to_numpy()),
                             "n_with_rf": int((both & ~np.isnan(y)).sum()),
                             "patchtst_same_sessions": labelled_auc(y[both], rows["probability"].to_numpy()[both]),
                             "random_forest": labelled_auc(y[both], rf[both])}
    window = [walk.index[0].date().isoformat(), walk.index[-1].date().isoformat()] if len(walk) else []
    mean = None
    if len(walk):
        columns = lambda model: walk[[f"{model}_{h}" for h in names]].to_numpy(dtype="float64")  # noqa: E731
        mean = paired_auc(columns("y"), columns("patchtst"), columns("random_forest"), names, walk.index, bootstrap)
    return PolicyScores(published=pub_scores, walk_forward=wf_scores, walk_forward_window=window,
                        auc=auc_scores(walk, names, bootstrap) if len(walk) else {},
                        brier=brier_scores(walk, names, bootstrap) if len(walk) else {}, mean_auc_difference=mean,
                        promotions=review_promotions(table, registry, steps, bootstrap),
                        bootstrap=bootstrap, rf_trees=rf_trees)


# ----------------------------------------------------------------------------- the outputs


def check_outputs(root: Path, records: list[StepRecord]) -> list[str]:
    """Problems with what the replayed nights left under ``root/published`` (empty: all good).

    Every published step has its session folder with an audit that parses and says so, a report,
    the Evidently reports, and exactly one prediction row per horizon, from the champion in force
    after that step, in the folder and in the cumulative table (no duplicates).
    """
    from spywatch.audit_schema import RunStatus
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
        if audit.status != RunStatus.PUBLISHED or audit.session != r.session:
            problems.append(f"{r.session}: audit says status {audit.status.value!r}, session {audit.session!r}")
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
