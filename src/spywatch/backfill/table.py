"""The policy table: what a replay did and what it was worth, counted, summarised for a
side-by-side comparison, and written as a CSV of steps, a JSON record and markdown."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from spywatch.backfill.schedule import BackfillSettings
from spywatch.backfill.scoring import REVIEW_SESSIONS, PolicyScores
from spywatch.backfill.step import GateSummary, StepRecord


@dataclass
class PolicyTable:
    """The replay's steps, their scores (None while the replay runs) and the settings it ran with."""

    steps: list[StepRecord]
    scores: PolicyScores | None
    config: BackfillSettings

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
                "vs_baseline": dict(Counter(r.vs_baseline.verdict if r.vs_baseline else "none" for r in self.steps)),
                "reasons": dict(Counter(c for r in self.steps for c in r.reasons)),
                "train_seconds": round(sum(r.train_seconds or 0 for r in self.steps), 1),
                "wall_seconds": round(sum(r.seconds for r in self.steps), 1)}

    @property
    def span(self) -> dict:
        """From the requested start to the last replayed session: what rates per year divide by."""
        start = self.config.start
        end = self.steps[-1].session if self.steps else None
        days = (pd.Timestamp(end) - pd.Timestamp(start)).days if end else 0
        return {"start": start, "end": end, "years": round(max(days, 0) / 365.25, 3)}

    @property
    def summary(self) -> dict:
        """The policy's numbers for a side-by-side comparison (``bench/policy_comparison.py``)."""
        c = self.counts
        years = self.span["years"]
        review = self.scores.promotions if self.scores else []
        judged = [p for p in review if p.wrong is not None]
        per_year = lambda n: round(n / years, 3) if years > 0 else None  # noqa: E731
        return {"policy": self.config.policy["name"], "span": self.span, "steps": c["runs"],
                "errors": c["errors"], "retrains": c["retrains"], "retrains_per_year": per_year(c["retrains"]),
                "promotions": c["promotions"], "promotions_reviewed": len(review), "promotions_judged": len(judged),
                "wrong_promotions": sum(p.wrong for p in judged),
                "wrong_beyond_interval": sum(p.ci_high < 0 for p in judged),
                # the gate's error rate by the rule that promoted: judged, worse, worse beyond the interval
                "wrong_by_rule": {rule: {"judged": len(ps), "wrong": sum(p.wrong for p in ps),
                                         "wrong_beyond_interval": sum(p.ci_high < 0 for p in ps)}
                                  for rule in sorted({str(p.rule) for p in judged})
                                  for ps in [[p for p in judged if str(p.rule) == rule]]},
                "events": c["alarms"], "events_per_year": per_year(c["alarms"]),
                "events_per_year_by_event": {k: per_year(v) for k, v in c["alarms_by_event"].items()},
                "train_seconds": c["train_seconds"], "wall_seconds": c["wall_seconds"]}

    def to_dict(self) -> dict:
        """The backfill record: ``spywatch backfill --out``, ``policy.json``, the policy comparison."""
        c, summary, s = self.counts, self.summary, self.scores
        lifted = ("auc", "brier", "mean_auc_difference", "promotions")  # top-level keys of the record
        return {"config": self.config.to_dict(), "summary": summary, "counts": c, "retrains": c["retrains"],
                "promotions": c["promotions"], "auc": s.auc if s else {}, "brier": s.brier if s else {},
                "mean_auc_difference": s.mean_auc_difference if s else None,
                "wrong_promotions": {"count": summary["wrong_promotions"], "judged": summary["promotions_judged"],
                                     "sessions_after": REVIEW_SESSIONS,
                                     "promotions": [asdict(p) for p in s.promotions] if s else []},
                "scores": {k: v for k, v in s.to_dict().items() if k not in lifted} if s else None,
                "steps": [asdict(r) for r in self.steps]}

    @classmethod
    def from_dict(cls, record: dict) -> PolicyTable:
        """Read back what ``to_dict`` wrote."""
        scores = None
        if record["scores"] is not None:  # the scores lifted to the top of the record, put back
            scores = PolicyScores.from_dict({**record["scores"], "auc": record["auc"], "brier": record["brier"],
                                             "mean_auc_difference": record["mean_auc_difference"],
                                             "promotions": record["wrong_promotions"]["promotions"]})
        return cls([StepRecord.from_dict(d) for d in record["steps"]], scores,
                   BackfillSettings.from_dict(record["config"]))

    def markdown(self) -> str:
        c = self.counts
        cfg = self.config
        lines = [f"# Backfill policy simulation: {cfg.ticker} {cfg.start} .. {cfg.end} "
                 f"({cfg.frequency}), policy `{cfg.policy['name']}`", "",
                 f"source `{cfg.source}`, model overrides `{cfg.model or 'default'}`, "
                 f"max_epochs `{cfg.max_epochs or 'default'}`; policy: {cfg.policy['description']}", "",
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
            lines += self._scores_markdown(self.scores)
        lines += ["", "## Steps", "", "| session | status | drift | collapse | decision | gate | promoted | "
                  "champion after | s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in self.steps:
            decision = ("retrain: " + ", ".join(r.reasons)) if r.retrain else "keep"
            share = f" ({r.drift_share:.2f})" if r.drift_share is not None else ""
            drift = "—" if r.drift is None else ("DRIFT" if r.drift else "quiet") + share
            lines.append(f"| {r.session} | {r.status}{' ' + r.error if r.error else ''} | {drift} | "
                         f"{r.collapse or '—'} | {decision} | {gate_cell(r.gate)} | {'yes' if r.promoted else ''} | "
                         f"{r.champion_after or '—'} | {r.seconds:.0f} |")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _scores_markdown(s: PolicyScores) -> list[str]:
        pct = round(100 * s.bootstrap.level)
        lines = ["## Walk-forward predictions against the baselines", "",
                 "Every session between two steps, predicted by the champion in force after the earlier step "
                 f"({' .. '.join(s.walk_forward_window) or 'none'}). Random Forest ({s.rf_trees} trees) and logistic "
                 f"regression refitted at every step on all labels matured by then. {pct}% intervals: circular block "
                 f"bootstrap, blocks of {s.bootstrap.block} sessions, paired for differences.", "",
                 "| horizon | n | PatchTST AUC | Random Forest AUC | PatchTST - RF AUC (P better) | PatchTST Brier "
                 "| Random Forest Brier | RF - PatchTST Brier (P better) | logistic AUC |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for h, v in s.auc.items():
            b = s.brier[h]  # the same horizons as the AUC, from the same walk-forward frame
            logistic = s.walk_forward[h]["logistic"]
            lines.append(f"| {h} | {v['patchtst']['n']} | {interval_cell(v['patchtst'], 'auc')} | "
                         f"{interval_cell(v['random_forest'], 'auc')} | {difference_cell(v['difference'])} | "
                         f"{interval_cell(b['patchtst'], 'brier')} | {interval_cell(b['random_forest'], 'brier')} | "
                         f"{difference_cell(b['difference'])} | {_f(logistic)} |")
        lines += ["", f"Mean AUC over horizons, PatchTST - RF: {difference_cell(s.mean_auc_difference)}", ""]
        if s.promotions:
            lines += [f"## Promotions reviewed on the next {REVIEW_SESSIONS} matured sessions", "",
                      "| session | promoted | replaced | n | promoted mean AUC | replaced mean AUC | difference "
                      "| wrong |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {p.session} | {p.new} | {p.old} | {p.n_sessions} | {_f(p.new_mean_auc)} | "
                      f"{_f(p.old_mean_auc)} | {difference_cell(p.as_difference())} | "
                      f"{'—' if p.wrong is None else ('**yes**' if p.wrong else 'no')} |" for p in s.promotions]
            lines.append("")
        lines += ["Published rows only (one session per replay step; few rows, so noisy):", "",
                  "| horizon | n | PatchTST | n (with RF) | PatchTST, same sessions | Random Forest |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {h} | {v['n']} | {_f(v['patchtst'])} | {v['n_with_rf']} | "
                  f"{_f(v['patchtst_same_sessions'])} | {_f(v['random_forest'])} |" for h, v in s.published.items()]
        return lines

    def write(self, out_dir: Path) -> dict[str, Path]:
        """``policy_steps.csv``, ``policy.json`` and ``policy.md`` under ``out_dir`` (each atomic)."""
        from spywatch.atomic import atomic_write, atomic_write_json, atomic_write_text, make_dirs

        paths = table_paths(out_dir)
        make_dirs(out_dir)
        frame = pd.DataFrame([r.row() for r in self.steps])
        atomic_write(paths["csv"], lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write_json(paths["json"], json.loads(json.dumps(self.to_dict(), default=str)))
        atomic_write_text(paths["markdown"], self.markdown())
        return paths


def table_paths(out_dir: Path) -> dict[str, Path]:
    """Where ``PolicyTable.write`` puts the steps (csv), the record (json) and the table (markdown)."""
    return {"csv": out_dir / "policy_steps.csv", "json": out_dir / "policy.json", "markdown": out_dir / "policy.md"}


# ----------------------------------------------------------------------------- markdown cells


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def interval_cell(v: dict | None, key: str) -> str:
    """``0.612 [0.581, 0.640]`` from an ``auc_interval`` / ``brier_interval`` record."""
    if v is None or v[key] is None:
        return "—"
    return f"{v[key]:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"


def difference_cell(d: dict | None) -> str:
    """``+0.012 [-0.004, +0.030] (0.87)`` from a paired difference: estimate, interval, P(a better)."""
    if not d:
        return "—"
    return f"{d['estimate']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] ({d['p_a_better']:.2f})"


def gate_cell(gate: GateSummary | None) -> str:
    """The gate's rule with its estimate (and interval, where the rule compared)."""
    if gate is None:
        return ""
    if gate.ci_low is None:
        return f"{gate.rule}" + (f" {gate.estimate:+.3f}" if gate.estimate is not None else "")
    return f"{gate.rule} {gate.estimate:+.3f} [{gate.ci_low:+.3f}, {gate.ci_high:+.3f}]"
