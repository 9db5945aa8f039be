"""Named retrain policies: when to retrain, what a challenger learns from, when it is promoted.

A policy is the whole loop's behaviour in one value, so a backfill can replay each of them from
the same start and compare what they would have cost and earned (``bench/policy_comparison.py``):

- ``default``: retrain on collapse, persistent drift (with a cooldown), a sequential decay test
  against the Random Forest, a champion lagging the Random Forest (with a cooldown), or after a year; challengers fit on every labelled session up to the
  embargo before a 250-session holdout; promote on a paired block-bootstrap test.
- ``never``: train the first champion, then never retrain (what nothing watching looks like).
- ``calendar``: retrain every quarter and always promote (what a cron job does).
- ``strict``: the default with a better-only gate (no promotion on "not worse and fresher").
- ``legacy``: the rules before Step 6: early stopping on the last 20% of the history, one model,
  a 120-session holdout, promotion on +0.005 mean AUC, decay on any mean-AUC gap to the Random
  Forest, maximum age 90 days.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from spywatch.bundle import FULL_EPOCHS, RECIPES
from spywatch.decision import RetrainPolicy
from spywatch.promotion import PromotionPolicy


@dataclass(frozen=True)
class FitSettings:
    """How a challenger is trained (see ``bundle.FitSpec`` for the recipes)."""

    recipe: str = "full"
    epochs: int = FULL_EPOCHS
    # Seeds averaged. bench/results/fit_window.md: mean AUC 0.683 with one member, 0.687 with two, and
    # flat within 0.003 from two to five (Brier flat throughout) while the cost grows with k: two.
    members: int = 2
    # Matured sessions on which challenger and champion are compared: 250 (a year) gives the paired
    # difference in mean AUC a standard error of about 0.01 between similar models; fewer loses
    # the power to see a real 0.02 gain, more pushes the challenger's data a further year back.
    holdout: int = 250

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"fit recipe={self.recipe!r}; expected one of {RECIPES}")
        if not 1 <= self.epochs <= 200:
            raise ValueError(f"fit epochs={self.epochs}; expected 1..200")
        if not 1 <= self.members <= 16:
            raise ValueError(f"fit members={self.members}; expected 1..16")
        if not 60 <= self.holdout <= 1000:
            raise ValueError(f"holdout={self.holdout} sessions; expected 60..1000")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    promotion: PromotionPolicy = field(default_factory=PromotionPolicy)
    fit: FitSettings = field(default_factory=FitSettings)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "retrain": self.retrain.to_dict(),
                "promotion": self.promotion.to_dict(), "fit": self.fit.to_dict()}


POLICIES: dict[str, Policy] = {
    "default": Policy("default", "collapse, drift with cooldown, CUSUM decay vs the Random Forest, lagging the "
                      "Random Forest with cooldown, a year's age; "
                      "full-history fit, 2 members, paired gate on 250 sessions"),
    # The default with a better-only gate: a challenger is promoted only when the paired interval of
    # its mean AUC gain is above 0 (never on 'not worse and fresher'); replayed against the default
    # to price the non_inferior_fresher rule (bench/results/policy_comparison_2005_default.md; the
    # four product policies side by side: bench/results/policy_comparison_2005.md).
    "strict": Policy("strict", "the default policy with a better-only gate (no promotion on 'not worse and "
                     "fresher')", promotion=PromotionPolicy(non_inferiority_margin=0.0)),
    "never": Policy("never", "train the first champion, never retrain",
                    retrain=RetrainPolicy(triggers=())),
    "calendar": Policy("calendar", "retrain every quarter, always promote",
                       retrain=RetrainPolicy(triggers=("max_age",), max_age_days=91.0),
                       promotion=PromotionPolicy(rule="always")),
    "legacy": Policy("legacy", "the rules before Step 6",
                     retrain=RetrainPolicy(triggers=("collapse", "drift", "decay", "max_age"),
                                           decay_test="mean_auc", rf_margin=0.0, max_age_days=90.0,
                                           drift_cooldown_days=0.0, decay_cooldown_days=20.0),
                     promotion=PromotionPolicy(rule="margin", min_improvement=0.005),
                     fit=FitSettings(recipe="legacy", members=1, holdout=120)),
}


def policy_named(name: str) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"policy {name!r} unknown; expected one of {sorted(POLICIES)}")
    return POLICIES[name]
