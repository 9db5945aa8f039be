"""Model registry: immutable version folders, a ``champion`` alias, promotion through the gate
(``spywatch.promotion``), rollback.

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
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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
from spywatch.promotion import GateResult, ModelScore, PromotionPolicy, gate

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(ValueError):
    """A registry operation cannot proceed (unknown version, nothing to roll back, bad alias file).

    A ``ValueError`` so the CLI's boundary handler prints it as a one-line error.
    """


class NoChampionError(RegistryError):
    """No version has been promoted yet: the first nightly run must train one."""


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

    def __init__(self, root: Path) -> None:
        self.root = root  # a root's models/ (spywatch.layout), or any folder of its own

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
                _sweep_temp_files(self.champion_path, self.history_path)
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


def _sweep_temp_files(*paths: Path) -> None:
    """Drop temp files of alias/history writes killed before their rename (holder of the lock only)."""
    for path in paths:
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
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
