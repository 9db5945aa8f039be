"""Model registry: immutable version folders, a ``champion`` alias, promotion gates, rollback.

Layout under ``root``::

    versions/<version>/      one artifact per version (see ``artifact.py``), never modified
    champion.json            the alias: current version, the stack of previous champions, and the
                             event that set it. Rewritten atomically; this file is the commit point.
    history.json             every alias move and every refused promotion, a JSON list rewritten
                             atomically (audit trail; ``champion.json`` alone suffices to roll back)
    .lock                    ``flock`` so two writers never interleave

Why this survives a kill at any point: a version is renamed into ``versions/`` only when complete;
``champion.json`` is replaced atomically and only after the target version verified; the history
entry is written after the alias moved and is re-appended from ``champion.json`` by the next writer
if a kill fell in between. So the alias always names a complete, verified version, old or new.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spywatch.artifact import (
    MANIFEST_NAME,
    ArtifactError,
    Manifest,
    commit_artifact,
    read_manifest,
    stage_artifact,
    sweep_partial,
    verify_artifact,
)
from spywatch.atomic import FILE_MODE, atomic_write_json, make_dirs
from spywatch.training_audit import finding_line

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(ValueError):
    """A registry operation cannot proceed (unknown version, nothing to roll back, bad alias file).

    A ``ValueError`` so the CLI's boundary handler prints it as a one-line error.
    """


class NoChampionError(RegistryError):
    """No version has been promoted yet: the first nightly run must train one."""


# --------------------------------------------------------------------------- promotion gate

@dataclass(frozen=True)
class ModelScore:
    """A model's AUC per horizon on one recent out-of-time window.

    ``window`` names that window (e.g. ``"2026-06-01..2026-11-20"``): challenger and champion
    are only comparable when it is the same. A horizon whose window holds one class has no AUC:
    it is left out and named in ``skipped``.
    """

    auc_by_horizon: Mapping[str, float]
    collapsed: bool
    window: str
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        aucs, skipped = {}, list(self.skipped)
        for h, a in self.auc_by_horizon.items():
            if isinstance(a, float) and math.isnan(a):
                skipped.append(str(h))
            else:
                aucs[str(h)] = _auc(h, a)
        if not aucs:
            raise ValueError(f"ModelScore needs at least one horizon AUC (skipped: {skipped})")
        # plain floats and bools (not numpy scalars) so the gate's details are JSON as they stand
        object.__setattr__(self, "auc_by_horizon", aucs)
        object.__setattr__(self, "collapsed", bool(self.collapsed))
        object.__setattr__(self, "skipped", tuple(dict.fromkeys(skipped)))

    @property
    def mean_auc(self) -> float:
        return sum(self.auc_by_horizon.values()) / len(self.auc_by_horizon)

    def to_dict(self) -> dict[str, Any]:
        return {"auc_by_horizon": dict(self.auc_by_horizon), "mean_auc": self.mean_auc,
                "collapsed": self.collapsed, "window": self.window, "skipped": list(self.skipped)}


RULES = ("paired", "margin", "always")


@dataclass(frozen=True)
class PromotionPolicy:
    """When a challenger may replace the champion.

    ``paired`` (default): champion and challenger are scored on the same holdout sessions; a
    paired block bootstrap of the difference in mean AUC gives an interval at ``level``. Promote
    when the challenger is better (the interval's lower bound is above 0: better at one-sided
    (1 + level) / 2), or when it is not worse beyond ``non_inferiority_margin`` (lower bound above
    -margin) and learned from fresher data: a model that knows the last year is preferred to an
    equal one that does not. ``margin``: the rule before Step 6 (mean AUC gain >= min_improvement,
    no interval). ``always``: promote anything that clears the floor and is not collapsed.
    """

    rule: str = "paired"
    level: float = 0.90
    non_inferiority_margin: float = 0.01
    n_boot: int = 2000
    block: int = 10  # sessions; at least the longest horizon
    min_improvement: float = 0.005  # "margin" only
    # Absolute mean-AUC floor: a model near coin-flip is not worth serving even with no champion.
    auc_floor: float = 0.52

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule={self.rule!r}; expected one of {RULES}")
        if not 0.5 <= self.level < 1.0:
            raise ValueError(f"level must be in [0.5, 1), got {self.level}")
        if not (math.isfinite(self.non_inferiority_margin) and 0 <= self.non_inferiority_margin < 0.1):
            raise ValueError(f"non_inferiority_margin must be in [0, 0.1), got {self.non_inferiority_margin}")
        if self.n_boot < 100 or self.block < 1:
            raise ValueError(f"n_boot={self.n_boot} (>= 100) and block={self.block} (>= 1) out of range")
        if not (math.isfinite(self.min_improvement) and self.min_improvement >= 0):
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement}")
        if not (math.isfinite(self.auc_floor) and 0.0 <= self.auc_floor <= 1.0):
            raise ValueError(f"auc_floor must be in [0, 1], got {self.auc_floor}")

    def bootstrap(self, block: int | None = None):
        from spywatch.comparison import BootstrapConfig

        return BootstrapConfig(n_boot=self.n_boot, block=max(self.block, block or 1), level=self.level)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "level": self.level, "non_inferiority_margin": self.non_inferiority_margin,
                "n_boot": self.n_boot, "block": self.block, "min_improvement": self.min_improvement,
                "auc_floor": self.auc_floor}


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict; ``reasons`` holds one line per check, passed or failed, with numbers.

    ``rule`` names what decided: ``better``, ``non_inferior_fresher``, ``no_champion``,
    ``champion_collapsed``, ``margin``, ``always``, ``refused``, or ``training_unhealthy`` (refused
    before scoring: ``training_gate``).
    """

    promote: bool
    reasons: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    rule: str = "refused"

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "rule": self.rule, "reasons": list(self.reasons),
                "details": dict(self.details)}


