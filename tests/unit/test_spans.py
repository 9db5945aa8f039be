"""For a given session, the exact spans a challenger learns from and is judged on, the embargoes,
and the window the decay test reads (real NYSE sessions from the real SPY file)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from spywatch.bundle import FitSpec, ModelBundle, fit_periods
from spywatch.night.champion import Champion
from spywatch.night.retrain import holdout_span
from spywatch.targets import TargetConfig

T = pd.Timestamp


@pytest.fixture(scope="module")
def table(spy_bars):
    from spywatch.dataset import build_table

    return build_table(spy_bars)


def test_a_retrain_on_2024_12_31_learns_up_to_an_embargo_before_a_250_session_holdout(table):
    train_end, lo, hi = holdout_span(table, T("2024-12-31"), 250)
    # labels of 2024-12-23 are the last to have matured (5 sessions: 24, 26, 27, 30, 31 December)
    assert hi == T("2024-12-23") and lo == T("2023-12-27")
    assert table.index.get_loc(hi) - table.index.get_loc(lo) + 1 == 250
    # embargo of 5 sessions (19, 20, 21, 22, 26 December 2023) between the fit span and the holdout
    assert train_end == T("2023-12-18")
    assert table.index.get_loc(lo) - table.index.get_loc(train_end) - 1 == 5
    first = table.features.dropna().index[0]
    spec = FitSpec(train_end="2023-12-18", holdout=("2023-12-27", "2024-12-23"))
    p = fit_periods(table.index, first, spec, 5)
    assert p.fit == (T("1994-01-26"), T("2023-12-18")) and p.val is None  # was 1994..2018-05-16
    assert p.to_dict() == {"fit": ["1994-01-26", "2023-12-18"], "val": None,
                           "holdout": ["2023-12-27", "2024-12-23"], "embargo_sessions": 5}
    legacy = fit_periods(table.index, first, FitSpec(train_end="2023-12-18", recipe="legacy"), 5)
    assert legacy.fit == (T("1994-01-26"), T("2017-12-15")) and legacy.val == (T("2017-12-26"), T("2023-12-18"))


def test_a_session_without_enough_history_for_the_holdout_is_refused(table):
    with pytest.raises(ValueError, match="cannot hold a 250-session holdout"):
        holdout_span(table, table.index[200], 250)
    first = table.features.dropna().index[0]
    with pytest.raises(ValueError, match="usable sessions up to train end 1995-06-30"):
        fit_periods(table.index, first, FitSpec(train_end="1995-06-30"), 5)


def _champion(trained: str, holdout: list[str], confirmations=()) -> Champion:
    bundle = ModelBundle(model=None, scaler=None, targets=TargetConfig(), train_config={},
                         metrics={"periods": {"fit": ["1994-01-26", "2022-06-14"], "val": None, "holdout": holdout}},
                         data={"trained_session": trained})
    return Champion(version="v1", path=Path("."), bundle=bundle, confirmations=tuple(T(c) for c in confirmations))


def test_the_decay_window_starts_after_the_holdout_the_champion_was_selected_on(table):
    # a champion trained on 2023-06-30 was selected on the holdout ending 2023-06-22
    champ = _champion("2023-06-30", ["2022-06-23", "2023-06-22"])
    start = champ.decay_window_start(table, T("2024-12-31"))
    # an embargo of 5 sessions after its holdout (23, 26, 27, 28, 29 June) and after its training night
    assert start == T("2023-07-03")
    assert start > T("2023-06-22")
    # it held against a challenger on 2024-03-28: the test restarts from the next session
    # (1 April: 29 March 2024 was Good Friday)
    confirmed = _champion("2023-06-30", ["2022-06-23", "2023-06-22"], confirmations=["2024-03-28"])
    assert confirmed.decay_window_start(table, T("2024-12-31")) == T("2024-04-01")
    # a confirmation after the session being run does not count (replaying an earlier night)
    assert confirmed.decay_window_start(table, T("2024-01-31")) == T("2023-07-03")


def test_the_drifted_night_count_restarts_at_a_promotion():
    from spywatch.night.decide import consecutive_drift

    history = [{"session": f"2024-03-{d:02d}", "dataset_drift": True} for d in range(4, 9)]
    assert consecutive_drift(history, "2024-03-11", True) == 6
    # a champion promoted on 2024-03-06 counts only the drifted nights after it, tonight included
    assert consecutive_drift(history, "2024-03-11", True, since="2024-03-06") == 3
    assert consecutive_drift(history, "2024-03-11", False, since="2024-03-06") == 0
