"""How a night fails: one table, ``FAILURES``, says what each failure does (its status, whether
tonight's predictions go out anyway, what it means); every failure also ends the run failed (exit
1, the flow run Failed) and emits its alerts. Without published predictions the last good ones
are marked stale in latest.json (reason, since when), and the failure audit goes beside a
published session's outputs (``attempts/<run>/``) or, for a session never published, becomes its
folder."""

from __future__ import annotations

from dataclasses import dataclass

from spywatch.audit_schema import Failure, FailureKind, RunStatus
from spywatch.night.config import REASON_LIMIT
from spywatch.text import cut


@dataclass(frozen=True)
class FailureRule:
    status: RunStatus
    publish_predictions: bool  # tonight's predictions go out anyway (with the champion that passed tonight)
    meaning: str


FAILURES: dict[FailureKind, FailureRule] = {
    FailureKind.RAW_BARS_INVALID: FailureRule(RunStatus.VALIDATION_FAILED, False,
                                              "the bars failed the raw-bars suite; the store is untouched"),
    FailureKind.FEATURES_INVALID: FailureRule(RunStatus.VALIDATION_FAILED, False,
                                              "tonight's features failed the champion's features suite"),
    FailureKind.CHAMPION_REFUSED: FailureRule(RunStatus.FAILED, False,
                                              "the champion failed its checksums; the alias is left for a human"),
    FailureKind.FETCH_FAILED: FailureRule(RunStatus.FAILED, False,
                                          "the provider kept failing (after the fetch's retries)"),
    FailureKind.NO_CHAMPION: FailureRule(RunStatus.FAILED, False, "no champion to predict with"),
    FailureKind.RETRAIN_FAILED: FailureRule(RunStatus.PUBLISHED, True,
                                            "the retrain failed; tonight is published with the champion"),
    FailureKind.STAGE_ERROR: FailureRule(RunStatus.FAILED, False, "a stage raised (a bug or the machine)"),
}


class StageFailed(Exception):
    """A stage ended the night in a way ``FAILURES`` names (raised inside ``run_night``)."""

    def __init__(self, kind: FailureKind, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.stage, self.reason = kind, stage, reason


def failure(kind: FailureKind, stage: str, reason: str) -> Failure:
    """The audit's ``failure`` section for ``kind``."""
    rule = FAILURES[kind]
    return Failure(kind=kind, stage=stage, reason=cut(reason, REASON_LIMIT), meaning=rule.meaning,
                   predictions_published=rule.publish_predictions)


def exc_text(exc: BaseException, named: bool = True) -> str:
    """An exception as the audit, the log and the alerts quote it: bounded (``spywatch.text``)."""
    return cut(f"{type(exc).__name__}: {exc}" if named else str(exc), REASON_LIMIT)
