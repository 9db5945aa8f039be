"""The schema of ``audit.json``: typed, versioned, checked where it is written and where it is read.

Version 2 (this one) adds ``schema_version``, ``policy``, ``failure`` (which ``pipeline.FAILURES``
entry ended the night, in which stage, why) and the stale record's ``stale_since``/``stale_at``.
Version 1 audits (no ``schema_version``; published before) are read as version 2 with no failure.
The sections the stages write (validation, drift, collapse, performance, decision, retrain) stay
mappings here: their producers' ``to_dict`` methods are their schema. The top level, the status,
the failure, the stale record and tonight's predictions are typed: a misspelt key, a status
outside ``RunStatus`` or a failure kind outside ``FailureKind`` is refused, naming the field.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

SCHEMA_VERSION = 2


class RunStatus(str, Enum):
    """How a night ended (``audit.json`` ``status``)."""

    RUNNING = "running"
    PUBLISHED = "published"  # tonight's predictions are out
    VALIDATION_FAILED = "validation_failed"  # bad data: nothing published but the failure audit
    FAILED = "failed"  # anything else that stopped the predictions
    ALREADY_PUBLISHED = "already_published"  # nothing redone (a result, never written in an audit)


class FailureKind(str, Enum):
    RAW_BARS_INVALID = "raw_bars_invalid"
    FEATURES_INVALID = "features_invalid"
    CHAMPION_REFUSED = "champion_refused"
    FETCH_FAILED = "fetch_failed"
    NO_CHAMPION = "no_champion"
    RETRAIN_FAILED = "retrain_failed"
    STAGE_ERROR = "stage_error"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Failure(_Strict):
    kind: FailureKind
    stage: str
    reason: str
    meaning: str
    predictions_published: bool


class Stale(_Strict):
    stale: bool
    reason: str | None = None
    failed_session: str | None = None
    last_good_session: str | None = None
    stale_since: str | None = None
    stale_at: str | None = None
    failed_run: str | None = None
    note: str | None = None


class Predictions(_Strict):
    file: str
    rows: int
    latest: dict[str, Any]  # {"date": ..., "h1": p, ...}
    member_std: dict[str, float] = {}
    members: int = 1


class NightAudit(_Strict):
    schema_version: int = SCHEMA_VERSION
    session: str
    run_id: str
    status: RunStatus
    ticker: str = "SPY"  # audits written before the fleet do not say
    synthetic: bool = False
    source: str | None = None
    policy: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    failure: Failure | None = None
    model_version: str | None = None
    champion: dict | None = None
    champion_error: str | None = None
    data: dict | None = None
    validation: dict = {}
    drift: dict | None = None
    collapse: dict | None = None
    health: dict | None = None  # {"verdict": the collapse verdict, "vs_baseline": vs_baseline.BaselineVerdict}
    performance: dict | None = None
    decision: dict | None = None
    retrain: dict | None = None
    predictions: Predictions | None = None
    prediction_history: list[dict] = []
    stale: Stale | None = None
    alerts: list[dict] = []
    timings: dict[str, float] = {}


class AuditSchemaError(ValueError):
    """An audit that does not follow the schema (the message names the fields)."""


def check_audit(audit: dict) -> NightAudit:
    """Parse ``audit`` (a version 1 audit is upgraded); raise ``AuditSchemaError`` naming the fields."""
    data = dict(audit)
    version = data.setdefault("schema_version", 1)
    if version == 1:
        data["schema_version"] = SCHEMA_VERSION
        if isinstance(data.get("stale"), dict):
            data["stale"] = {"stale": True, **{k: v for k, v in data["stale"].items() if k != "since"},
                             **({"stale_since": data["stale"]["since"]} if "since" in data["stale"] else {})}
    elif version != SCHEMA_VERSION:
        raise AuditSchemaError(f"audit schema_version {version}; this spywatch reads 1 and {SCHEMA_VERSION}")
    try:
        return NightAudit.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        raise AuditSchemaError(f"audit of session {audit.get('session')!r} does not follow the schema: {where}") \
            from None


def audit_dict(audit: dict) -> dict:
    """``audit`` checked against the schema, as the plain JSON mapping the readers use."""
    return check_audit(audit).model_dump(mode="json")
