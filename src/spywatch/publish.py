"""Publishing per session date: complete, atomic, idempotent outputs.

Layout under ``root/published``::

    sessions/<YYYY-MM-DD>        a symlink to .runs/<YYYY-MM-DD>.<run_id>: the session's outputs
    .runs/<date>.<run_id>/       predictions.parquet, audit.json, report.html, drift.html, drift.json
    predictions.parquet          every published session's predictions (one row per session x horizon)
    latest.json                  the newest good session, or the last good one marked stale

A session's folder is built completely under a hidden name, then the ``sessions/<date>`` link is
swapped to it with ``os.replace`` (atomic): a reader sees the old complete set of files or the
new one, never a mix. Re-running a session replaces its link and its rows, never duplicates them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spywatch.atomic import atomic_write, atomic_write_json, fsync_dir

# ``member_std``: the standard deviation of the ensemble members' probabilities (how much the
# seeds disagree about tonight); NaN in rows published before ensembles.
PREDICTION_COLUMNS = ("session", "horizon", "probability", "member_std", "model_version", "data_hash", "feature_hash",
                      "run_id", "synthetic")


@dataclass(frozen=True)
class Publisher:
    root: Path

    @property
    def base(self) -> Path:
        return Path(self.root) / "published"

    @property
    def runs(self) -> Path:
        return self.base / ".runs"

    @property
    def sessions(self) -> Path:
        return self.base / "sessions"

    @property
    def latest_path(self) -> Path:
        return self.base / "latest.json"

    @property
    def predictions_path(self) -> Path:
        return self.base / "predictions.parquet"

    def session_dir(self, session: str) -> Path:
        return self.sessions / session

    # ----------------------------------------------------------------- writing

    def publish_session(self, session: str, run_id: str, files: dict[str, bytes | Callable[[Path], None]],
                        populate: Callable[[Path], None] | None = None) -> Path:
        """Write ``files`` (and whatever ``populate(folder)`` writes) as the complete output set of
        ``session``, then swap it in atomically."""
        self.runs.mkdir(parents=True, exist_ok=True)
        self.sessions.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{session}.", suffix=".tmp", dir=self.runs))
        try:
            for name, source in files.items():
                target = build / name
                if isinstance(source, bytes):
                    target.write_bytes(source)
                else:
                    source(target)
            if populate is not None:
                populate(build)
            for target in build.iterdir():
                with open(target, "rb") as fh:
                    os.fsync(fh.fileno())
            fsync_dir(build)
            final = self.runs / f"{session}.{run_id}"
            if final.exists():
                shutil.rmtree(final)
            os.rename(build, final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        fsync_dir(self.runs)
        link = self.session_dir(session)
        previous = link.resolve() if link.is_symlink() else None
        tmp_link = self.sessions / f".{session}.{run_id}.link"
        tmp_link.unlink(missing_ok=True)
        os.symlink(os.path.relpath(final, self.sessions), tmp_link)
        os.replace(tmp_link, link)  # the commit point
        fsync_dir(self.sessions)
        if previous is not None and previous != final.resolve() and previous.exists():
            shutil.rmtree(previous, ignore_errors=True)
        return link

    def upsert_predictions(self, rows: pd.DataFrame) -> Path:
        """Replace the rows of the sessions in ``rows`` in the cumulative predictions file."""
        missing = [c for c in PREDICTION_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"prediction rows lack column(s) {missing}")
        current = self.read_predictions()
        if len(current):
            current = current[~current["session"].isin(set(rows["session"]))]
        new = rows.loc[:, list(PREDICTION_COLUMNS)]
        merged = pd.concat([current, new], ignore_index=True) if len(current) else new.copy()
        merged = merged.sort_values(["session", "horizon"]).reset_index(drop=True)
        return atomic_write(self.predictions_path, lambda tmp: merged.to_parquet(tmp, index=False))

    def read_predictions(self) -> pd.DataFrame:
        if not self.predictions_path.exists():
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        return pd.read_parquet(self.predictions_path)

    def set_latest(self, session: str, run_id: str, model_version: str | None) -> Path:
        return atomic_write_json(self.latest_path, {"session": session, "run_id": run_id,
                                                    "model_version": model_version, "stale": False,
                                                    "path": str(self.session_dir(session))})

    def mark_stale(self, failed_session: str, reason: str) -> dict:
        """Keep the last good predictions in place and say, loudly, that they are stale."""
        latest = self.latest()
        stale = {"stale": True, "stale_since": failed_session, "reason": reason,
                 "last_good_session": latest.get("session") if latest else None}
        atomic_write_json(self.latest_path, {**(latest or {}), **stale})
        return stale

    # ----------------------------------------------------------------- reading

    def latest(self) -> dict | None:
        if not self.latest_path.exists():
            return None
        return json.loads(self.latest_path.read_text())

    def read_audit(self, session: str) -> dict:
        return json.loads((self.session_dir(session) / "audit.json").read_text())

    def published_sessions(self) -> list[str]:
        if not self.sessions.is_dir():
            return []
        return sorted(p.name for p in self.sessions.iterdir() if p.is_symlink() and not p.name.startswith("."))
