"""The nightly pipeline as plain Python: each stage is one function call into its module."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spywatch import sessions
from spywatch.market_data import source_from_spec
from spywatch.store import ParquetStore, UpdateResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    source: str = "synthetic"
    root: Path = Path("workspace")
    ticker: str = "SPY"
    as_of: str | None = None  # None: the last settled NYSE session

    def session(self) -> pd.Timestamp:
        if self.as_of is None:
            return sessions.last_closed_session()
        return sessions.last_session_on_or_before(self.as_of)


@dataclass
class NightlyResult:
    session: dt.date
    ok: bool
    update: UpdateResult | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"spywatch nightly for session {self.session}: {'OK' if self.ok else 'FAILED'}"]
        if self.update is not None:
            u = self.update
            lines.append(f"  data: {u.source}{' (SYNTHETIC)' if u.synthetic else ''} {u.first_session}..{u.last_session}, "
                         f"{len(u.new_sessions)} new session(s), {len(u.revisions)} revision(s)")
        lines.extend(f"  {m}" for m in self.messages)
        lines.extend(f"  {name}: {path}" for name, path in self.outputs.items())
        return "\n".join(lines)


def run_nightly(config: PipelineConfig) -> NightlyResult:
    from spywatch.dataset import build_table

    session = config.session()
    source = source_from_spec(config.source)
    store = ParquetStore(config.root)
    update = store.update(config.ticker, source, session.date())
    bars = store.read(config.ticker).loc[:session]
    table = build_table(bars)
    result = NightlyResult(session=session.date(), ok=True, update=update)
    result.outputs["bars"] = update.path
    result.messages.append(f"features: {table.features.shape[1]} columns, last complete row "
                           f"{table.features.dropna().index[-1].date()}")
    return result
