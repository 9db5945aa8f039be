"""The whole night, one definition for the plain path (``spywatch run --no-prefect``, the
backfill, the tests) and the Prefect ``nightly`` flow alike.

:func:`run_night` runs the stages in order through a *runner* (plain: call the function; Prefect:
run it as the stage's task, ``tasks/night.py``), assembles the typed audit from each stage's
returned value, and sends every failure through one table (``night.failures.FAILURES``). The
stage functions take values and return values; none of them reads or writes the night's state.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spywatch import names
from spywatch.artifact import ArtifactError
from spywatch.audit_schema import (SCHEMA_VERSION, ChampionInfo, Collapse, Data, Decision, Drift, FailureKind, Health,
                                   NightAudit, Predictions, Retrain, RunStatus, Suite, Training, Validation,
                                   check_audit)
from spywatch.dataset import FeatureTable
from spywatch.decision import RetrainDecision
from spywatch.market_data import MarketDataSource
from spywatch.night import story
from spywatch.night.alerts import alerts_for
from spywatch.night.champion import Champion, load_champion
from spywatch.night.config import REASON_LIMIT, PipelineConfig
from spywatch.night.decide import make_decision, read_drift_history, write_drift_history
from spywatch.night.failures import FAILURES, StageFailed, exc_text, failure
from spywatch.night.monitor import (PredictionAudit, data_hash, feature_hash, fetch_and_validate, load_features,
                                    measure_drift, predict_and_audit, validate_current_features)
from spywatch.night import retrain as challenger
from spywatch.publish import Publisher
from spywatch.sources import source_from_spec
from spywatch.text import bounded, cut

log = logging.getLogger("spywatch.night")


@dataclass
class NightlyResult:
    session: str
    status: str  # a RunStatus value
    audit: NightAudit
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def failure(self):  # noqa: ANN201 - audit_schema.Failure | None
        return self.audit.failure

    @property
    def ok(self) -> bool:
        """Published (or already published) with no failure: the run succeeded."""
        return self.status in (RunStatus.PUBLISHED, RunStatus.ALREADY_PUBLISHED) and self.failure is None

    def summary(self) -> str:
        return story.summary(self.audit, self.status, self.outputs)


class PlainRunner:
    """Runs a stage by calling it; the fetch is retried on provider errors like the flow's task."""

    def __init__(self, fetch_retries: int = 2, fetch_backoff_s: float = 10.0) -> None:
        self.fetch_retries, self.fetch_backoff_s = fetch_retries, fetch_backoff_s

    @staticmethod
    def say(line: str) -> None:
        """A line of the night's story (``spywatch run --no-prefect`` shows the ``spywatch`` log)."""
        log.info(line)

    def call(self, stage: str, session: str, fn, *args):  # noqa: ANN001
        if stage != "fetch":
            return fn(*args)
        from spywatch.market_data import MarketDataError

        for attempt in range(self.fetch_retries + 1):
            try:
                return fn(*args)
            except MarketDataError as exc:
                if attempt == self.fetch_retries:
                    raise
                delay = self.fetch_backoff_s * 2 ** attempt
                log.warning("fetch failed (%s); retry %d/%d in %.0f s", exc, attempt + 1, self.fetch_retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


@dataclass
class Night:
    """One night's state as :func:`run_night` moves it through the stages (what the audit will say)."""

    cfg: PipelineConfig
    session: pd.Timestamp
    run_id: str
    source: MarketDataSource
    audit: NightAudit
    table: FeatureTable | None = None
    champion: Champion | None = None
    predictions: PredictionAudit | None = None
    drift: object | None = None  # drift.DriftReport (verdicts + Evidently snapshots)
    decision: RetrainDecision | None = None
    data_info: dict = field(default_factory=dict)
    current_stage: str | None = None  # the stage running now (what a failure is attributed to)

    @property
    def sid(self) -> str:
        return self.session.date().isoformat()

    @property
    def root(self) -> Path:
        return self.cfg.root

    def stage(self, runner, name: str, fn, *args):  # noqa: ANN001
        """Run one stage through ``runner`` and time it; an exception names the stage."""
        self.current_stage = name
        t = time.perf_counter()
        try:
            return runner.call(name, self.sid, fn, *args)
        finally:
            self.audit.timings[name] = round(time.perf_counter() - t, 3)

    def narrate(self, runner, name: str) -> None:  # noqa: ANN001
        """One line about what ``name`` recorded, through the runner (the run log in a flow)."""
        line = story.narrate(name, self.audit)
        if line:
            getattr(runner, "say", log.info)(f"[{self.sid}] {line}")


# What trains a challenger for a night: the plain path trains here; the flow runs its subflow or a
# deployment. Each returns the ``Retrain`` section (a dict from the flow: its JSON).
Retrainer = Callable[[Night], "Retrain | dict"]


def train_here(night: Night) -> Retrain:
    """The plain path's retrain: train and gate in this process."""
    return challenger.train_challenger(night.cfg, night.session, night.table, night.data_info).section()


DEFERRED = "retrain_deferred"  # a NightlyResult's status when the night stopped for the fleet's one pass


class RetrainDeferred(Exception):
    """The night wants a challenger and leaves its fitting to the fleet's one pass: it stops before
    the retrain with nothing published, and runs again once the pass has registered the challenger."""


def defer_retrain(night: Night) -> Retrain:
    """The retrainer of a fleet night in one-pass mode (never called: ``_stages`` stops the night)."""
    raise RetrainDeferred(night.sid)


@dataclass(frozen=True)
class GateFitted:
    """The retrainer of a deferred night run again after the fleet's one pass: gate the challenger
    the pass registered as ``version``, or fail the retrain with the pass's ``error`` for this ticker.
    ``deferred``: the deferred run's fetch (its ``Data``): that run took tonight's bars into the
    store, so this run's own fetch finds none new; the night's audit counts both."""

    version: str | None
    error: str | None = None
    deferred: Data | None = None

    def __call__(self, night: Night) -> Retrain:
        if self.version is None:
            raise RuntimeError(f"the fleet's one-pass retrain fitted no challenger: {self.error or 'no reason given'}")
        return challenger.gate_fitted(night.cfg, night.session, night.table, night.data_info, self.version).section()


def continued(deferred: Data, again: Data) -> Data:
    """Tonight's fetch over a deferred night's two runs: what the store holds now, with the new
    sessions and revisions both runs took in."""
    return again.model_copy(update={"new_sessions": deferred.new_sessions + again.new_sessions,
                                    "revisions": deferred.revisions + again.revisions})


def start_night(cfg: PipelineConfig) -> Night:
    session = cfg.session()
    source = source_from_spec(cfg.source)
    run_id = cfg.run_id or uuid.uuid4().hex[:12]
    audit = NightAudit(schema_version=SCHEMA_VERSION, session=session.date().isoformat(), run_id=run_id, ticker=names.ticker(cfg.ticker),
                       synthetic=source.synthetic, policy=cfg.policy, source=source.name, status=RunStatus.RUNNING,
                       failure=None, started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       model_version=None, data=None, validation=Validation(), drift=None, collapse=None, health=None,
                       performance=None, decision=None, retrain=None, predictions=None, prediction_history=[],
                       stale=None, alerts=[], timings={})
    return Night(cfg=cfg, session=session, run_id=run_id, source=source, audit=audit)


INLINE = object()  # run_night's default retrain: train here when ``cfg.retrain`` is "inline"


def run_night(cfg: PipelineConfig, runner=None, retrain: Retrainer | None = INLINE,  # noqa: ANN001
              force: bool = False, lock_timeout_s: float | None = None) -> NightlyResult:
    """The night for one session, under the root's lock: fetch -> validate -> features -> champion
    -> validate features -> predict + audit -> drift -> decide -> (retrain) -> publish.

    ``runner.call(stage, session, fn, *args)`` runs each stage (``PlainRunner``, or the flow's task
    runner); ``retrain(night)`` trains and gates a challenger (default: here, unless
    ``cfg.retrain`` is "never"; None: only record the decision). A session already published (and
    consistent) is not redone unless ``force``.
    """
    from spywatch.lock import root_lock

    runner = runner or PlainRunner()
    if retrain is INLINE:
        retrain = train_here if cfg.retrain == "inline" else None
    night = start_night(cfg)  # an unsettled session or a bad source is refused here, before anything is written
    with root_lock(cfg.root, "nightly", lock_timeout_s):
        publisher = Publisher(cfg.root)
        for line in publisher.recover():
            log.warning("publishing recovery: %s", line)
        if not force and publisher.is_published(night.sid):
            problems = publisher.consistency(night.sid)
            if problems:  # the folder is published but the shared files disagree: repair from the folder
                log.warning("session %s: %s; repairing from its folder", night.sid, "; ".join(problems))
                audit = publisher.read_audit(night.sid)
                publisher.repair(night.sid, audit.run_id, audit.model_version)
            return NightlyResult(session=night.sid, status=RunStatus.ALREADY_PUBLISHED.value,
                                 audit=publisher.read_audit(night.sid),
                                 outputs={"session folder": publisher.session_dir(night.sid)})
        try:
            _stages(night, runner, retrain)
            result = night.stage(runner, "publish", publish_night, night, publisher)
        except RetrainDeferred:  # nothing published: the night runs again after the fleet's one pass
            return NightlyResult(session=night.sid, status=DEFERRED, audit=night.audit)
        except StageFailed as failed:
            result = night.stage(runner, "publish_failure", fail_night, night, publisher, failed.kind, failed.stage,
                                 failed.reason)
        except Exception as exc:
            stage = night.current_stage or "?"
            log.exception("session %s: stage %s raised", night.sid, stage)
            result = night.stage(runner, "publish_failure", fail_night, night, publisher, FailureKind.STAGE_ERROR,
                                 stage, exc_text(exc))
        night.narrate(runner, "publish" if result.status == RunStatus.PUBLISHED else "publish_failure")
        return result


def _stages(night: Night, runner, retrain: Retrainer | None) -> None:  # noqa: ANN001
    from spywatch.market_data import MarketDataError
    from spywatch.validation import ValidationFailed

    cfg, a = night.cfg, night.audit
    try:
        update, raw = night.stage(runner, "fetch", fetch_and_validate, night.source, night.root, cfg.ticker,
                                  night.session)
    except ValidationFailed as exc:
        a.validation.raw_bars = _suite(exc.result)
        raise StageFailed(FailureKind.RAW_BARS_INVALID, "fetch", exc.result.reason()) from exc
    except MarketDataError as exc:
        raise StageFailed(FailureKind.FETCH_FAILED, "fetch", f"market data: {exc_text(exc, named=False)}") from exc
    a.validation.raw_bars = _suite(raw)
    a.data = Data(source=update.source, synthetic=update.synthetic, first_session=update.first_session,
                  last_session=update.last_session, new_sessions=len(update.new_sessions),
                  revisions=len(update.revisions), path=str(update.path))
    if isinstance(retrain, GateFitted) and retrain.deferred is not None:
        a.data = continued(retrain.deferred, a.data)
    night.narrate(runner, "fetch")

    night.table = night.stage(runner, "features", load_features, night.root, cfg.ticker, night.session)
    night.data_info = {"source": night.source.name, "synthetic": night.source.synthetic,
                       "data_hash": data_hash(night.table, night.session)}

    _load_champion(night, runner)
    if night.champion is not None:
        result = night.stage(runner, "validate_features", validate_current_features, night.table, night.champion,
                             night.session, cfg.drift_window, cfg.layout.validation)
        a.validation.features = _suite(result)
        night.narrate(runner, "validate_features")
        if not result.success:
            raise StageFailed(FailureKind.FEATURES_INVALID, "validate_features", "features validation failed")
        _audit_champion(night, runner)

    history = read_drift_history(night.root)
    drift = night.drift.result if night.drift is not None else None
    night.decision = night.stage(runner, "decide", make_decision, drift, night.predictions, night.champion,
                                 night.session, history, cfg.retrain_policy)
    a.decision = Decision.model_validate(night.decision.to_dict())
    night.narrate(runner, "decide")
    if drift is not None:
        write_drift_history(night.root, history, night.sid, drift.dataset_drift)

    if night.decision.retrain and retrain is defer_retrain:
        raise RetrainDeferred(night.sid)
    if night.decision.retrain and retrain is not None:
        try:
            outcome = night.stage(runner, "retrain", retrain, night)
        except Exception as exc:  # tonight still goes out with the champion that passed its audit
            log.exception("session %s: the retrain failed", night.sid)
            a.retrain = Retrain(error=exc_text(exc), challenger=None, promoted=False)
            if night.champion is None:
                raise StageFailed(FailureKind.NO_CHAMPION, "retrain",
                                  f"no champion, and the retrain failed: {exc_text(exc)}") from exc
            a.failure = failure(FailureKind.RETRAIN_FAILED, "retrain", exc_text(exc))
            night.narrate(runner, "retrain")
        else:
            a.retrain = outcome if isinstance(outcome, Retrain) else Retrain.model_validate(outcome)
            night.narrate(runner, "retrain")
            previous = night.champion.version if night.champion else None
            _load_champion(night, runner)
            if night.champion is not None and night.champion.version != previous:
                _audit_champion(night, runner)  # the new champion publishes tonight, audited
    if night.champion is None or night.predictions is None:
        raise StageFailed(FailureKind.NO_CHAMPION, night.current_stage or "decide", no_champion_reason(a))


def no_champion_reason(audit: NightAudit) -> str:
    """Why there is nothing to predict with: no retrain, or the gate's refusal with its numbers
    (the failed check first: a floor, a collapse, a training verdict)."""
    retrain = audit.retrain
    gate = retrain.gate if retrain is not None else None
    if gate is None:
        return "no champion model to predict with"
    failed = [r for r in gate.reasons if " < floor" in r or r.startswith("challenger predictions collapsed")
              or "training verdict" in r]
    shown = failed + [r for r in gate.reasons if r not in failed]
    return (f"no champion model to predict with: challenger {retrain.challenger} refused by the gate "
            f"({gate.rule or 'refused'}): {'; '.join(shown)}")


def _load_champion(night: Night, runner) -> None:  # noqa: ANN001
    try:
        night.champion = night.stage(runner, "champion", load_champion, night.root, night.cfg.promotion)
    except ArtifactError as exc:
        night.audit.champion_error = exc_text(exc, named=False)
        raise StageFailed(FailureKind.CHAMPION_REFUSED, "champion",
                          f"champion model refused: {exc_text(exc, named=False)}") from exc
    champion = night.champion
    night.audit.model_version = champion.version if champion else None
    if champion is not None:
        confirmed = champion.last_confirmation(night.session)
        training = Training.of_metrics(champion.bundle.metrics)
        night.audit.champion = ChampionInfo(
            trained_session=champion.trained_session().date().isoformat(),
            confirmed_session=confirmed.date().isoformat() if confirmed else None,
            training=training)
    night.narrate(runner, "champion")


def _audit_champion(night: Night, runner) -> None:  # noqa: ANN001
    """Predict with the champion, check for collapse and decay, and measure drift."""
    p = night.predictions = night.stage(runner, "audit", predict_and_audit, night.table, night.champion,
                                        night.session, night.cfg)
    night.drift = night.stage(runner, "drift", measure_drift, night.table, night.champion, night.session,
                              night.cfg.drift_window, p.proba)
    a = night.audit
    a.drift = Drift.model_validate(night.drift.result.to_dict())
    a.collapse = Collapse.model_validate({**p.collapse.to_dict(), "members": p.members})
    a.performance = p.performance
    a.health = Health(verdict=p.collapse.verdict,
                      vs_baseline=p.performance.vs_baseline if p.performance is not None else None)
    night.narrate(runner, "audit")
    night.narrate(runner, "drift")


def publish_night(night: Night, publisher: Publisher | None = None) -> NightlyResult:
    """Publish tonight's predictions with their audit, as one recoverable unit."""
    publisher = publisher or Publisher(night.root)
    latest = night.predictions.proba.iloc[-1]
    spread = night.predictions.spread.iloc[-1]
    a = night.audit
    a.predictions = Predictions(file="predictions.parquet", rows=len(latest),
                                latest={"date": night.sid, **{h: float(v) for h, v in latest.items()}},
                                member_std={h: float(v) for h, v in spread.items()},
                                members=len(night.champion.bundle.model))
    a.prediction_history = [{"date": d.date().isoformat(), **{h: round(float(v), 5) for h, v in row.items()}}
                            for d, row in night.predictions.history.iterrows()]
    rows = pd.DataFrame({"session": night.sid, "horizon": list(latest.index),
                         "probability": latest.to_numpy(dtype="float64"),
                         "member_std": spread.reindex(latest.index).to_numpy(dtype="float64"),
                         "model_version": night.champion.version, "data_hash": night.data_info["data_hash"],
                         "feature_hash": feature_hash(night.table, night.session, night.champion.bundle.lookback),
                         "run_id": night.run_id, "synthetic": night.source.synthetic})
    a.status = RunStatus.PUBLISHED
    a.stale = None
    a.alerts = alerts_for(a)
    a.finished_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    files, night.audit = _audit_files(a, drift_html=night.drift is not None)
    link = publisher.publish_night(night.sid, night.run_id, night.champion.version,
                                   {"predictions.parquet": lambda p: rows.to_parquet(p, index=False), **files},
                                   populate=_drift_files(night.drift))
    return NightlyResult(session=night.sid, status=a.status.value, audit=night.audit,
                         outputs={"session folder": link, "audit": link / "audit.json",
                                  "report": link / "report.html", "predictions": publisher.predictions_path,
                                  "latest": publisher.latest_path})


def fail_night(night: Night, publisher: Publisher, kind: FailureKind, stage: str, reason: str) -> NightlyResult:
    """No predictions tonight: the failure audit is published (beside a published session's outputs,
    which stay as they are), and the last good predictions are marked stale."""
    a = night.audit
    a.status = FAILURES[kind].status
    a.failure = failure(kind, stage, reason)
    a.predictions, a.prediction_history = None, []
    a.stale = publisher.mark_stale(night.sid, cut(reason, REASON_LIMIT), night.run_id)
    a.alerts = alerts_for(a)
    a.finished_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    files, night.audit = _audit_files(a)
    if publisher.is_published(night.sid):
        folder = publisher.publish_attempt(night.sid, night.run_id, files)
    else:
        folder = publisher.publish_session(night.sid, night.run_id, files)
    return NightlyResult(session=night.sid, status=a.status.value, audit=night.audit,
                         outputs={"audit": folder / "audit.json", "report": folder / "report.html",
                                  "latest": publisher.latest_path})


def _audit_files(audit: NightAudit, drift_html: bool = False) -> tuple[dict[str, bytes], NightAudit]:
    """``audit.json`` and its HTML report (linking the Evidently report when it is beside them), and
    the audit as published (every string within its bound, read back through the schema)."""
    import json

    from spywatch.atomic import json_bytes
    from spywatch.report.render import render_audit_html

    audit_bytes = json_bytes(bounded(audit.to_json_dict(), REASON_LIMIT))  # the last guard: no string beyond it
    published = check_audit(json.loads(audit_bytes))  # what is written follows the schema (the field named)
    html = render_audit_html(published, drift_report_href="drift.html" if drift_html else None)
    return {"audit.json": audit_bytes, "report.html": html.encode()}, published


def _drift_files(drift_report):  # noqa: ANN001, ANN202
    def write(folder: Path) -> None:
        if drift_report is not None:
            from spywatch.drift import save_drift_report

            save_drift_report(drift_report, folder, stem="drift")
    return write


def _suite(result) -> Suite:  # noqa: ANN001 - validation.ValidationResult
    return Suite(success=result.success, failures=result.lines(), n_checks=result.n_checks, seconds=result.seconds)
