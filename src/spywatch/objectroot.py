"""A root on object storage (``s3://bucket/prefix``), worked on through a local working copy.

Every module of the night works on local paths (:class:`spywatch.layout.RootLayout`): the store's
parquet, the registry's atomic renames, the publisher's journal and links. A root on object
storage keeps that code path whole. For one night (or one retrain) :func:`working_root`

1. takes the root's **lease** (:mod:`spywatch.lease`: a conditional-write lease object, the object
   storage's counterpart of the local ``flock``), so one writer at a time, on any machine;
2. **pulls** what a night reads into an empty local folder: the bar store, the registry's pointer
   and its champion (and the versions a rollback may need), the baseline cache, ``state/``,
   ``published/latest.json``, the cumulative ``predictions.parquet`` and the folders of the
   sessions the night may touch (tonight's, the latest published one);
3. yields that folder, where the night runs exactly as it does on a local root;
4. **pushes** what changed, in an order that keeps every reader safe whatever point a crash stops
   it at (:meth:`ObjectRoot.push`): new and changed content first (bars, model versions, cache,
   state, validation records), then each changed session's whole prefix
   ``published/sessions/<date>/``, then the registry's pointers (``history.json``,
   ``champion.json``), the cumulative table, and ``latest.json`` last: the one small pointer a
   poller follows, swapped in one PUT (an object write is atomic: readers see the old object or the
   new one). A crash before ``latest.json`` leaves readers on the previous session, complete; the
   next night pulls, finds what disagrees and repairs it (the publisher's consistency check),
   exactly as after a crash on a local root;
5. checks the lease is still held before the pointers are written, and releases it.

On object storage ``published/sessions/<date>/`` is a real prefix (there are no links); locally it
is a link to ``.runs/<date>.<run>/`` as always. A forced re-run of a published session rewrites
its prefix object by object before ``latest.json`` moves; the first publication of a session, the
nightly case, writes a new prefix.

What is never pushed: the local locks (the lease replaces them), the local Prefect home
(``prefect/``), ``state/serve.json`` (a local server's address) and the fleet's sub-roots (each
ticker is a root of its own, with its own lease). Endpoint and credentials come from the standard
AWS environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), as for any S3 client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMES = ("s3://",)
SCRATCH_ENV = "SPYWATCH_SCRATCH"  # where working copies go (default: the system's temp folder)
LEASE_TTL_ENV = "SPYWATCH_LEASE_TTL_S"  # the lease's time to live (default spywatch.lease.DEFAULT_TTL_S)

# Never pulled nor pushed: local-only files of a root (relative paths, or prefixes ending in "/").
LOCAL_ONLY = (".lock", ".lock.json", ".lease.json", "models/.lock", "state/serve.json", "prefect/", "tickers/",
              "fleet.html", "published/.runs/")
# Pushed after everything else, in this order: the pointers readers and the next night follow.
POINTERS = ("published/.journal.json", "models/history.json", "models/champion.json", "published/predictions.parquet",
            "published/latest.json", "state/last_run.json")


def is_object_root(root: object) -> bool:
    """Whether ``root`` (as a user typed it) names a root on object storage."""
    return isinstance(root, str) and root.startswith(SCHEMES)


def local_root_only(root: object, what: str) -> None:
    """Refuse a root on object storage where only a local one works (a ValueError naming why)."""
    if is_object_root(root):
        raise ValueError(f"{what} works on a local root, not {root!r}: object-storage roots are run by the "
                         f"nightly and nightly-fleet flows (spywatch run --root s3://...), retraining inline")


def join(url: str, *parts: str) -> str:
    """``url`` with ``parts`` appended (``s3://b/p``, ``tickers``, ``QQQ`` -> ``s3://b/p/tickers/QQQ``)."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


@dataclass(frozen=True)
class Snapshot:
    """The working copy's files as pulled (or as the night left them): relative path -> (size,
    mtime_ns) for regular files, and the sessions' links -> the folder each names."""

    files: dict[str, tuple[int, int]]
    links: dict[str, str]

    @classmethod
    def of(cls, local: Path) -> Snapshot:
        files, links = {}, {}
        for dirpath, dirnames, filenames in os.walk(local):
            base = Path(dirpath)
            for name in [*dirnames, *filenames]:
                path = base / name
                rel = path.relative_to(local).as_posix()
                if path.is_symlink():
                    links[rel] = os.readlink(path)
                elif name in filenames:
                    st = path.stat()
                    files[rel] = (st.st_size, st.st_mtime_ns)
            dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
        return cls(files, links)


@dataclass
class PushReport:
    """What one push wrote and removed (relative keys), with its cost."""

    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"pushed {len(self.uploaded)} object(s), {self.bytes / 1e6:.2f} MB, removed {len(self.deleted)}, "
                f"in {self.seconds:.1f} s")


@dataclass
class PullReport:
    downloaded: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return f"pulled {len(self.downloaded)} object(s), {self.bytes / 1e6:.2f} MB, in {self.seconds:.1f} s"


_NOT_PULLED = ("validation/", "backfill/")  # records a night writes but never reads
_PULLED_BY_NAME = ("models/versions/", "published/sessions/")  # only those the pointers name


