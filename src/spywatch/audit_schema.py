"""The night's audit as a typed object: what every reader (the report, the run page, the fleet,
the backfill, the CLI, the alerts, the run log) takes, and what ``audit.json`` holds.

The night assembles a :class:`NightAudit` from its stages' results (``spywatch.night``); JSON
appears only where it is published (:meth:`NightAudit.to_json_dict`) and read back
(:func:`check_audit`). Every section is typed down to the fields a reader uses; free-form
evidence (a gate's details, a training audit's findings, a collapse's numbers) stays a mapping
typed by its producer.

Version 2 (this one) adds ``schema_version``, ``policy``, ``failure`` and the stale record's
``stale_since``/``stale_at``. Version 1 audits (no ``schema_version``) are read as version 2
with no failure. A misspelt key, a status outside ``RunStatus`` or a failure kind outside
``FailureKind`` is refused, naming the field. Sections are dumped with only the keys their
producer set, so the published JSON keeps its exact shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError

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


Blob = dict[str, Any]  # free-form evidence, typed by its producer
M = TypeVar("M", bound=BaseModel)


def full(cls: type[M], **values: Any) -> M:
    """``cls`` with every field set (the defaults too), so that its JSON always holds every key."""
    return cls(**{name: values[name] if name in values else f.get_default(call_default_factory=True)
                  for name, f in cls.model_fields.items()})


# ----------------------------------------------------------------------------- the stages' sections


class Data(_Strict):
    """The fetch: what the store holds after tonight's update (``store.UpdateResult``)."""

    source: str
    synthetic: bool = False
    first_session: str | None = None
    last_session: str | None = None
    new_sessions: int = 0
    revisions: int = 0
    path: str | None = None


class Suite(_Strict):
    """One Great Expectations suite's result (``validation.ValidationResult``)."""

    success: bool
    failures: list[str] = []
    n_checks: int | None = None
    seconds: float | None = None


class Validation(_Strict):
    raw_bars: Suite | None = None
    features: Suite | None = None

    def suites(self) -> list[tuple[str, Suite]]:
        """The suites that ran, in the night's order."""
        return [(name, s) for name, s in (("raw_bars", self.raw_bars), ("features", self.features)) if s is not None]

    def failures(self) -> list[str]:
        return [line for _, s in self.suites() if not s.success for line in s.failures]


class Window(_Strict):
    start: str
    end: str
    rows: int


class ColumnDrift(_Strict):
    method: str
    threshold: float
    score: float | None
    score_kind: str | None = None
    drifted: bool
    reference_mean: float | None = None
    current_mean: float | None = None
    reference_std: float | None = None
    current_std: float | None = None
    spread_ratio: float | None = None
    threshold_basis: str | None = None  # prediction columns: where tonight's threshold came from


class RegimeDrift(_Strict):
    dataset_drift: bool
    n_drifted: int
    n_features: int
    min_drifted_features: int
    drifted_features: list[str] = []
    per_feature: dict[str, ColumnDrift] = {}
    recent: Window


class Drift(_Strict):
    """Evidently's verdicts on tonight's window (``drift.DriftResult``)."""

    dataset_drift: bool
    share: float
    n_drifted: int
    n_features: int | None = None
    drift_share: float | None = None
    drifted_features: list[str] = []
    per_feature: dict[str, ColumnDrift] = {}
    prediction_drift: dict[str, ColumnDrift] | None = None
    predictions_drifted: bool = False
    reference: Window | None = None
    current: Window | None = None
    notes: list[str] = []
    training_drift: bool | None = None
    regime_drift: bool = False
    drift_reasons: list[str] = []
    regime: RegimeDrift | None = None


class CollapseEvidence(_Strict):
    pred_std: dict[str, float] = {}
    pred_mean: dict[str, float] = {}
    prior: dict[str, float] = {}
    auc: dict[str, float | None] = {}
    attention_entropy_ratio: float | None = None
    representation_std: float | None = None
    pos_to_content_ratio: float | None = None
    feature_shift_std: dict[str, float] = {}
    auc_sessions: dict[str, int] = {}  # the matured sessions of the window each ``auc`` is on


class MemberSpread(_Strict):
    member: int
    pred_std: dict[str, float]
    pred_mean: dict[str, float]


class Collapse(_Strict):
    """The champion's predictions checked for collapse (``audit.CollapseVerdict``) and each member's spread."""

    verdict: str
    collapsed: bool
    collapsed_horizons: list[str] = []
    cause: str | None = None
    causes: list[str] = []
    findings: list[str] = []
    evidence: CollapseEvidence = CollapseEvidence()
    members: list[MemberSpread] = []


class Versus(_Strict):
    """The champion minus one baseline on the same sessions (positive favours the champion)."""

    baseline: str
    metric: str
    difference: float
    ci: list[float]
    p_better: float
    champion: float
    other: float
    verdict: str


class BaselineVerdict(_Strict):
    """The champion against the Random Forest on the same matured sessions (``vs_baseline.judge``),
    with the log loss and the other baselines beside it."""

    baseline: str
    metric: str
    difference: float | None = None
    ci: list[float] | None = None
    sessions: int = 0
    verdict: Literal["ahead", "on_par", "lagging", "not_enough_data"]
    span: list[str] | None = None
    level: float = 0.90
    block: int = 10
    champion_auc: float | None = None
    baseline_auc: float | None = None
    by_horizon: dict[str, dict[str, float | None]] = {}
    log_loss: Versus | None = None
    others: list[Versus] = []
    min_sessions: int = 60

    @property
    def lagging(self) -> bool:
        return self.verdict == "lagging"


class Health(_Strict):
    verdict: str  # the collapse verdict
    vs_baseline: BaselineVerdict | None = None


