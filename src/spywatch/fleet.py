"""The fleet: many tickers, each a root of its own, one night each.

Layout (:class:`spywatch.layout.RootLayout`): a fleet root holds one complete spywatch root per
ticker, ``ROOT/tickers/<TICKER>/`` (its bar store, its registry and champion alias, its drift
history, its published outputs and its lock), so nights of different tickers never share a file
and run in parallel; the fleet's page is ``ROOT/fleet.html``. Alerts carry the ticker in their resource id (``spywatch.model.<TICKER>``).

A fleet file (``fleet.yaml``) lists the tickers and per-ticker overrides::

    source: csv-dir:data/etf     # default for every ticker
    policy: default
    tickers:
      - QQQ
      - ticker: TLT
        source: yfinance                   # an override for this ticker

Every error names the ticker and the key.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spywatch import names
from spywatch.layout import RootLayout
from spywatch.text import cut

TICKER_KEYS = {"ticker", "source", "policy"}
FLEET_KEYS = {"source", "policy", "tickers"}
FLEET_DEFAULTS = {"source": "yfinance", "policy": "default", "tickers": None}  # what a fleet file may leave out
PUBLISHED = ("published", "already_published")  # the statuses of a ticker whose night went well


@dataclass(frozen=True)
class TickerSpec:
    ticker: str
    source: str
    policy: str


@dataclass(frozen=True)
class Fleet:
    tickers: tuple[TickerSpec, ...]
    source: str = "yfinance"
    policy: str = "default"
    path: Path | None = field(default=None, compare=False)

    @property
    def names(self) -> list[str]:
        return [t.ticker for t in self.tickers]

    def spec(self, ticker: str) -> TickerSpec:
        for t in self.tickers:
            if t.ticker == ticker:
                return t
        raise ValueError(f"ticker {ticker!r} is not in the fleet ({', '.join(self.names)})")


class FleetError(ValueError):
    """A fleet file that cannot be used: the message names the ticker and the key."""


def parse_fleet(doc: Any, where: str = "fleet") -> Fleet:
    """Validate a parsed fleet document (see the module doc)."""
    from spywatch.policy import POLICIES
    from spywatch.sources import source_from_spec

    if not isinstance(doc, dict):
        raise FleetError(f"{where}: expected a mapping with 'tickers', got {type(doc).__name__}")
    unknown = sorted(set(doc) - FLEET_KEYS)
    if unknown:
        raise FleetError(f"{where}: unknown key(s) {unknown}; expected {sorted(FLEET_KEYS)}")
    doc = {**FLEET_DEFAULTS, **doc}
    default_source, default_policy, raw = doc["source"], doc["policy"], doc["tickers"]
    if not isinstance(raw, list) or not raw:
        raise FleetError(f"{where}: 'tickers' must be a non-empty list")
    specs, seen = [], set()
    for i, item in enumerate(raw):
        entry = {"ticker": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise FleetError(f"{where}: tickers[{i}] must be a ticker or a mapping with 'ticker'")
        entry = {"ticker": None, "source": default_source, "policy": default_policy, **entry}
        name = entry["ticker"]
        label = f"{where}: ticker {name!r}" if name else f"{where}: tickers[{i}]"
        if not isinstance(name, str) or not names.TICKER.match(name):
            raise FleetError(f"{cut(label)}: key 'ticker' must be an upper-case symbol like SPY or BRK.B")
        bad = sorted(set(entry) - TICKER_KEYS)
        if bad:
            raise FleetError(f"{label}: unknown key(s) {bad}; expected {sorted(TICKER_KEYS)}")
        if name in seen:
            raise FleetError(f"{label}: listed twice")
        seen.add(name)
        source, policy = entry["source"], entry["policy"]
        try:
            source_from_spec(str(source))
        except ValueError as exc:
            raise FleetError(f"{label}: key 'source': {exc}") from None
        if policy not in POLICIES:
            raise FleetError(f"{label}: key 'policy': {policy!r} is not one of {sorted(POLICIES)}")
        specs.append(TickerSpec(name, str(source), str(policy)))
    return Fleet(tuple(specs), str(default_source), str(default_policy))


def load_fleet(path: Path | str) -> Fleet:
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML ({cut(str(exc))})") from None
    fleet = parse_fleet(doc, str(path))
    return Fleet(fleet.tickers, fleet.source, fleet.policy, path)


def fleet_of(tickers: list[str], source: str, policy: str = "default") -> Fleet:
    """A fleet from a ticker list (``spywatch run --tickers``), validated like a file."""
    return parse_fleet({"source": source, "policy": policy, "tickers": list(tickers)}, "--tickers")


# ----------------------------------------------------------------------------- status and page


@dataclass(frozen=True)
class FleetRow:
    """One ticker's line of the fleet: the page, the summary and ``spywatch fleet status`` read it."""

    ticker: str
    session: str | None
    status: str  # a RunStatus value, "never run", or "error" (a ticker's task crashed)
    failure: str | None = None  # the failure's kind
    failure_reason: str | None = None
    stale: bool = False  # latest.json marks the ticker's predictions stale
    data: str | None = None  # "first..last, N new"
    validation: str | None = None  # the badges of the session's report
    drift: str | None = None
    health: str | None = None
    decision: str | None = None
    model_version: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)  # rounded to 3 places
    report: str | None = None  # the session's report and drift report, relative to the fleet root
    drift_report: str | None = None

    @property
    def published(self) -> bool:
        return self.status in PUBLISHED

    def to_dict(self) -> dict[str, Any]:
        """The row as ``spywatch fleet status --json`` prints it."""
        return asdict(self)


