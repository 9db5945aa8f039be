"""The baseline verdict: is the champion as good as a plain Random Forest on the same sessions?

A champion can be healthy (no collapse, no drift, no decay against its own past) and still rank
worse than a Random Forest fitted on the same labels. Every night the champion is compared with
the nightly baselines (fitted on the champion's own fit span, ``baselines``) on the trailing
matured sessions after that fit span and an embargo, paired on the same sessions
(``comparison.compare``, block bootstrap over sessions): the mean AUC difference with its
interval, the log-loss difference beside it, and the volatility-only logistic as a second
reference (the bar a model must clear to show that it reads more than the volatility regime).

Verdicts (on mean AUC, champion minus the Random Forest): ``ahead`` (the interval's lower bound
above 0), ``lagging`` (its upper bound below 0), ``on_par`` (the interval holds 0), and
``not_enough_data`` (fewer matured sessions than ``min_sessions``). A difference inside its noise
is not a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from spywatch.comparison import BootstrapConfig, compare, side_of_zero

if TYPE_CHECKING:  # pydantic is loaded by judge(): `spywatch --help` reads VERDICTS (via policy) without it
    from spywatch.audit_schema import BaselineVerdict, Versus

VERDICTS = ("ahead", "on_par", "lagging", "not_enough_data")
LABELS = {"random_forest": "the RF", "vol_logistic": "the volatility logistic", "logistic": "the logistic"}
# Fewer matured sessions than this give the paired interval no power (its half-width is ~0.04 at 60).
MIN_SESSIONS = 60


def verdict_of(ci_low: float, ci_high: float) -> str:
    return {"above": "ahead", "below": "lagging", "holds": "on_par"}[side_of_zero(ci_low, ci_high)]


def phrase(vs: BaselineVerdict | None) -> str:
    """"lagging the RF by 0.031 [0.012, 0.056] mean AUC on 250 sessions" and the like, for cards,
    the run log and the alert (from the audit's ``health.vs_baseline``)."""
    if vs is None:
        return "not compared with a baseline"
    who = LABELS.get(vs.baseline, vs.baseline)
    n = vs.sessions
    if vs.verdict == "not_enough_data":
        return f"not yet compared with {who} ({n} matured session(s) < {vs.min_sessions})"
    d, (lo, hi) = vs.difference, vs.ci
    pct = round(100 * vs.level)
    if vs.verdict == "lagging":
        return f"lagging {who} by {-d:.3f} [{-hi:.3f}, {-lo:.3f}] mean AUC on {n} sessions ({pct}% CI)"
    if vs.verdict == "ahead":
        return f"ahead of {who} by {d:.3f} [{lo:.3f}, {hi:.3f}] mean AUC on {n} sessions ({pct}% CI)"
    return f"on par with {who}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}] mean AUC on {n} sessions ({pct}% CI)"


def judge(y: np.ndarray, champion: np.ndarray, baselines: dict[str, np.ndarray], horizons: Sequence[str],
          dates: Sequence | None = None, baseline: str = "random_forest", block: int = 10,
          min_sessions: int = MIN_SESSIONS, n_boot: int = 2000, level: float = 0.90) -> BaselineVerdict:
    """The champion's probabilities against ``baselines[baseline]`` (and the others) on the same
    matured sessions; y, champion and each baseline are (N, H)."""
    from spywatch.audit_schema import BaselineVerdict, Versus, full

    y = np.asarray(y, dtype="float64")
    keep = ~np.isnan(y).any(axis=1) if y.size else np.zeros(0, dtype=bool)
    n = int(keep.sum())
    if n < max(min_sessions, 2 * block):
        return full(BaselineVerdict, baseline=baseline, metric="mean_auc", sessions=n, verdict="not_enough_data",
                    level=level, block=block, min_sessions=min_sessions)
    config = BootstrapConfig(n_boot=n_boot, block=block, level=level)
    names = list(horizons)

    def versus(name: str, metric: str) -> Versus | None:
        try:
            c = compare(y, champion, baselines[name], names, dates, metric, config, a="champion", b=name)
        except ValueError:  # one class only in every horizon: nothing to compare
            return None
        return Versus(baseline=name, metric=metric, difference=round(c.estimate, 5),
                      ci=[round(c.ci_low, 5), round(c.ci_high, 5)], p_better=round(c.p_a_better, 4),
                      champion=round(c.a_value, 5), other=round(c.b_value, 5), verdict=verdict_of(c.ci_low, c.ci_high))

    try:
        main = compare(y, champion, baselines[baseline], names, dates, "mean_auc", config, a="champion", b=baseline)
    except ValueError:
        return full(BaselineVerdict, baseline=baseline, metric="mean_auc", sessions=n, verdict="not_enough_data",
                    level=level, block=block, min_sessions=min_sessions)
    others = list(v for v in (versus(k, "mean_auc") for k in baselines if k not in (baseline, "prior"))
                   if v is not None)
    return full(
        BaselineVerdict, baseline=baseline, metric="mean_auc", difference=round(main.estimate, 5),
        ci=[round(main.ci_low, 5), round(main.ci_high, 5)], sessions=main.n_sessions,
        verdict=verdict_of(main.ci_low, main.ci_high), span=list(main.span) if main.span[0] else None, level=level,
        block=block, champion_auc=round(main.a_value, 5), baseline_auc=round(main.b_value, 5),
        by_horizon={h: {k: round(v, 5) for k, v in d.items()} for h, d in main.by_horizon.items()},
        log_loss=versus(baseline, "log_loss"), others=others, min_sessions=min_sessions)
