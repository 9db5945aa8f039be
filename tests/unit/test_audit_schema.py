"""``audit.json``'s schema: the version 1 example reads, a wrong field is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spywatch.audit_schema import SCHEMA_VERSION, AuditSchemaError, FailureKind, RunStatus, check_audit

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "audit_example.json"


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def test_a_version_1_audit_is_read_as_the_current_version():
    audit = check_audit(example())
    assert audit.schema_version == SCHEMA_VERSION and audit.status is RunStatus.PUBLISHED and audit.failure is None
    assert audit.predictions is not None and set(audit.predictions.latest) >= {"h1", "h3", "h5"}


def test_a_failure_is_typed():
    audit = {**example(), "schema_version": 2, "status": "failed", "predictions": None,
             "failure": {"kind": "fetch_failed", "stage": "fetch", "reason": "429", "meaning": "m",
                         "predictions_published": False},
             "stale": {"stale": True, "reason": "429", "stale_since": "2024-06-28", "last_good_session": "2024-06-27"}}
    parsed = check_audit(audit)
    assert parsed.failure.kind is FailureKind.FETCH_FAILED and parsed.stale.stale_since == "2024-06-28"


@pytest.mark.parametrize(("change", "named"), [
    ({"status": "exploded"}, "status"),
    ({"stauts": "published"}, "stauts"),
    ({"failure": {"kind": "meteor", "stage": "fetch", "reason": "r", "meaning": "m",
                  "predictions_published": False}}, "failure.kind"),
    ({"schema_version": 7}, "schema_version 7"),
])
def test_a_wrong_field_is_refused_naming_it(change, named):
    with pytest.raises(AuditSchemaError) as refused:
        check_audit({**example(), "schema_version": 2, **change})
    assert named in str(refused.value)


def test_a_retrains_peak_gpu_memory_reaches_the_audit():
    """The flow path carries the challenger's peak CUDA memory (the GPU run recorded null before)."""
    from spywatch.night.retrain import RetrainOutcome
    from spywatch.promotion import GateResult

    gate = GateResult(promote=False, reasons=["refused"], details={"rule": "refused"})
    outcome = RetrainOutcome(challenger="v1", gate=gate, promoted=False, window=["2024-01-02", "2024-12-20"],
                             challenger_metrics={}, train_seconds=4.7, device="cuda:0", peak_gpu_mb=856.61962890625)
    section = outcome.section()
    assert section.peak_gpu_mb == 856.6 and section.device == "cuda:0"
    assert RetrainOutcome(challenger="v2", gate=gate, promoted=False, window=[], challenger_metrics={},
                          train_seconds=14.0).section().peak_gpu_mb is None