def _read_local_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _local_only(rel: str) -> bool:
    return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in LOCAL_ONLY)


class ObjectRoot:
    """One root at ``url`` on object storage, reached through fsspec (s3fs for ``s3://``)."""

    def __init__(self, url: str, fs=None) -> None:  # noqa: ANN001 - an fsspec filesystem
        if not is_object_root(url):
            raise ValueError(f"not an object-storage root: {url!r} (expected s3://bucket/prefix)")
        self.url = url.rstrip("/")
        if fs is None:
            import fsspec

            fs = fsspec.filesystem(url.split("://", 1)[0])
        self.fs = fs
        self.path = self.url.split("://", 1)[1]  # bucket/prefix, as fsspec names keys

    def key(self, rel: str) -> str:
        return f"{self.path}/{rel}"

    def listing(self) -> dict[str, dict]:
        """Every object of the root (relative key -> fsspec's info), fleet sub-roots excluded."""
        self.fs.invalidate_cache(self.path)
        try:
            found = self.fs.find(self.path, detail=True)
        except FileNotFoundError:
            return {}
        out = {}
        for key, info in found.items():
            rel = key[len(self.path) + 1:]
            if rel and info.get("type", "file") == "file" and not rel.startswith("tickers/"):
                out[rel] = info
        return out

    def write_text(self, rel: str, text: str) -> str:
        """One object written whole (a single PUT: readers see the old or the new); returns its URL."""
        self.fs.pipe_file(self.key(rel), text.encode("utf-8"))
        return join(self.url, rel)

    def read_json(self, rel: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.key(rel)))
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ pull

    def pull(self, local: Path, sessions: tuple[str, ...] = ()) -> PullReport:
        """Download what a night reads into the empty folder ``local`` (see the module doc);
        ``sessions``: published sessions whose folders the night may read (tonight's)."""
        t0 = time.perf_counter()
        objects = self.listing()
        pulled = [r for r in objects if not _local_only(r) and not r.startswith(_NOT_PULLED)
                  and not r.startswith(_PULLED_BY_NAME)]
        self._get(local, pulled)  # first everything but the versions and session folders, pointers included
        # then, named by the pointers just pulled: the champion and its rollback versions, the
        # sessions the night may read (tonight's and the latest published one)
        champion = _read_local_json(local / "models" / "champion.json") or {}
        versions = {champion.get("version"), *(champion.get("previous") or [])} - {None}
        latest = _read_local_json(local / "published" / "latest.json") or {}
        wanted_sessions = {s for s in (*sessions, latest.get("session")) if s}
        named = [r for r in objects if r.startswith(_PULLED_BY_NAME)
                 and r.split("/")[2] in (versions if r.startswith("models/versions/") else wanted_sessions)]
        self._get(local, named)
        for session in sorted({r.split("/")[2] for r in named if r.startswith("published/sessions/")}):
            link = local / "published" / "sessions" / session
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../.runs/{session}.pulled", link)
        rels = sorted([*pulled, *named])
        return PullReport(downloaded=rels, bytes=sum(int(objects[r].get("size") or 0) for r in rels),
                          seconds=time.perf_counter() - t0)

    def _get(self, local: Path, rels: list[str]) -> None:
        """Download ``rels`` in one batch to their places in the working copy."""
        if not rels:
            return
        dests = [local / self._local_path(r) for r in rels]
        for d in {d.parent for d in dests}:
            d.mkdir(parents=True, exist_ok=True)
        self.fs.get([self.key(r) for r in rels], [str(d) for d in dests])

    @staticmethod
    def _local_path(rel: str) -> str:
        """Where an object lands in the working copy: a session's prefix under ``.runs/`` behind its link."""
        if rel.startswith("published/sessions/"):
            _, _, session, rest = rel.split("/", 3)
            return f"published/.runs/{session}.pulled/{rest}"
        return rel

    # ------------------------------------------------------------------ push

    def push(self, local: Path, before: Snapshot, still_held: Callable[[], None] = lambda: None) -> PushReport:
        """Upload what changed in ``local`` since ``before``, content first and pointers last (the
        module doc); ``still_held()`` raises when the lease was lost, checked before the pointers."""
        t0 = time.perf_counter()
        after = Snapshot.of(local)
        report = PushReport()

        def changed(rel: str) -> bool:
            return before.files.get(rel) != after.files[rel]

        plain = sorted(r for r in after.files if not r.startswith("published/.runs/") and not _local_only(r)
                       and r not in POINTERS and changed(r))
        self._upload(local, [(r, r) for r in plain], report)

        # each session whose link moved, or whose folder changed behind it: its whole prefix
        for link, target in sorted(after.links.items()):
            if not link.startswith("published/sessions/") or link.count("/") != 2:
                continue
            session = link.rsplit("/", 1)[1]
            folder = (Path(link).parent / target).as_posix()  # published/.runs/<date>.<run>
            folder = os.path.normpath(folder)
            inside = sorted(r for r in after.files if r.startswith(folder + "/"))
            moved = before.links.get(link) != target
            if not moved and not any(changed(r) for r in inside):
                continue
            pairs = [(r, f"published/sessions/{session}/{r[len(folder) + 1:]}") for r in inside]
            self._upload(local, pairs, report)
            fresh = {key for _, key in pairs}
            stale = [r for r in self._keys_under(f"published/sessions/{session}/") if r not in fresh]
            self._delete(stale, report)

        still_held()  # a lease lost mid-night: another writer may own the root now; move no pointer
        pointers = [r for r in POINTERS if r in after.files and changed(r)]
        self._upload(local, [(r, r) for r in pointers], report)
        gone = [r for r in before.files if r not in after.files and not r.startswith("published/.runs/")
                and not _local_only(r)]
        self._delete(sorted(gone), report)  # e.g. the journal, once its publication is complete
        report.seconds = time.perf_counter() - t0
        return report

    def _upload(self, local: Path, pairs: list[tuple[str, str]], report: PushReport) -> None:
        if not pairs:
            return
        self.fs.put([str(local / src) for src, _ in pairs], [self.key(dst) for _, dst in pairs])
        report.uploaded.extend(dst for _, dst in pairs)
        report.bytes += sum((local / src).stat().st_size for src, _ in pairs)
        _kill_point("push_" + ("pointers" if pairs[-1][1] in POINTERS else "content"))

    def _keys_under(self, prefix: str) -> list[str]:
        try:
            return [k[len(self.path) + 1:] for k in self.fs.find(self.key(prefix))]
        except FileNotFoundError:
            return []

    def _delete(self, rels: list[str], report: PushReport) -> None:
        if rels:
            self.fs.rm([self.key(r) for r in rels])
            report.deleted.extend(rels)


