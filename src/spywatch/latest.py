"""``latest.json``, the poller's contract (format 1), as a typed record.

:meth:`spywatch.publish.Publisher.latest_record` makes it from a published session's folder; a
failed night keeps it and adds its stale mark (:meth:`LatestRecord.marked`); the publisher, the
fleet and the CLI read it back with :meth:`LatestRecord.read`. The fields are documented in
docs/operations.md. A record keeps exactly the keys it was made or read with, so that reading and
writing it again leaves the file byte for byte: a record written by an older spywatch has fewer
keys, and one written when a night failed before anything was published holds the mark alone (no
``session``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from spywatch.atomic import atomic_write_json
from spywatch.audit_schema import Stale

LATEST_FORMAT = 1  # latest.json's own version: a poller can check it


class LatestRecord(BaseModel):
    """The newest good session and what it predicts, or the last good one marked stale."""

    model_config = ConfigDict(extra="forbid")

    format: int | None = None
    ticker: str | None = None
    session: str | None = None  # the newest good session; None in a record that holds only a stale mark
    probabilities: dict[str, float] = {}  # P(+1% within h) per horizon
    # ``member_std``: the standard deviation of the ensemble members' probabilities (how much the
    # seeds disagree about tonight); a horizon without one (published before ensembles) is left out
    member_std: dict[str, float] = {}
    synthetic: bool = False
    stale: bool = False
    model_version: str | None = None
    run_id: str | None = None
    path: str | None = None  # the session's folder, relative to published/
    report: str | None = None  # its report, relative to published/
    # the stale mark (``audit_schema.Stale`` without its note): why, since which session, since when
    reason: str | None = None
    failed_session: str | None = None
    failed_run: str | None = None
    stale_since: str | None = None
    stale_at: str | None = None
    last_good_session: str | None = None

    @classmethod
    def read(cls, path: Path) -> LatestRecord | None:
        """The record at ``path``; None when there is none (a ValueError names what does not fit)."""
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def write(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_json_dict())

    def to_json_dict(self) -> dict[str, Any]:
        """The keys the record was made or read with (latest.json's bytes do not change on a rewrite)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def marked(self, stale: Stale) -> LatestRecord:
        """This record with ``stale``'s fields set (a failed night's mark)."""
        return LatestRecord.model_validate({**self.to_json_dict(), **stale.model_dump(mode="json", exclude_unset=True)})
