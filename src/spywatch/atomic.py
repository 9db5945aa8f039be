"""Atomic file writes: a reader sees the old complete file or the new one, never a torn one.

Pattern: write a temp file in the target's directory, flush + fsync it, ``os.replace`` it over
the target, then fsync the directory so the rename itself survives a power cut.

Modes, one rule whatever the process umask: every folder spywatch creates under a root is 0755
and every file it writes 0644 (``make_dirs``, ``atomic_write``, ``make_readable``), so a web server
or a worker running as another user reads the store, the models and the published outputs.
Folders that already exist keep their mode (an operator's choice). The one exception is
``ROOT/prefect``, the local Prefect server's database and settings, left to the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Persist a rename inside ``path`` (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temp file over ``path`` atomically.

    ``write`` receives a path in the same directory (same filesystem, so the rename is atomic).
    On any exception the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600: published files are for every reader
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


# What every reader may read: a web server, a worker running as another user. Set explicitly,
# never through the process umask (changing it is process-wide and races with other threads).
FILE_MODE = 0o644
DIR_MODE = 0o755


def make_dirs(folder: Path) -> Path:
    """``mkdir -p`` with the folders it creates made 0755 whatever the umask (existing ones kept)."""
    folder = Path(folder)
    missing = []
    for p in (folder, *folder.parents):
        if p.is_dir():
            break
        missing.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    for p in missing:
        os.chmod(p, DIR_MODE)
    return folder


def make_readable(folder: Path) -> None:
    """``folder`` and everything under it: directories 0755, files 0644 (``mkdtemp`` makes 0700)."""
    folder = Path(folder)
    os.chmod(folder, DIR_MODE)
    for base, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(base, d), DIR_MODE)
        for f in files:
            path = os.path.join(base, f)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(obj: Any) -> bytes:
    """The one JSON form of everything spywatch writes: indented, sorted keys, trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n").encode("utf-8")


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json_bytes(obj))


def json_default(obj: Any) -> Any:
    """numpy scalars, dates, paths and sets appear in metrics, audits and summaries."""
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