def training_gate(training: Mapping[str, Any] | None) -> GateResult | None:
    """The gate's first check, before the holdout is read: a challenger whose training verdict
    (``metrics["training"]``, training_audit) is not healthy is refused, its findings the reasons.
    None when the verdict is healthy, or was not recorded (versions from before the training
    audit): scoring decides then."""
    if not training or training.get("verdict") in (None, "healthy"):
        return None
    reasons = [f"challenger training verdict {training['verdict']}: refused before scoring "
               f"(a model whose training failed the audit is not compared)"]
    reasons += [finding_line(f) for f in training.get("findings", [])]
    return GateResult(promote=False, reasons=tuple(reasons), rule="training_unhealthy",
                      details={"rule": "training_unhealthy", "training_verdict": training["verdict"],
                               "findings": [f["finding"] for f in training.get("findings", [])]})


def gate(challenger: ModelScore, champion: ModelScore | None, policy: PromotionPolicy,
         comparison=None, fresher: bool = False) -> GateResult:
    """Decide whether ``challenger`` may replace ``champion``; pure, every check explained.

    Args:
        comparison: ``comparison.PairedComparison`` of challenger minus champion on the holdout
            (required by the ``paired`` rule when a healthy champion exists).
        fresher: the challenger learned from sessions after the champion's last one.
    A collapsed champion does not block: its AUC says little about a model that stopped ranking.
    """
    if champion is not None:
        _check_comparable(challenger, champion)
    checks: dict[str, bool] = {}
    reasons: list[str] = []
    mean = challenger.mean_auc

    checks["not_collapsed"] = not challenger.collapsed
    reasons.append("challenger predictions collapsed" if challenger.collapsed
                   else "challenger predictions not collapsed")

    checks["floor"] = mean >= policy.auc_floor
    reasons.append(f"challenger mean AUC {mean:.4f} {'>=' if checks['floor'] else '<'} "
                   f"floor {policy.auc_floor:.4f}")
    if challenger.skipped:
        reasons.append(f"horizon(s) {list(challenger.skipped)} skipped: one class only in the holdout")

    delta: float | None = None
    rule = "refused"
    if champion is None:
        reasons.append("no champion: floor and collapse checks suffice")
        rule = "no_champion"
    elif champion.collapsed:
        reasons.append(f"champion collapsed (mean AUC {champion.mean_auc:.4f}): comparison waived")
        rule = "champion_collapsed"
    elif policy.rule == "always":
        delta = mean - champion.mean_auc
        reasons.append(f"rule 'always': promoted without comparison (mean AUC {delta:+.4f} vs champion)")
        rule = "always"
    elif policy.rule == "margin":
        delta = mean - champion.mean_auc
        checks["margin"] = delta >= policy.min_improvement
        reasons.append(f"challenger mean AUC {mean:.4f} vs champion {champion.mean_auc:.4f}: "
                       f"{delta:+.4f} {'>=' if checks['margin'] else '<'} "
                       f"required +{policy.min_improvement:.4f}")
        rule = "margin"
    else:
        if comparison is None:
            raise ValueError("the paired rule needs the paired comparison of challenger and champion")
        delta = comparison.estimate
        pct = round(100 * policy.level)
        better = comparison.ci_low > 0
        non_inferior = comparison.ci_low > -policy.non_inferiority_margin
        reasons.append(f"challenger - champion mean AUC {comparison.estimate:+.4f}, {pct}% CI "
                       f"[{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}], P(challenger better) "
                       f"{comparison.p_a_better:.2f} on {comparison.n_sessions} holdout sessions "
                       f"{comparison.span[0]}..{comparison.span[1]}")
        if better:
            rule = "better"
            reasons.append(f"better: the interval's lower bound {comparison.ci_low:+.4f} > 0")
        elif non_inferior and fresher:
            rule = "non_inferior_fresher"
            reasons.append(f"not worse beyond {policy.non_inferiority_margin:.3f} (lower bound "
                           f"{comparison.ci_low:+.4f}) and trained on fresher data")
        else:
            checks["paired"] = False
            reasons.append(f"not better (lower bound {comparison.ci_low:+.4f} <= 0)"
                           + ("" if non_inferior else f" and possibly worse beyond {policy.non_inferiority_margin:.3f}")
                           + ("" if fresher else "; not trained on fresher data"))
        checks.setdefault("paired", True)

    promote = all(checks.values())
    if not promote:
        rule = "refused"
    details = {"checks": checks, "delta_mean_auc": delta, "policy": policy.to_dict(), "rule": rule,
               "fresher": fresher, "comparison": comparison.to_dict() if comparison is not None else None,
               "challenger": challenger.to_dict(),
               "champion": champion.to_dict() if champion is not None else None}
    return GateResult(promote=promote, reasons=tuple(reasons), details=details, rule=rule)


