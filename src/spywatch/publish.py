"""Publishing per session date: complete, atomic, recoverable outputs.

Under ``root/published`` (the tree: :mod:`spywatch.layout`), each session's folder
``.runs/<date>.<run_id>/`` holds predictions.parquet, audit.json, report.html, drift.html,
drift.json and ``attempts/<run_id>/`` (failed re-runs of the session: their audit only), and
``sessions/<date>`` links to it. ``predictions.parquet`` has one row per session x horizon;
``latest.json`` is the poller's contract (:meth:`Publisher.latest_record`, typed as
:class:`spywatch.latest.LatestRecord`): the newest good session's ticker, probabilities with their
member spread, synthetic flag, model and report, or the last good one marked stale (why, since
when); paths relative to published/ (a moved or restored root works). ``.journal.json``
(:class:`Journal`) is present only between the steps of a publication.

Publishing a night is one recoverable unit (:meth:`Publisher.publish_night`): the journal names
the session and run first; the session's folder is built completely under a hidden name and
renamed into ``.runs/``; the ``sessions/<date>`` link is swapped to it with ``os.replace``; then
the cumulative table, ``latest.json`` and ``state/last_run.json`` follow; the journal goes last.
A crash before the folder's rename leaves nothing visible (the journal is dropped by the next
run); after it, the next run of any session rolls the publication forward from the folder
(:meth:`Publisher.recover`). Re-running a session replaces its link and its rows, never
duplicates them. A failed run never replaces a published session: its audit goes beside it.

Directories are 0755 and files 0644 whatever the umask: a web server or a worker running as
another user reads them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from spywatch.atomic import atomic_write, atomic_write_json, fsync_dir, make_dirs, make_readable
from spywatch.audit_schema import NightAudit, RunStatus, Stale, check_audit
from spywatch.latest import LATEST_FORMAT, LatestRecord
from spywatch.layout import RootLayout
from spywatch.text import cut

# Test-only: ``SPYWATCH_KILL_AT=<point>`` makes this process SIGKILL itself at that publishing
# step (tests/unit/test_publish_recovery.py proves a kill at each point is repaired).
KILL_POINTS = ("journal_written", "folder_renamed", "link_swapped", "rows_upserted", "latest_set", "last_run_set")


def _kill_point(point: str) -> None:
    if os.environ.get("SPYWATCH_KILL_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


# ``member_std``: the standard deviation of the ensemble members' probabilities (how much the
# seeds disagree about tonight); NaN in rows published before ensembles.
PREDICTION_COLUMNS = ("session", "horizon", "probability", "member_std", "model_version", "data_hash", "feature_hash",
                      "run_id", "synthetic")


@dataclass(frozen=True)
class Journal:
    """A publication in progress (``.journal.json``): the session, its run and folder under ``.runs/``."""

    session: str
    run_id: str
    folder: str
    model_version: str | None = None

    @classmethod
    def read(cls, path: Path) -> Journal | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def write(self, path: Path) -> Path:
        return atomic_write_json(path, asdict(self))


@dataclass(frozen=True)
class Publisher:
    root: Path
    layout: RootLayout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", RootLayout(self.root))  # a frozen field derived from root

    @property
    def latest_path(self) -> Path:
        return self.layout.latest

    @property
    def predictions_path(self) -> Path:
        return self.layout.predictions

    def session_dir(self, session: str) -> Path:
        return self.layout.session(session)

    # ----------------------------------------------------------------- one night, one unit

    def publish_night(self, session: str, run_id: str, model_version: str | None,
                      files: dict[str, bytes | Callable[[Path], None]],
                      populate: Callable[[Path], None] | None = None) -> Path:
        """Publish a good night: the session folder (with ``predictions.parquet`` among ``files``),
        its rows in the cumulative table, ``latest.json`` and ``state/last_run.json``, as one unit
        that a crash at any point leaves invisible or repairable by :meth:`recover`."""
        if "predictions.parquet" not in files:
            raise ValueError("a published night needs predictions.parquet")
        self.recover()
        Journal(session, run_id, self._run_name(session, run_id), model_version).write(self.layout.journal)
        _kill_point("journal_written")
        link = self.publish_session(session, run_id, files, populate)
        self._complete(session, run_id, model_version)
        return link

    def recover(self) -> list[str]:
        """Finish or drop a publication a crash interrupted; repair what disagrees. Returns what it did.

        Run under the root's lock (every night does, before it publishes anything)."""
        done = []
        for p in (self.layout.runs.glob(".*.tmp") if self.layout.runs.is_dir() else ()):
            shutil.rmtree(p, ignore_errors=True)  # a folder killed mid-build: never visible
            done.append(f"removed the partial folder {p.name}")
        for p in (self.layout.sessions.glob(".*.link") if self.layout.sessions.is_dir() else ()):
            p.unlink(missing_ok=True)
        journal = Journal.read(self.layout.journal)
        if journal is not None:
            folder = self.layout.runs / journal.folder
            if folder.is_dir():
                self._swap_link(journal.session, folder)
                self._complete(journal.session, journal.run_id, journal.model_version)
                done.append(f"finished the publication of {journal.session} (run {journal.run_id})")
            else:
                self.layout.journal.unlink(missing_ok=True)
                done.append(f"dropped the unfinished publication of {journal.session} (nothing was visible)")
        return done

    def repair(self, session: str, run_id: str, model_version: str | None) -> None:
        """Make the cumulative table, ``latest.json`` and ``last_run.json`` agree with a published
        session's folder (what :meth:`consistency` found wrong)."""
        self._complete(session, run_id, model_version)

    def _complete(self, session: str, run_id: str, model_version: str | None) -> None:
        """The steps after the commit point, each idempotent: rows, latest, last run, old folders."""
        folder = self.session_dir(session).resolve()
        rows = pd.read_parquet(folder / "predictions.parquet")
        self.upsert_predictions(rows)
        _kill_point("rows_upserted")
        latest = self.latest()
        # a re-run of an older session leaves the newer one latest; a record holding only a stale
        # mark (the root's first nights failed: no session yet) is replaced by the first good one
        if latest is None or latest.session is None or latest.session <= session:
            self.set_latest(session, run_id, model_version)
        _kill_point("latest_set")
        atomic_write_json(self.layout.last_run, {"session": session, "run_id": run_id, "status": "published"})
        _kill_point("last_run_set")
        for old in self.layout.runs.glob(f"{session}.*"):
            if old.is_dir() and old.resolve() != folder:
                shutil.rmtree(old, ignore_errors=True)
        self.layout.journal.unlink(missing_ok=True)
        fsync_dir(self.layout.published)

    def consistency(self, session: str) -> list[str]:
        """What disagrees about a published ``session`` (empty: folder, table and latest.json agree)."""
        try:
            audit = self.read_audit(session)
        except (OSError, ValueError):
            return [f"no readable audit in {self.session_dir(session)}"]
        if audit.status != RunStatus.PUBLISHED:
            return [f"the session's audit says {audit.status.value!r}"]
        problems = []
        if self.layout.journal.exists():
            problems.append("a publication was interrupted (journal present)")
        rows = self.read_predictions()
        mine = rows[rows["session"] == session] if len(rows) else rows
        folder_rows = pd.read_parquet(self.session_dir(session) / "predictions.parquet")
        if len(mine) != len(folder_rows) or set(mine["run_id"]) != {audit.run_id}:
            problems.append(f"predictions.parquet holds {len(mine)} row(s) of other runs "
                            f"{sorted(set(mine['run_id']))} for the session (folder: {len(folder_rows)} of run "
                            f"{audit.run_id})")
        latest = self.latest()
        if latest is None or latest.session is None or latest.session < session:
            problems.append(f"latest.json names {latest and latest.session}, older than the session")
        elif latest.session == session and latest.run_id != audit.run_id and not latest.stale:
            problems.append(f"latest.json names run {latest.run_id}, the folder run {audit.run_id}")
        if latest is not None and latest.stale and latest.failed_session == session:
            # a failed re-run of this very session marked it stale; its published folder is intact
            problems.append(f"latest.json marks the session stale ({cut(str(latest.reason))}), but its "
                            f"published outputs are intact")
        return problems

    # ----------------------------------------------------------------- writing

    @staticmethod
    def _run_name(session: str, run_id: str) -> str:
        return f"{session}.{run_id}"

    def publish_session(self, session: str, run_id: str, files: dict[str, bytes | Callable[[Path], None]],
                        populate: Callable[[Path], None] | None = None) -> Path:
        """Write ``files`` (and whatever ``populate(folder)`` writes) as the complete output set of
        ``session``, then swap it in atomically. Failed re-runs' audits (``attempts/``) move along."""
        make_dirs(self.layout.runs)
        make_dirs(self.layout.sessions)
        link = self.session_dir(session)
        previous = link.resolve() if link.is_symlink() else None
        attempts = self.layout.attempts(session)  # through the link: the previous folder's

        def fill(folder: Path) -> None:
            _write_files(folder, files, populate)
            if previous is not None and attempts.is_dir():
                shutil.copytree(attempts, folder / attempts.name)

        final = _build_folder(self.layout.runs / self._run_name(session, run_id), fill)
        _kill_point("folder_renamed")
        self._swap_link(session, final)  # the commit point
        _kill_point("link_swapped")
        if previous is not None and previous != final.resolve() and previous.exists():
            shutil.rmtree(previous, ignore_errors=True)
        return link

    def _swap_link(self, session: str, folder: Path) -> None:
        link = self.session_dir(session)
        if link.is_symlink() and link.resolve() == folder.resolve():
            return
        tmp_link = self.layout.sessions / f".{session}.{folder.name}.link"
        tmp_link.unlink(missing_ok=True)
        os.symlink(os.path.relpath(folder, self.layout.sessions), tmp_link)
        os.replace(tmp_link, link)
        fsync_dir(self.layout.sessions)

    def publish_attempt(self, session: str, run_id: str, files: dict[str, bytes]) -> Path:
        """A failed run of a session that is already published: its audit goes beside the
        published outputs (``sessions/<date>/attempts/<run_id>/``), which stay byte for byte."""
        attempts = self.layout.attempts(session)
        make_dirs(attempts)
        return _build_folder(attempts / run_id, lambda folder: _write_files(folder, files, None))

    def is_published(self, session: str) -> bool:
        """The session has published predictions (its folder's audit says so)."""
        try:
            return self.read_audit(session).status == RunStatus.PUBLISHED
        except (OSError, ValueError):
            return False

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
        return self.latest_record(session, run_id, model_version).write(self.latest_path)

    def latest_record(self, session: str, run_id: str, model_version: str | None) -> LatestRecord:
        """``latest.json`` for a published session, from its folder: what a poller reads.

        ``{"format": 1, "ticker", "session", "probabilities": {h: p}, "member_std": {h: s},
        "synthetic", "stale": false, "model_version", "run_id", "path", "report"}``; a failure
        later adds ``stale: true`` with ``reason``, ``stale_since``, ``stale_at`` (:meth:`mark_stale`).
        """
        folder = self.session_dir(session)
        rows = pd.read_parquet(folder / "predictions.parquet").set_index("horizon")
        try:
            ticker = self.read_audit(session).ticker
        except (OSError, ValueError):
            ticker = None
        spread = rows["member_std"] if "member_std" in rows else pd.Series(dtype="float64")
        return LatestRecord(format=LATEST_FORMAT, ticker=ticker or "SPY", session=session,
                            probabilities={h: round(float(p), 6) for h, p in rows["probability"].items()},
                            member_std={h: round(float(s), 6) for h, s in spread.items() if s == s},
                            synthetic=bool(rows["synthetic"].any()) if "synthetic" in rows else False,
                            stale=False, model_version=model_version, run_id=run_id,
                            path=f"sessions/{session}", report=f"sessions/{session}/report.html")

    def mark_stale(self, failed_session: str, reason: str, run_id: str | None = None) -> Stale:
        """Keep the last good predictions in place and say, loudly, that they are stale: why, since
        which session and when. A failure of a session older than the latest good one (a re-run of
        the past) does not make today's predictions stale. Returns the mark (the audit's ``stale``)."""
        latest = self.latest()
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        last_good = latest.session if latest else None
        if last_good is not None and last_good > failed_session:
            return Stale(stale=False, reason=reason, failed_session=failed_session, last_good_session=last_good,
                         note="a past session failed; the latest predictions are newer and stay current")
        since = latest.stale_since if latest and latest.stale else None
        stale = Stale(stale=True, stale_since=since or failed_session, reason=reason, failed_session=failed_session,
                      failed_run=run_id, stale_at=latest.stale_at if since else now, last_good_session=last_good)
        (latest or LatestRecord()).marked(stale).write(self.latest_path)
        return stale

    # ----------------------------------------------------------------- reading

    def latest(self) -> LatestRecord | None:
        """``latest.json``, typed; None before anything was published or marked stale."""
        return LatestRecord.read(self.latest_path)

    def read_audit(self, session: str) -> NightAudit:
        """The session's published audit, typed (``audit_schema.check_audit``: ``AuditSchemaError``,
        a ValueError, names what does not follow the schema)."""
        return check_audit(json.loads((self.session_dir(session) / "audit.json").read_text()))

    def published_sessions(self) -> list[str]:
        if not self.layout.sessions.is_dir():
            return []
        return sorted(p.name for p in self.layout.sessions.iterdir() if p.is_symlink() and not p.name.startswith("."))


def _build_folder(final: Path, fill: Callable[[Path], None]) -> Path:
    """``fill`` a hidden temp folder beside ``final``, make it readable, fsync it, rename it to
    ``final`` (replacing a folder of the same name) and persist the rename. On any error the temp
    folder is removed and ``final`` is untouched."""
    build = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        fill(build)
        make_readable(build)
        _fsync_tree(build)
        if final.exists():
            shutil.rmtree(final)
        os.rename(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    return final


def _write_files(folder: Path, files: dict[str, bytes | Callable[[Path], None]],
                 populate: Callable[[Path], None] | None) -> None:
    for name, source in files.items():
        target = folder / name
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            source(target)
    if populate is not None:
        populate(folder)


def _fsync_tree(folder: Path) -> None:
    for base, _dirs, names in os.walk(folder):
        for name in names:
            with open(os.path.join(base, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(base))
