"""Backfill as a policy simulation: replay the nightly pipeline over past sessions, walk-forward,
and measure what the policy would have done and what it would have been worth.

Each replay step is ``pipeline.run_nightly`` for one past session (monthly by default), on its
own root, so the store, the registry and the drift history evolve exactly as they would have
night after night, with nothing from the future: a step sees only bars up to its session.

The policy table answers: how often would it have retrained, alarmed and promoted, and how good
were the predictions it published, against a Random Forest refitted at every step on the same
data. Predictions are scored two ways:

- *published*: the rows the replay steps actually published (one session per step);
- *walk-forward*: every session between two steps, predicted by the champion in force after the
  earlier step, which is what daily nightly runs under this policy would have published.

Labels come from bars the step did not see (they mature up to ``max_horizon`` sessions later);
sessions whose labels have not matured by the last bar are left out.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from spywatch import sessions

log = logging.getLogger(__name__)

FREQUENCIES = ("monthly", "weekly", "daily")


# ----------------------------------------------------------------------------- replay schedule


def replay_sessions(start: str, end: str, frequency: str = "monthly") -> list[pd.Timestamp]:
    """The NYSE sessions a backfill replays: the last session of each month (or week), or every one."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency={frequency!r}; expected one of {list(FREQUENCIES)}")
    days = sessions.nyse_sessions(start, end)
    if len(days) == 0:
        raise ValueError(f"no NYSE session in {start}..{end}")
    if frequency == "daily":
        return list(days)
    period = days.to_period("M" if frequency == "monthly" else "W")
    last = pd.Series(days, index=days).groupby(period).max()
    return [pd.Timestamp(d) for d in last.sort_values()]


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
    retrain: bool = False
    reasons: list[str] = field(default_factory=list)
    challenger: str | None = None
    promoted: bool = False
    alarms: list[str] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> StepRecord:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def row(self) -> dict:
        out = asdict(self)
        out["reasons"] = ";".join(self.reasons)
        out["alarms"] = ";".join(self.alarms)
        return out


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
    drift = a.get("drift") or {}
    decision = a.get("decision") or {}
    retrain = a.get("retrain") or {}
    return StepRecord(
        session=sid, status=result.status, champion_before=before, champion_after=champion_version(cfg.root),
        drift=drift.get("dataset_drift") if drift else None,
        drift_share=round(float(drift["share"]), 4) if drift.get("share") is not None else None,
        collapse=(a.get("collapse") or {}).get("verdict"), retrain=bool(decision.get("retrain")),
        reasons=[r["code"] for r in decision.get("reasons", [])], challenger=retrain.get("challenger"),
        promoted=bool(retrain.get("promoted")), alarms=[e["event"] for e in a.get("alerts", [])],
        seconds=round(time.perf_counter() - t0, 2),
        train_seconds=round(float(retrain["train_seconds"]), 2) if retrain.get("train_seconds") else None)


# ----------------------------------------------------------------------------- scoring


@dataclass
class PolicyScores:
    """AUC per horizon of the policy's predictions and of the baselines, on the same sessions."""

    published: dict  # horizon -> {"n", "patchtst", "random_forest", "logistic"}
    walk_forward: dict  # same, over every session between steps
    walk_forward_window: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from spywatch.audit import horizon_metrics

    ok = ~np.isnan(y)
    if ok.sum() < 10 or not 0 < y[ok].sum() < ok.sum():
        return None
    return round(horizon_metrics(y[ok], p[ok])["auc"], 4)


