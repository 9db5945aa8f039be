"""The baseline verdict: a champion that lags the Random Forest is called lagging, one on par is not.

The champions here are made from a real Random Forest's out-of-time probabilities on real SPY
sessions (fitted on 2003-2013, scored on 2014-2015): the forest itself with a little jitter (on
par), the forest with most of its signal replaced by noise (lagging), and a forest fitted on more
trees and data judged against a weak forest (ahead).
"""

from __future__ import annotations

import numpy as np
import pytest

from spywatch.baselines import BaselineConfig, fit_baselines
from spywatch.dataset import build_table
from spywatch.decision import BaselineSignal, RetrainPolicy, ReasonCode, decide
from spywatch.market_data import read_bars_csv
from spywatch.audit_schema import Collapse, Health, NightAudit, RunStatus
from spywatch.night.alerts import LAGGING_EVENT, alerts_for
from spywatch.report.views import health_badge
from spywatch.vs_baseline import judge, phrase

NAMES = ["h1", "h3", "h5"]


@pytest.fixture(scope="module")
def scored(spy_csv):
    table = build_table(read_bars_csv(spy_csv))
    feats, y = table.features.dropna(), table.targets
    fit = feats.loc["2003-01-01":"2013-12-20"]
    test = feats.loc["2014-01-02":"2015-12-31"]
    test = test[y.loc[test.index].notna().all(axis=1)]
    base = fit_baselines(fit.to_numpy(), y.loc[fit.index].to_numpy(), BaselineConfig(rf_trees=100), seed=0,
                         vol_columns=(4, 5, 6))
    return y.loc[test.index].to_numpy(), base.predict(test.to_numpy()), test.index


def test_a_champion_that_ranks_like_the_forest_is_on_par(scored):
    y, base, dates = scored
    rng = np.random.default_rng(1)
    champion = np.clip(base["random_forest"] + rng.normal(0, 0.002, base["random_forest"].shape), 0, 1)
    v = judge(y, champion, base, NAMES, dates)
    assert v.verdict == "on_par" and v.ci[0] <= 0 <= v.ci[1] and abs(v.difference) < 0.01
    assert v.sessions == len(y) and v.span == [str(dates[0].date()), str(dates[-1].date())]
    assert {o.baseline for o in v.others} == {"logistic", "vol_logistic"} and v.log_loss.metric == "log_loss"
    assert not v.lagging and phrase(v).startswith("on par with the RF: ")


def test_a_champion_that_lost_its_ranking_is_lagging_with_its_interval(scored):
    y, base, dates = scored
    rng = np.random.default_rng(2)
    rf = base["random_forest"]
    champion = 0.3 * rf + 0.7 * rng.uniform(rf.min(), rf.max(), rf.shape)  # most of the signal is noise
    v = judge(y, champion, base, NAMES, dates)
    assert v.verdict == "lagging" and v.ci[1] < 0 and v.difference < -0.03
    assert v.champion_auc < v.baseline_auc
    text = phrase(v)
    assert text.startswith(f"lagging the RF by {-v.difference:.3f} [{-v.ci[1]:.3f}, {-v.ci[0]:.3f}] mean AUC on "
                           f"{len(y)} sessions")
    # where people look: the health card warns, the night emits the event with the numbers
    badge = health_badge(Collapse(verdict="healthy", collapsed=False, cause=None), v)
    assert badge.value == "healthy · lagging" and badge.tone == "warn" and badge.detail.startswith("lagging the RF by")
    audit = NightAudit(session="2015-12-31", run_id="r", status=RunStatus.PUBLISHED, model_version="v1",
                       health=Health(verdict="healthy", vs_baseline=v))
    [event] = [e for e in alerts_for(audit) if e.event == LAGGING_EVENT]
    assert event.payload["ci"] == list(v.ci) and event.payload["detail"] == text


def test_a_champion_better_than_the_baseline_is_ahead(scored):
    y, base, dates = scored
    weak = {**base, "random_forest": 0.5 * base["random_forest"] + 0.5 * np.random.default_rng(3).uniform(
        0, 1, base["random_forest"].shape)}
    v = judge(y, base["random_forest"], weak, NAMES, dates)
    assert v.verdict == "ahead" and v.ci[0] > 0
    assert health_badge(Collapse(verdict="healthy", collapsed=False), v).tone == "ok"


def test_too_few_matured_sessions_is_not_a_verdict(scored):
    y, base, dates = scored
    v = judge(y[:40], base["random_forest"][:40], {k: p[:40] for k, p in base.items()}, NAMES, dates[:40])
    assert v.verdict == "not_enough_data" and v.difference is None and v.sessions == 40
    assert "40 matured session(s) < 60" in phrase(v)


def test_lagging_retrains_after_its_cooldown_only():
    policy = RetrainPolicy()
    lag = BaselineSignal("lagging", -0.03, (-0.05, -0.01), 250, "lagging the RF by 0.030 [0.010, 0.050]")
    early = decide(None, None, None, policy.lagging_cooldown_days - 1, policy, lag)
    assert not early.retrain and any("lagging cooldown" in n.message for n in early.notes)
    late = decide(None, None, None, policy.lagging_cooldown_days + 1, policy, lag)
    assert late.retrain and late.codes == (ReasonCode.LAGGING,)
    assert late.reasons[0].values["ci"] == [-0.05, -0.01]
    on_par = decide(None, None, None, 200.0, policy, BaselineSignal("on_par", -0.01, (-0.03, 0.01), 250))
    assert not on_par.retrain
    # a policy without the trigger records it and keeps the champion
    quiet = decide(None, None, None, 200.0, RetrainPolicy(triggers=("collapse",)), lag)
    assert not quiet.retrain and any("does not retrain on lagging" in n.message for n in quiet.notes)
    with pytest.raises(ValueError, match="needs an interval below 0"):
        BaselineSignal("lagging", -0.01, (-0.03, 0.01), 250)