def _auc(horizon: str, value: Any) -> float:
    try:
        auc = float(value)
    except (TypeError, ValueError):
        auc = math.nan
    if not (math.isfinite(auc) and 0.0 <= auc <= 1.0):
        raise ValueError(f"AUC for horizon {horizon} must be a finite number in [0, 1], got {value!r}")
    return auc


def _check_comparable(challenger: ModelScore, champion: ModelScore) -> None:
    """Scores on different windows or horizons cannot be compared: a caller bug, not a verdict."""
    if challenger.window != champion.window:
        raise ValueError(f"challenger scored on window {challenger.window!r}, champion on "
                         f"{champion.window!r}: score both on the same out-of-time window")
    if set(challenger.auc_by_horizon) != set(champion.auc_by_horizon):
        raise ValueError(f"challenger horizons {sorted(challenger.auc_by_horizon)} differ from "
                         f"champion horizons {sorted(champion.auc_by_horizon)}")


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class HistoryEvent:
    """One line of the audit trail: an alias move (promote, rollback) or a refused promotion."""

    seq: int
    event: str
    version: str
    champion_before: str | None
    at: str
    reason: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "event": self.event, "version": self.version,
                "champion_before": self.champion_before, "at": self.at, "reason": dict(self.reason)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HistoryEvent:
        return cls(seq=int(d["seq"]), event=str(d["event"]), version=str(d["version"]),
                   champion_before=d.get("champion_before"), at=str(d["at"]), reason=dict(d["reason"]))