def ticker_row(root: Path, ticker: str, session: str | None = None, status: str | None = None,
               ticker_root: Path | None = None) -> FleetRow:
    """One ticker's line of the fleet: tonight's ``session`` and ``status`` when the caller ran
    the night, else what the ticker's root has published; the verdicts from the session's audit.
    ``ticker_root``: where the ticker's root is read when not at ``ROOT/tickers/<T>`` (the working
    copy of a root on object storage)."""
    from spywatch.publish import Publisher
    from spywatch.report.views import decision_badge, drift_badge, health_badge, validation_badge

    troot = RootLayout(ticker_root) if ticker_root is not None else RootLayout(root).ticker(ticker)
    publisher = Publisher(troot.root)
    latest = publisher.latest() if troot.published.exists() else None
    known = [d for d in (latest.session, latest.failed_session) if d] if latest else []
    session = session or (max(known) if known else None)
    audit = None
    if session:
        try:
            audit = publisher.read_audit(session)
        except (OSError, ValueError):
            audit = None
    outputs = troot.session(str(session))
    folder = RootLayout(Path()).ticker(ticker).session(str(session))  # the same, relative to the fleet root
    row = FleetRow(ticker, session, status or "never run", stale=latest is not None and latest.stale,
                   report=str(folder / "report.html") if session and (outputs / "report.html").exists() else None,
                   drift_report=str(folder / "drift.html") if session and (outputs / "drift.html").exists() else None)
    if audit is None:
        return row
    data, failure, predictions = audit.data, audit.failure, audit.predictions
    return replace(row, status=status or audit.status.value,
                   failure=failure.kind.value if failure else None, failure_reason=failure.reason if failure else None,
                   data=f"{data.first_session}..{data.last_session}, {data.new_sessions} new" if data else None,
                   validation=validation_badge(audit.validation).value, drift=drift_badge(audit.drift).value,
                   health=health_badge(audit.collapse, audit.vs_baseline).value,
                   decision=decision_badge(audit.decision, audit.retrain).value, model_version=audit.model_version,
                   probabilities={h: round(v, 3) for h, v in predictions.probabilities().items()} if predictions else {})


def fleet_rows(root: Path, tickers: list[str] | None = None) -> list[FleetRow]:
    if tickers is None:
        tickers = RootLayout(root).ticker_names()
    return [ticker_row(root, t) for t in tickers]


def render_page(rows: list[FleetRow], title: str = "spywatch fleet") -> str:
    """The fleet's page: one row per ticker, links relative to the fleet root (self-contained)."""
    esc = lambda v: html.escape("—" if v in (None, "", {}) else str(v))  # noqa: E731
    body = []
    for r in rows:
        probs = ", ".join(f"{h} {v:.3f}" for h, v in r.probabilities.items()) or None
        links = " ".join(f'<a href="{html.escape(href)}">{name}</a>' for name, href in
                         (("audit", r.report), ("drift", r.drift_report)) if href)
        status = r.status + (f" ({r.failure})" if r.failure else "") + (" · stale" if r.stale else "")
        why = f'<div class="why">{esc(r.failure_reason)}</div>' if r.failure else ""
        body.append(f'<tr class="{"ok" if r.published else "bad"}"><td><b>{esc(r.ticker)}</b></td>'
                    f'<td>{esc(r.session)}</td><td>{esc(status)}{why}</td><td>{esc(r.data)}</td>'
                    f'<td>{esc(r.validation)}</td><td>{esc(r.drift)}</td><td>{esc(r.health)}</td>'
                    f'<td>{esc(r.decision)}</td><td>{esc(probs)}</td><td>{links or "—"}</td></tr>')
    failed = [r.ticker for r in rows if not r.published]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    summary = (f"{len(rows) - len(failed)} of {len(rows)} tickers published"
               + (f"; failed: {', '.join(failed)}" if failed else ""))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2433; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d8dde6; padding: 6px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f5f9; }}
tr.ok td:first-child {{ border-left: 4px solid #2e9e5b; }}
tr.bad td:first-child {{ border-left: 4px solid #c0392b; }}
.summary {{ margin: 8px 0 16px; font-weight: 600; }}
.why {{ color: #8a2a1f; font-size: 12.5px; max-width: 36em; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="summary">{esc(summary)}</p>
<p>written {esc(now)}</p>
<table><thead><tr><th>ticker</th><th>session</th><th>status</th><th>data</th><th>validation</th><th>drift</th>
<th>health</th><th>decision</th><th>P(+1% within h)</th><th>reports</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""


def write_page(root: Path, rows: list[FleetRow]) -> Path:
    from spywatch.atomic import atomic_write_text

    return atomic_write_text(RootLayout(root).fleet_page, render_page(rows))


def summary_markdown(rows: list[FleetRow]) -> str:
    """The fleet's table in markdown (the flow's artifact, ``spywatch run --tickers``), failures' reasons below."""
    failed = [r for r in rows if not r.published]
    lines = [f"# Fleet: {len(rows) - len(failed)} of {len(rows)} tickers published"
             + (f", **{len(failed)} failed**: {', '.join(r.ticker for r in failed)}" if failed else ""), "",
             "| ticker | session | status | validation | drift | health | decision | P(h1) | P(h3) | P(h5) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r.probabilities
        lines.append(f"| {r.ticker} | {r.session or '—'} | {r.status}"
                     + (f" ({r.failure})" if r.failure else "")
                     + f" | {r.validation or '—'} | {r.drift or '—'} | {r.health or '—'} | "
                     f"{r.decision or '—'} | " + " | ".join(f"{p[h]:.3f}" if h in p else "—" for h in ("h1", "h3", "h5"))
                     + " |")
    whys = [f"- **{r.ticker}** `{r.failure}`: {r.failure_reason}" for r in rows if r.failure]
    return "\n".join(lines + ([""] + whys if whys else [])) + "\n"