def _kill_point(point: str) -> None:
    """Test-only, as in :mod:`spywatch.publish`: ``SPYWATCH_KILL_AT=push_content`` kills this process
    after the first batch of content objects is written, before any pointer."""
    if os.environ.get("SPYWATCH_KILL_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class WorkingRoot:
    """A night's view of its root: ``local`` to work on; ``url`` when it is on object storage."""

    local: Path
    url: str | None = None
    took_over: dict | None = None  # the lease's last holder, when it died holding it and this run took over

    def public(self, path: Path | str) -> str:
        """Where a file of the working copy lives for readers: its object URL, or the path itself."""
        if self.url is None:
            return str(path)
        rel = Path(path).relative_to(self.local).as_posix()
        if rel.startswith("published/sessions/") or rel.startswith("published/.runs/"):
            parts = rel.split("/")
            if parts[1] == ".runs":  # .runs/<date>.<run>/file -> sessions/<date>/file
                parts = ["published", "sessions", parts[2].split(".", 1)[0], *parts[3:]]
            rel = "/".join(parts)
        return join(self.url, rel)


@contextlib.contextmanager
def working_root(root: str | Path, purpose: str = "nightly", sessions: tuple[str, ...] = (),
                 timeout_s: float | None = None, scratch: Path | None = None,
                 lease_ttl_s: float | None = None) -> Iterator[WorkingRoot]:
    """The root to work on for one night: a local root as it is (its lock is the night's own), or
    an object-storage root's working copy, leased, pulled and pushed (the module doc).

    The working copy is pushed when the block ends, normally or by an exception (a failed night
    publishes its failure audit and marks the predictions stale, as on a local root); a process
    killed inside the block pushes nothing and its lease expires."""
    if not is_object_root(root):
        yield WorkingRoot(Path(root).expanduser().resolve())
        return
    from spywatch.lease import root_lease

    remote = ObjectRoot(str(root))
    base = Path(scratch or os.environ.get(SCRATCH_ENV) or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    lease_ttl_s = lease_ttl_s or float(os.environ.get(LEASE_TTL_ENV) or 0) or None
    ttl = {} if lease_ttl_s is None else {"ttl_s": lease_ttl_s}
    with root_lease(remote.url, purpose, timeout_s=timeout_s, **ttl) as lease:
        local = Path(tempfile.mkdtemp(prefix="spywatch-root-", dir=base))
        try:
            pulled = remote.pull(local, sessions)
            log.info("%s: %s into %s", remote.url, pulled.line(), local)
            before = Snapshot.of(local)
            try:
                yield WorkingRoot(local, remote.url, getattr(lease, "took_over", None))
            finally:
                pushed = remote.push(local, before, still_held=_checker(lease))
                log.info("%s: %s", remote.url, pushed.line())
        finally:
            shutil.rmtree(local, ignore_errors=True)


def companion(root: Path | str) -> Path:
    """The local folder that goes with a root: the root itself, or for one on object storage this
    machine's cache folder for it (``$XDG_CACHE_HOME/spywatch/<bucket>/<prefix>``), where
    ``spywatch run`` keeps its local Prefect home (the run history stays on the machine that ran)."""
    if not is_object_root(root):
        return Path(root)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "spywatch" / str(root).split("://", 1)[1].strip("/")


def _checker(lease: object) -> Callable[[], None]:
    """The lease's own check when it has one (re-entry yields None: the outer holder checks)."""
    check = getattr(lease, "check", None)
    return check if callable(check) else (lambda: None)