@dataclass(frozen=True)
class ChampionRecord:
    """Content of ``champion.json``: the current version and the stack to roll back through."""

    version: str
    previous: tuple[str, ...]  # earlier champions, most recent last
    event: HistoryEvent  # the move that made ``version`` champion

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "previous": list(self.previous), "event": self.event.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChampionRecord:
        return cls(version=str(d["version"]), previous=tuple(str(v) for v in d["previous"]),
                   event=HistoryEvent.from_dict(d["event"]))


@dataclass(frozen=True)
class ModelVersion:
    """A verified version: its folder and manifest. Load the files only through this."""

    version: str
    path: Path
    manifest: Manifest


@dataclass(frozen=True)
class VersionInfo:
    """One row of ``list``/``show``; ``problem`` says why a version cannot be loaded."""

    version: str
    path: Path
    created_at: str | None
    is_champion: bool
    files: tuple[str, ...]
    meta: Mapping[str, Any]
    verified: bool
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "path": str(self.path), "created_at": self.created_at,
                "is_champion": self.is_champion, "files": list(self.files), "meta": dict(self.meta),
                "verified": self.verified, "problem": self.problem}


# --------------------------------------------------------------------------- registry

class ModelRegistry:
    """Versions, the champion alias and its history under one root folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def champion_path(self) -> Path:
        return self.root / "champion.json"

    @property
    def history_path(self) -> Path:
        return self.root / "history.json"

    # ---- writing versions

    def register(self, source: Callable[[Path], None] | Path, meta: Mapping[str, Any] | None = None,
                 version: str | None = None, now: dt.datetime | None = None) -> str:
        """Store a new immutable version and return its id.

        ``source`` is either a callable that writes the model files into the folder it is given,
        or an existing flat folder to copy (an artifact folder is verified first and its meta kept).
        The id is ``version`` when given, else ``<UTC time>-<content hash>`` so ids sort by time.
        """
        if version is not None:
            _check_version(version)
        if now is not None and now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware (version ids are UTC), got {now.isoformat()}")
        meta = dict(meta or {})
        if isinstance(source, (str, Path)):
            populate, meta = _copy_from(Path(source), meta)
        else:
            populate = source
        with self._lock():
            sweep_partial(self.versions_dir)
            if version is not None and (self.versions_dir / version).exists():
                raise RegistryError(f"version {version} already exists in {self.versions_dir}")
            staged = stage_artifact(self.versions_dir, populate, meta)
            if version is None:
                stamp = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
                version = f"{stamp:%Y%m%dT%H%M%SZ}-{staged.manifest.digest[:8]}"
            commit_artifact(staged, self.versions_dir / version)
        return version

    # ---- reading versions

    def get(self, version: str) -> ModelVersion:
        """The verified version; ``ArtifactError`` names the bad file if it was altered."""
        path = self._version_path(version)
        return ModelVersion(version=version, path=path, manifest=verify_artifact(path))

    def load_champion(self) -> ModelVersion:
        """The verified champion. A corrupted champion raises and the alias stays where it is."""
        record = self.champion_record()
        if record is None:
            raise NoChampionError(f"no champion in {self.root}: nothing has been promoted yet")
        try:
            return self.get(record.version)
        except (ArtifactError, RegistryError) as exc:
            raise ArtifactError(f"champion {record.version} is unusable: {exc}") from exc

    @property
    def champion(self) -> str | None:
        record = self.champion_record()
        return record.version if record is not None else None

    def champion_record(self) -> ChampionRecord | None:
        """Parse ``champion.json``; ``None`` before the first promotion."""
        data = _read_json(self.champion_path)
        if data is None:
            return None
        try:
            return ChampionRecord.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{self.champion_path}: malformed champion alias ({exc})") from exc

    def history(self) -> builtins.list[HistoryEvent]:
        """Every alias move and refused promotion, oldest first."""
        data = _read_json(self.history_path)
        if data is None:
            return []
        try:
            return [HistoryEvent.from_dict(d) for d in data]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{self.history_path}: malformed history ({exc})") from exc

    def confirmations(self, version: str, auc_floor: float) -> builtins.list[str]:
        """The sessions at which ``version``, as champion, held against a challenger (sorted).

        A refused promotion re-scored the champion on a fresh holdout; when that score was not
        collapsed and cleared ``auc_floor``, the champion was confirmed on recent data then, so
        its age can count from there instead of from its training.
        """
        sessions = set()
        for e in self.history():
            champ = (e.reason.get("gate") or {}).get("details", {}).get("champion")
            if (e.event == "refuse" and e.champion_before == version and e.reason.get("session") and champ
                    and not champ["collapsed"] and champ["mean_auc"] >= auc_floor):
                sessions.add(str(e.reason["session"]))
        return sorted(sessions)

    def show(self, version: str) -> VersionInfo:
        """One version with its checksums verified; a failure is reported in ``problem``."""
        self._version_path(version)
        return self._info(version, self.champion, verify=True)

    # ---- moving the alias

    def promote(self, version: str, reason: Mapping[str, Any]) -> ChampionRecord:
        """Make ``version`` the champion after verifying it; the previous one goes on the stack."""
        with self._lock():
            return self._promote_locked(version, dict(reason))

    def promote_if_better(self, version: str, challenger: ModelScore, champion: ModelScore | None,
                          policy: PromotionPolicy, context: Mapping[str, Any] | None = None,
                          comparison=None, fresher: bool = False,
                          champion_version: str | None = None) -> GateResult:
        """Run :func:`gate` and promote on a pass; a refusal is recorded in the history too.

        ``champion`` must score the current champion on the same window (``None`` only when the
        registry has no champion), so the comparison is never against a stale number:
        ``champion_version`` names the version that was scored, and it is checked against the
        alias inside the lock (another writer may have moved it meanwhile).
        ``context`` (e.g. the session the gate ran for) is kept beside the gate in the event.
        """
        with self._lock():
            self._reconcile_history()
            current = self.champion
            if (current is None) != (champion is None):
                raise ValueError(f"registry champion is {current}, but a champion score was "
                                 f"{'not ' if champion is None else ''}given")
            if champion is not None and champion_version is not None and champion_version != current:
                raise RegistryError(f"champion moved to {current} while {champion_version} was being scored "
                                    f"against {version}: nothing promoted, re-run the gate")
            result = gate(challenger, champion, policy, comparison, fresher)
            if result.promote:
                self._promote_locked(version, {**dict(context or {}), "gate": result.to_dict()})
            else:
                self._refuse_locked(version, current, result, context)
            return result

    def refuse(self, version: str, result: GateResult, context: Mapping[str, Any] | None = None) -> GateResult:
        """Record a refusal decided before any scoring (``training_gate``) in the history."""
        if result.promote:
            raise ValueError("refuse() records refusals only")
        with self._lock():
            self._reconcile_history()
            self._refuse_locked(version, self.champion, result, context)
            return result

    def rollback(self, reason: Mapping[str, Any] | None = None) -> ChampionRecord:
        """Move the alias back to the previous champion (verified first)."""
        with self._lock():
            self._reconcile_history()
            record = self.champion_record()
            if record is None:
                raise NoChampionError(f"no champion in {self.root}: nothing to roll back")
            if not record.previous:
                raise RegistryError(f"champion {record.version} has no previous champion to roll back to")
            target = record.previous[-1]
            self._get_locked(target)
            event = self._event("rollback", target, record.version, dict(reason or {}))
            new = ChampionRecord(version=target, previous=record.previous[:-1], event=event)
            self._commit(new)
            return new

    def list(self, verify: bool = False) -> builtins.list[VersionInfo]:
        """All versions, oldest first; ``verify`` recomputes checksums (reads every file)."""
        if not self.versions_dir.is_dir():
            return []
        champion = self.champion
        names = sorted(p.name for p in self.versions_dir.iterdir()
                       if p.is_dir() and not p.name.startswith("."))
        return [self._info(name, champion, verify) for name in names]

    # ---- internals

    def _refuse_locked(self, version: str, champion: str | None, result: GateResult,
                       context: Mapping[str, Any] | None) -> None:
        self._version_path(version)
        self._append_history(self._event("refuse", version, champion, {**dict(context or {}), "gate": result.to_dict()}))

    def _promote_locked(self, version: str, reason: dict[str, Any]) -> ChampionRecord:
        self._reconcile_history()
        self._get_locked(version)
        record = self.champion_record()
        if record is not None and record.version == version:
            raise RegistryError(f"{version} is already the champion")
        previous = () if record is None else (*record.previous, record.version)
        event = self._event("promote", version, None if record is None else record.version, reason)
        new = ChampionRecord(version=version, previous=previous, event=event)
        self._commit(new)
        return new

    def _get_locked(self, version: str) -> ModelVersion:
        """``get`` for a version about to become the alias: refuse before anything is written."""
        try:
            return self.get(version)
        except ArtifactError as exc:
            raise ArtifactError(f"refusing to make {version} champion: {exc}") from exc

    def _commit(self, record: ChampionRecord) -> None:
        # The alias is the commit point; the history line follows (and is repaired if lost).
        atomic_write_json(self.champion_path, record.to_dict())
        self._append_history(record.event)

    def _reconcile_history(self) -> None:
        """Append the alias's event if a kill fell between moving the alias and logging it."""
        record = self.champion_record()
        if record is not None and all(e.seq != record.event.seq for e in self.history()):
            self._append_history(record.event)

    def _event(self, kind: str, version: str, before: str | None, reason: Mapping[str, Any]) -> HistoryEvent:
        record = self.champion_record()
        seqs = [e.seq for e in self.history()] + ([record.event.seq] if record is not None else [])
        return HistoryEvent(seq=max(seqs, default=0) + 1, event=kind, version=version,
                            champion_before=before, at=_utc_now(), reason=reason)

    def _append_history(self, event: HistoryEvent) -> None:
        events = [e.to_dict() for e in self.history()] + [event.to_dict()]
        atomic_write_json(self.history_path, events)

    def _info(self, version: str, champion: str | None, verify: bool) -> VersionInfo:
        path = self.versions_dir / version
        manifest: Manifest | None = None
        problem: str | None = None
        try:
            manifest = verify_artifact(path) if verify else read_manifest(path)
        except ArtifactError as exc:
            problem = str(exc)
        return VersionInfo(version=version, path=path,
                           created_at=manifest.created_at if manifest else None,
                           is_champion=version == champion,
                           files=manifest.names if manifest else (),
                           meta=manifest.meta if manifest else {},
                           verified=verify and problem is None, problem=problem)

    def _version_path(self, version: str) -> Path:
        _check_version(version)
        path = self.versions_dir / version
        if not path.is_dir():
            raise RegistryError(f"unknown version {version} (no folder {path})")
        return path

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise writers; ``flock`` is released by the kernel if the holder is killed."""
        make_dirs(self.root)
        with open(self.root / ".lock", "a") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # the mode rule, whatever the umask (spywatch.atomic)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                _sweep_temp_files(self.root)
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _copy_from(source: Path, meta: dict[str, Any]) -> tuple[Callable[[Path], None], dict[str, Any]]:
    """A populate callable copying a flat folder; an artifact folder must verify and keeps its meta."""
    if not source.is_dir():
        raise RegistryError(f"model source folder {source} does not exist")
    if (source / MANIFEST_NAME).exists():  # its integrity; the registration signs the copy
        meta = {**verify_artifact(source, key=None).meta, **meta}
    names = sorted(p.name for p in source.iterdir() if p.name != MANIFEST_NAME)
    for name in names:
        if not (source / name).is_file():
            raise RegistryError(f"{source / name} is not a plain file (model folders are flat)")

    def populate(folder: Path) -> None:
        for name in names:
            shutil.copyfile(source / name, folder / name)

    return populate, meta


def _sweep_temp_files(root: Path) -> None:
    """Drop temp files of alias/history writes killed before their rename (holder of the lock only)."""
    for name in ("champion.json", "history.json"):
        for tmp in root.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{path}: corrupt JSON ({exc}); it is only ever replaced atomically, "
                            f"so it was altered outside the registry") from exc


def _check_version(version: str) -> None:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise RegistryError(f"invalid version id {version!r} (letters, digits, '.', '_', '-'; "
                            f"no path separators)")


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
