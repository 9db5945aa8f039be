"""Named policies: each is a whole, valid setting of the loop; bad values are refused by name, before
anything is written."""

from __future__ import annotations

import pytest

from spywatch.night import PipelineConfig
from spywatch.policy import POLICIES, FitSettings, policy_named


def test_the_named_policies_differ_where_they_should():
    default, never, calendar, legacy = (POLICIES[n] for n in ("default", "never", "calendar", "legacy"))
    assert default.retrain.decay_test == "cusum" and default.promotion.rule == "paired"
    assert default.fit.recipe == "full" and default.fit.holdout >= 250 and default.fit.members >= 1
    assert never.retrain.triggers == ()
    assert calendar.retrain.triggers == ("max_age",) and calendar.promotion.rule == "always"
    assert calendar.retrain.max_age_days <= 92
    assert legacy.fit == FitSettings(recipe="legacy", members=1, holdout=120)
    assert legacy.promotion.rule == "margin" and legacy.retrain.decay_test == "mean_auc"
    for p in POLICIES.values():
        assert p.to_dict()["name"] == p.name


def test_a_config_takes_its_settings_from_the_policy():
    cfg = PipelineConfig.for_policy("legacy", root="r")
    assert cfg.policy == "legacy" and cfg.holdout == 120 and cfg.promotion.rule == "margin"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: policy_named("yolo"), "policy 'yolo' unknown"),
    (lambda: FitSettings(recipe="all"), "fit recipe='all'"),
    (lambda: FitSettings(epochs=0), "fit epochs=0"),
    (lambda: FitSettings(members=0), "fit members=0"),
    (lambda: FitSettings(holdout=30), "holdout=30 sessions"),
    (lambda: PipelineConfig(max_epochs=0), "max_epochs=0"),
])
def test_bad_values_name_themselves(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_run_with_an_unknown_policy_exits_2_and_writes_nothing(tmp_path, capsys):
    from spywatch.cli import main

    root = tmp_path / "root"
    with pytest.raises(SystemExit) as exc:
        main(["run", "--no-prefect", "--root", str(root), "--policy", "yolo"])
    assert exc.value.code == 2 and "invalid choice: 'yolo'" in capsys.readouterr().err
    assert not root.exists()
