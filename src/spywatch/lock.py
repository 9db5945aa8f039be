"""One lock per root, held for a whole night (fetch to publish) by every entry point.

The primitive is ``flock(2)`` on ``<root>/.lock``: an advisory, whole-file lock that the kernel
releases when the holding process dies (SIGKILL, OOM, power cut of a worker), so a dead holder
never blocks the next night; no lease to expire, no PID to trust. Beside it, ``<root>/.lock.json``
names the holder (PID, host, command, since when) so that a refused run can say who has the root.
That file is information only: the lock is the ``flock``. A holder file that names a dead process
when the lock is free is a holder that died; the next run takes over and logs it.

Re-entrant within one process: the nightly flow holds the lock and its inline retrain subflow, a
backfill's replayed nights and the CLI that started the flow take it again without waiting on
themselves.

Limits (docs/operations.md): ``flock`` is local to one kernel unless the filesystem forwards it.
On NFSv4 Linux maps it to a byte-range lock the server arbitrates (works, but a client that loses
its lease loses the lock silently); on NFSv3 without lockd, CIFS mounted ``nobrl``, sshfs or some
FUSE filesystems it is local only, and two hosts can both "hold" it. Run every writer of a root
on one host, or put the root on a filesystem whose locks are shared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spywatch.atomic import FILE_MODE, make_dirs
from spywatch.layout import RootLayout

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0  # a night waits up to 10 minutes for the one before it to finish
_held: dict[Path, tuple[int, int]] = {}  # resolved root -> (fd, depth) held by this process
_guard = threading.Lock()


class RootLocked(RuntimeError):
    """Another process holds the root's lock and did not release it within the timeout."""

    def __init__(self, root: Path, holder: dict | None, waited_s: float) -> None:
        self.root, self.holder, self.waited_s = root, holder, waited_s
        super().__init__(f"root {root} is locked by {describe(holder)}; waited {waited_s:.0f} s "
                         f"(another spywatch run, backfill or deployment run is using it: let it finish)")


@dataclass(frozen=True)
class LockInfo:
    path: Path
    holder: dict
    took_over: dict | None  # the dead holder's record when this run took the lock over


def describe(holder: dict | None) -> str:
    if not holder:
        return "an unknown process (no holder record)"
    return (f"PID {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
            f"({holder.get('purpose')}: {holder.get('command')})")


def read_holder(root: Path) -> dict | None:
    try:
        return json.loads(RootLayout(root).lock_holder.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def root_lock(root: Path, purpose: str = "nightly", timeout_s: float | None = None,
              poll_s: float = 0.25) -> Iterator[LockInfo | None]:
    """Hold ``root``'s lock for the block; wait up to ``timeout_s`` (default ``DEFAULT_TIMEOUT_S``,
    0: do not wait) for another holder, then raise ``RootLocked`` naming it.

    Yields the holder record, or None when this process already held the lock (re-entry).
    """
    root = root.expanduser().resolve()
    with _guard:
        if root in _held:
            fd, depth = _held[root]
            _held[root] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield None
        finally:
            _release(root)
        return

    make_dirs(root)
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    fd = os.open(RootLayout(root).lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the mode rule, whatever the umask (spywatch.atomic)
    t0 = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - t0
                holder = read_holder(root)
                if waited >= timeout_s:
                    raise RootLocked(root, holder, waited) from None
                if not told:
                    print(f"spywatch: waiting up to {timeout_s:.0f} s for the lock on {root}, held by "
                          f"{describe(holder)}", file=sys.stderr, flush=True)
                    told = True
                time.sleep(poll_s)
    except BaseException:
        os.close(fd)
        raise
    previous = read_holder(root)
    took_over = None
    if previous and previous.get("held", True):
        took_over = previous  # the last holder never released: it died holding the lock
        log.warning("took over the lock on %s from a holder that died: %s", root, describe(previous))
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
              "command": " ".join(sys.argv)[:300],
              "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "held": True}
    try:
        _write_holder(root, holder)
    except BaseException:  # e.g. a full disk: release the lock, say so at the boundary (cli._dispatch)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise
    with _guard:
        _held[root] = (fd, 1)
    try:
        yield LockInfo(RootLayout(root).lock, holder, took_over)
    finally:
        _release(root)


def _release(root: Path) -> None:
    with _guard:
        fd, depth = _held[root]
        if depth > 1:
            _held[root] = (fd, depth - 1)
            return
        del _held[root]
    holder = read_holder(root) or {}
    if holder.get("pid") == os.getpid():
        _write_holder(root, {**holder, "held": False,
                             "released": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _write_holder(root: Path, holder: dict) -> None:
    from spywatch.atomic import atomic_write_json

    atomic_write_json(RootLayout(root).lock_holder, holder)


def holds(root: Path) -> bool:
    """Whether this process holds ``root``'s lock."""
    with _guard:
        return root.expanduser().resolve() in _held