class Decay(_Strict):
    """What the decay test reads: every matured session since the champion was selected or confirmed."""

    window: list[str]
    n: int
    auc_by_horizon: dict[str, float | None] = {}
    rf_auc_by_horizon: dict[str, float | None] = {}
    loss_diff: list[float] = []
    sessions: list[str] = []


class Performance(_Strict):
    """The champion against the baselines on matured labels (shown) and the decay window (deciding)."""

    window: list[str]
    n: int
    horizons: dict[str, dict[str, Blob]] | None = None  # horizon -> model -> metrics
    vs_baseline: BaselineVerdict | None = None
    decay: Decay | None = None
    roc: dict[str, Blob] | None = None
    calibration: dict[str, Blob] | None = None


class Reason(_Strict):
    code: str
    message: str
    values: Blob = {}


class Decision(_Strict):
    """The retrain decision (``decision.RetrainDecision``): what fired, what each trigger read."""

    retrain: bool
    reasons: list[Reason] = []
    notes: list[Reason] = []
    policy: Blob = {}

    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


class Gate(_Strict):
    """The promotion gate's verdict (``promotion.GateResult``): one reason line per check."""

    promote: bool
    rule: str = "refused"
    reasons: list[str] = []
    details: Blob = {}

    def comparison(self) -> Blob:
        """The paired challenger - champion comparison the gate read (empty when none)."""
        return self.details.get("comparison") or {}


def _reading_json(v: float | None) -> float | None:
    return v if v is None or math.isfinite(v) else None


# A training reading: NaN once a model diverged (metrics.json keeps it), null in audit.json
Reading = Annotated[float | None, PlainSerializer(_reading_json, when_used="json")]


class Epoch(_Strict):
    """One epoch's readings (``training_record.TrainingRecorder.end_epoch``): log loss per horizon,
    mean gradient norm and update/weight ratio per parameter group."""

    epoch: int
    train_loss: list[Reading]
    val_loss: list[Reading] | None = None  # None without validation windows
    grad_norm: dict[str, Reading] = {}
    update_ratio: dict[str, Reading] = {}


class InitEvidence(_Strict):
    """The untrained model on windows spread over the fit span (``training_record.init_readings``)."""

    pred_std: list[Reading] = []
    pred_mean: list[Reading] = []
    loss: list[Reading] = []
    pos_to_content: Reading = None


class PriorLoss(_Strict):
    """Per horizon, the log loss of predicting the training prior on the training windows, the
    validation windows (None without) and the sample the fit loss is read on."""

    train: list[Reading] | None = None
    val: list[Reading] | None = None
    fit_sample: list[Reading] | None = None


class MemberEvidence(_Strict):
    """One model's training record (``training_record.TrainingRecorder.finish``)."""

    epochs: list[Epoch] = []
    val_source: str | None = None
    init: InitEvidence | None = None
    groups: list[str] = []  # the parameter groups, in the model's order
    prior: list[Reading] = []
    weight_change: dict[str, Reading] = {}  # per group: how far it moved, a fraction of its norm
    prior_loss: PriorLoss = PriorLoss()
    fit_loss: list[Reading] | None = None  # the returned model's log loss on its training windows
    fit_sample: int | None = None  # how many training windows that loss is read on


class Training(_Strict):
    """A model's training audit (``training_audit.training_section``): the verdict, its findings
    (each ``{"finding", "member", "text", numbers...}``) and each member's evidence."""

    verdict: str
    findings: list[Blob] = []
    thresholds: Blob = {}
    horizons: list[str] = []
    members: list[MemberEvidence] = []

    @classmethod
    def of_metrics(cls, metrics: Mapping[str, Any]) -> Training | None:
        """A model version's training audit (its ``metrics["training"]``); None for a version from before it."""
        section = metrics.get("training")
        return cls.model_validate(section) if section else None


class Retrain(_Strict):
    """A challenger trained and gated tonight (``night.retrain.RetrainOutcome``), or the error that stopped it."""

    challenger: str | None = None
    promoted: bool = False
    gate: Gate | None = None
    window: list[str] = []
    challenger_metrics: Blob = {}
    train_seconds: float | None = None
    periods: Blob = {}
    members: int = 1
    device: str | None = None
    training: Training | None = None
    peak_gpu_mb: float | None = None  # the challenger's training on CUDA (None on the CPU)
    error: str | None = None
    device_warning: str | None = None  # the retrain flow's: a GPU pool's worker trained on the CPU


class ChampionInfo(_Strict):
    trained_session: str | None = None
    confirmed_session: str | None = None
    training: Training | None = None


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

    def probabilities(self) -> dict[str, float]:
        """Tonight's probability per horizon."""
        return {h: float(v) for h, v in self.latest.items() if h != "date"}


class Alert(_Strict):
    event: str
    payload: Blob


# ----------------------------------------------------------------------------- the night


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
    champion: ChampionInfo | None = None
    champion_error: str | None = None
    data: Data | None = None
    validation: Validation = Validation()
    drift: Drift | None = None
    collapse: Collapse | None = None
    health: Health | None = None
    performance: Performance | None = None
    decision: Decision | None = None
    retrain: Retrain | None = None
    predictions: Predictions | None = None
    prediction_history: list[dict[str, Any]] = []
    stale: Stale | None = None
    alerts: list[Alert] = []
    timings: dict[str, float] = {}

    @property
    def vs_baseline(self) -> BaselineVerdict | None:
        return self.health.vs_baseline if self.health is not None else None

    @property
    def is_stale(self) -> bool:
        return self.stale is not None and self.stale.stale

    def to_json_dict(self) -> dict:
        """The plain mapping ``audit.json`` holds (each section with the keys its producer set)."""
        return self.model_dump(mode="json", exclude_unset=True)


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