def score_policy(root: Path, ticker: str, records: list[StepRecord], rf_trees: int = 100) -> PolicyScores:
    """Score the published and the walk-forward predictions against a Random Forest (and a logistic
    regression) refitted at every step on all labels matured by that step."""
    from spywatch.baselines import BaselineConfig, fit_baselines
    from spywatch.bundle import ModelBundle
    from spywatch.dataset import build_table
    from spywatch.pipeline import models_root
    from spywatch.publish import Publisher
    from spywatch.registry import ModelRegistry
    from spywatch.store import ParquetStore

    table = build_table(ParquetStore(root).read(ticker))
    names = table.targets_config.names
    horizon = table.targets_config.max_horizon
    labels = table.targets.to_numpy(dtype="float64")
    registry = ModelRegistry(models_root(root))
    steps = [r for r in records if r.status != "error"]
    wf_rows: list[pd.DataFrame] = []
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
        wf_rows.append(frame)
    walk = pd.concat(wf_rows) if wf_rows else pd.DataFrame()

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
    return PolicyScores(published=pub_scores, walk_forward=wf_scores, walk_forward_window=window)


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
                "reasons": dict(Counter(c for r in self.steps for c in r.reasons)),
                "train_seconds": round(sum(r.train_seconds or 0 for r in self.steps), 1),
                "wall_seconds": round(sum(r.seconds for r in self.steps), 1)}

    def to_dict(self) -> dict:
        return {"config": self.config, "counts": self.counts,
                "scores": self.scores.to_dict() if self.scores else None,
                "steps": [asdict(r) for r in self.steps]}

    def markdown(self) -> str:
        c = self.counts
        cfg = self.config
        lines = [f"# Backfill policy simulation: {cfg.get('ticker')} {cfg.get('start')} .. {cfg.get('end')} "
                 f"({cfg.get('frequency')})", "",
                 f"source `{cfg.get('source')}`, model overrides `{cfg.get('model') or 'default'}`, "
                 f"max_epochs `{cfg.get('max_epochs') or 'default'}`", "",
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
            s = self.scores
            lines += ["## AUC of the predictions against the baselines", "",
                      "Walk-forward: every session between two steps, predicted by the champion in force "
                      f"after the earlier step ({' .. '.join(s.walk_forward_window) or 'none'}). Random Forest "
                      "and logistic regression refitted at every step on all labels matured by then.", "",
                      "| horizon | n | PatchTST (policy) | Random Forest | logistic |", "|---|---|---|---|---|"]
            lines += [f"| {h} | {v['n']} | {_f(v['patchtst'])} | {_f(v['random_forest'])} | {_f(v['logistic'])} |"
                      for h, v in s.walk_forward.items()]
            lines += ["", "Published rows only (one session per replay step; few rows, so noisy):", "",
                      "| horizon | n | PatchTST | n (with RF) | PatchTST, same sessions | Random Forest |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {h} | {v['n']} | {_f(v['patchtst'])} | {v['n_with_rf']} | "
                      f"{_f(v['patchtst_same_sessions'])} | {_f(v['random_forest'])} |"
                      for h, v in s.published.items()]
        lines += ["", "## Steps", "", "| session | status | drift | collapse | decision | promoted | champion after | s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in self.steps:
            decision = ("retrain: " + ", ".join(r.reasons)) if r.retrain else "keep"
            share = f" ({r.drift_share:.2f})" if r.drift_share is not None else ""
            drift = "—" if r.drift is None else ("DRIFT" if r.drift else "quiet") + share
            lines.append(f"| {r.session} | {r.status}{' ' + r.error if r.error else ''} | {drift} | "
                         f"{r.collapse or '—'} | {decision} | {'yes' if r.promoted else ''} | "
                         f"{r.champion_after or '—'} | {r.seconds:.0f} |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> dict[str, Path]:
        """``policy_steps.csv``, ``policy.json`` and ``policy.md`` under ``out_dir`` (each atomic)."""
        from spywatch.atomic import atomic_write, atomic_write_json, atomic_write_text

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame([r.row() for r in self.steps])
        paths = {"csv": out_dir / "policy_steps.csv", "json": out_dir / "policy.json", "markdown": out_dir / "policy.md"}
        atomic_write(paths["csv"], lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write_json(paths["json"], json.loads(json.dumps(self.to_dict(), default=str)))
        atomic_write_text(paths["markdown"], self.markdown())
        return paths


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def run_backfill(cfg, start: str, end: str, frequency: str = "monthly", out_dir: Path | None = None,
                 rf_trees: int = 100, resume: bool = False) -> PolicyTable:
    """Replay every step in order (plain Python; the ``backfill`` flow runs the same functions as tasks).

    ``resume``: keep the steps recorded in ``out_dir/policy.json`` by an interrupted run with the
    same settings on the same root, and go on from the next session. A step cut short is simply
    replayed: its fetch and publish are idempotent, and a challenger it may have registered
    without a verdict stays an unused version.
    """
    config = backfill_settings(cfg, start, end, frequency)
    steps = resumed_steps(out_dir, config) if resume and out_dir is not None else []
    done = {r.session for r in steps}
    for session in replay_sessions(start, end, frequency):
        if session.date().isoformat() in done:
            continue
        steps.append(replay_step(cfg, session))
        if out_dir is not None:  # progress on disk: a long backfill can be watched and its partial table read
            PolicyTable(steps, None, config).write(out_dir)
    table = PolicyTable(steps, score_policy(Path(cfg.root), cfg.ticker, steps, rf_trees), config)
    if out_dir is not None:
        table.write(out_dir)
    return table


def resumed_steps(out_dir: Path, config: dict) -> list[StepRecord]:
    """Steps of an interrupted run; refuses a record written with other settings."""
    path = Path(out_dir) / "policy.json"
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    if record.get("config") != json.loads(json.dumps(config, default=str)):
        raise ValueError(f"{path} was written with settings {record.get('config')}, not {config}: "
                         f"use a fresh root instead of resuming")
    return [StepRecord.from_dict(d) for d in record["steps"]]


def backfill_settings(cfg, start: str, end: str, frequency: str) -> dict:
    return {"ticker": cfg.ticker, "source": cfg.source, "root": str(cfg.root), "start": str(start), "end": str(end),
            "frequency": frequency, "model": dict(cfg.model), "max_epochs": cfg.max_epochs,
            "retrain": cfg.retrain}
