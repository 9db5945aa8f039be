"""Model artifacts: one folder written and read as a unit.

A folder is built under a hidden temp name beside its destination, every file is written and
fsynced, a ``manifest.json`` records the SHA-256 and size of each file, and only then is the
folder renamed into place. A reader therefore sees no folder or a complete one; a kill mid-build
leaves only a hidden ``.<name>.*.tmp`` folder that :func:`sweep_partial` removes later.

On load, :func:`verify_artifact` recomputes every checksum, so a truncated, corrupted, missing or
smuggled-in file is refused with the file named instead of being fed to ``torch.load``.
No torch here: the trainer passes bytes or writer callables.

Checksums beside the files they check guard against accidents (a truncated copy, a flipped bit, a
half-written folder), not against someone who can write the folder: they can recompute the
manifest too. Authenticity needs a secret: with ``SPYWATCH_SIGNING_KEY`` set, every manifest is
signed when it is written (``signature``: HMAC-SHA256 over the manifest's canonical JSON, which
holds every file's SHA-256), and a folder whose signature is missing or does not match is refused
(:class:`ArtifactError`) wherever it is verified: the night's champion, a promotion,
``spywatch models list --verify``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spywatch.atomic import fsync_dir, make_dirs, make_readable, sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_TMP_SUFFIX = ".tmp"
# Flat folders with plain names: no sub-folders, no hidden files, nothing a shell would mangle.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

FileSource = bytes | Callable[[Path], None]
SIGNING_KEY_ENV = "SPYWATCH_SIGNING_KEY"
SIGNING_KEY_BLOCK = "spywatch-signing-key"  # where deployments keep it: a Prefect Secret block
MIN_KEY_LENGTH = 16
_SIGNATURE_PREFIX = "hmac-sha256:"


class _FromEnvironment:
    """The default of a ``key`` argument: read ``SPYWATCH_SIGNING_KEY`` when called."""


FROM_ENV = _FromEnvironment()


class ArtifactError(ValueError):
    """An artifact folder is missing, incomplete or altered.

    A ``ValueError`` so the CLI's boundary handler prints it as a one-line error.
    """


@dataclass(frozen=True)
class FileEntry:
    """One file of an artifact as recorded at write time."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """What an artifact folder must contain, byte for byte."""

    format_version: int
    created_at: str
    files: tuple[FileEntry, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    signature: str | None = None  # "hmac-sha256:<hex>" when written with a signing key

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)

    @property
    def digest(self) -> str:
        """SHA-256 over the (name, sha256) pairs: identifies the content, not the write time."""
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f.name):
            h.update(f"{f.name}\0{f.sha256}\n".encode())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        d = {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "files": {f.name: {"sha256": f.sha256, "size": f.size} for f in self.files},
            "meta": dict(self.meta),
        }
        return {**d, "signature": self.signature} if self.signature else d

    def signed_with(self, key: bytes) -> str:
        """The signature of this manifest under ``key`` (its canonical JSON, without the signature)."""
        unsigned = {k: v for k, v in self.to_dict().items() if k != "signature"}
        body = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
        return _SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: Path) -> Manifest:
        """Parse a manifest, naming ``source`` in any error."""
        try:
            files = tuple(
                FileEntry(name=str(name), sha256=str(e["sha256"]), size=int(e["size"]))
                for name, e in sorted(d["files"].items())
            )
            signature = d.get("signature")
            manifest = cls(format_version=int(d["format_version"]), created_at=str(d["created_at"]),
                           files=files, meta=dict(d.get("meta", {})),
                           signature=None if signature is None else str(signature))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise ArtifactError(f"{source}: unsupported artifact format_version {manifest.format_version} "
                                f"(this code reads {FORMAT_VERSION})")
        return manifest


@dataclass(frozen=True)
class StagedArtifact:
    """A complete, fsynced artifact under a hidden temp name, not yet visible to readers."""

    path: Path
    manifest: Manifest


# --------------------------------------------------------------------------- writing

def write_artifact(dest: Path, files: Mapping[str, FileSource], meta: Mapping[str, Any]) -> Path:
    """Write ``files`` (name -> bytes, or a callable that writes the given path) as a folder ``dest``.

    Raises ``ArtifactError`` if ``dest`` already exists: artifacts are immutable, never overwritten.
    """
    _refuse_existing(dest)
    for name in files:
        _check_name(name)

    def populate(folder: Path) -> None:
        for name, source in files.items():
            target = folder / name
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                source(target)
            if not target.is_file():
                raise ArtifactError(f"writer for {name!r} did not create {target}")

    staged = stage_artifact(dest.parent, populate, meta, expected=tuple(files))
    return commit_artifact(staged, dest)


def stage_artifact(parent: Path, populate: Callable[[Path], None], meta: Mapping[str, Any],
                   expected: tuple[str, ...] | None = None,
                   key: bytes | None | _FromEnvironment = FROM_ENV) -> StagedArtifact:
    """Build an artifact in a hidden temp folder inside ``parent`` and write its manifest, signed
    with ``key`` (default: ``SPYWATCH_SIGNING_KEY``, when set).

    ``populate(folder)`` writes the files. With ``expected``, any other file it leaves is an error
    (a stray file would otherwise become part of the artifact silently). The temp folder is
    removed if anything fails.
    """
    key = signing_key() if isinstance(key, _FromEnvironment) else key
    meta_json = _meta_json(meta)
    make_dirs(parent)
    tmp = Path(tempfile.mkdtemp(prefix=".artifact.", suffix=_TMP_SUFFIX, dir=parent))
    try:
        populate(tmp)
        names = _listed_files(tmp)
        if expected is not None and sorted(expected) != names:
            raise ArtifactError(f"artifact files {names} differ from the expected {sorted(expected)}")
        if not names:
            raise ArtifactError("an artifact needs at least one file")
        entries = tuple(_fsynced_entry(tmp / name) for name in names)
        manifest = Manifest(format_version=FORMAT_VERSION, created_at=_utc_now(), files=entries,
                            meta=json.loads(meta_json))
        if key is not None:
            manifest = replace(manifest, signature=manifest.signed_with(key))
        _write_synced(tmp / MANIFEST_NAME,
                      (json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        make_readable(tmp)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedArtifact(path=tmp, manifest=manifest)


def commit_artifact(staged: StagedArtifact, dest: Path) -> Path:
    """Rename a staged folder to ``dest`` (same filesystem, so atomic) and persist the rename.

    ``dest`` is checked just before the rename: POSIX ``rename`` would silently replace an empty
    folder, and an existing artifact must never be replaced.
    """
    if staged.path.parent.resolve() != dest.parent.resolve():
        raise ArtifactError(f"staged {staged.path} must be beside {dest} for an atomic rename")
    try:
        _refuse_existing(dest)
        os.rename(staged.path, dest)
    except BaseException:
        shutil.rmtree(staged.path, ignore_errors=True)
        raise
    fsync_dir(dest.parent)
    return dest


def sweep_partial(parent: Path) -> list[Path]:
    """Remove temp folders left by a writer that was killed mid-build; returns what was removed.

    Call only while no other writer is building in ``parent`` (the registry holds its lock).
    """
    if not parent.is_dir():
        return []
    removed = []
    for p in parent.iterdir():
        if p.is_dir() and p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# --------------------------------------------------------------------------- reading

def read_manifest(folder: Path) -> Manifest:
    """Parse ``folder/manifest.json`` without checking the files (cheap; for listings)."""
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder {folder} does not exist")
    if not path.is_file():
        raise ArtifactError(f"{folder}: missing {MANIFEST_NAME}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: malformed manifest (not a JSON object)")
    return Manifest.from_dict(data, path)


def verify_artifact(folder: Path, required: tuple[str, ...] = (),
                    key: bytes | None | _FromEnvironment = FROM_ENV) -> Manifest:
    """Check the signature of ``folder``'s manifest (with ``key``, default ``SPYWATCH_SIGNING_KEY``
    when set), recompute every checksum and return the manifest.

    Raises ``ArtifactError`` naming the file when one is missing, truncated or grown, altered,
    present but unlisted, or when a ``required`` name is not in the manifest at all; and, with a
    key, when the signature is missing or does not match.
    """
    manifest = read_manifest(folder)
    check_signature(folder, manifest, signing_key() if isinstance(key, _FromEnvironment) else key)
    for name in required:
        if name not in manifest.names:
            raise ArtifactError(f"{folder}: required file {name} is not listed in the manifest")
    for entry in manifest.files:
        _verify_entry(folder, entry)
    unlisted = sorted(set(_listed_files(folder, include_hidden=True)) - set(manifest.names))
    if unlisted:
        raise ArtifactError(f"{folder}: unlisted file(s) {', '.join(unlisted)} not in the manifest")
    return manifest


def check_signature(folder: Path, manifest: Manifest, key: bytes | None) -> None:
    """Refuse a manifest that is unsigned or signed otherwise when a key is given (no key: nothing
    to check: the checksums guard against accidents only)."""
    if key is None:
        return
    if not manifest.signature:
        raise ArtifactError(f"{folder}: unsigned ({SIGNING_KEY_ENV} is set, and every model version must carry "
                            f"the signature of its manifest): refused")
    if not hmac.compare_digest(manifest.signature, manifest.signed_with(key)):
        raise ArtifactError(f"{folder}: the manifest's signature does not match (altered after it was signed, or "
                            f"signed with another key): refused")


def signing_key() -> bytes | None:
    """``SPYWATCH_SIGNING_KEY`` as bytes, or None when it is not set (``ValueError`` when too short)."""
    value = os.environ.get(SIGNING_KEY_ENV, "")
    if not value:
        return None
    if len(value) < MIN_KEY_LENGTH:
        raise ValueError(f"{SIGNING_KEY_ENV} has {len(value)} characters; a key needs at least {MIN_KEY_LENGTH} "
                         f"(e.g. `openssl rand -hex 32`)")
    return value.encode()


def _verify_entry(folder: Path, entry: FileEntry) -> None:
    path = folder / entry.name
    if not path.is_file():
        raise ArtifactError(f"{folder}: missing file {entry.name}")
    size = path.stat().st_size
    if size != entry.size:
        what = "truncated" if size < entry.size else "grown"
        raise ArtifactError(f"{folder}: file {entry.name} is {what}: {size} bytes, manifest says {entry.size}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ArtifactError(f"{folder}: file {entry.name} fails its checksum (sha256 {digest[:12]}..., "
                            f"manifest {entry.sha256[:12]}...): altered after it was written")


# --------------------------------------------------------------------------- helpers

def _listed_files(folder: Path, include_hidden: bool = False) -> list[str]:
    """Names of the artifact's own entries (everything but the manifest), sorted."""
    names = []
    for p in folder.iterdir():
        if p.name == MANIFEST_NAME:
            continue
        if p.name.startswith(".") and not include_hidden:
            raise ArtifactError(f"hidden file {p.name} in artifact {folder}")
        if not p.is_file() or p.is_symlink():
            raise ArtifactError(f"{folder}: {p.name} is not a plain file (artifacts are flat folders)")
        names.append(p.name)
    return sorted(names)


def _check_name(name: str) -> None:
    if name == MANIFEST_NAME or not _FILE_NAME.match(name):
        raise ArtifactError(f"invalid artifact file name {name!r} (plain names only, not {MANIFEST_NAME})")


def _refuse_existing(dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise ArtifactError(f"{dest} already exists; artifacts are immutable and never overwritten")


def _fsynced_entry(path: Path) -> FileEntry:
    _check_name(path.name)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    return FileEntry(name=path.name, sha256=sha256_file(path), size=path.stat().st_size)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _meta_json(meta: Mapping[str, Any]) -> str:
    """Fail before any file is written if ``meta`` cannot go into the manifest."""
    try:
        return json.dumps(dict(meta), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"artifact meta is not JSON serialisable: {exc}") from exc


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
