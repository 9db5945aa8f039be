"""The nightly audit as one self-contained HTML page a person would rather read than the JSON.

The page must open anywhere the audit folder is copied (an e-mail attachment, an archived run,
an offline laptop), so it loads nothing: CSS is inline, plots are inline SVG drawn from the
audit's own numbers, and no script runs. The only link is to the Evidently drift report, and it
must be relative so it travels with the run folder.

Python computes everything that needs arithmetic (verdicts, best-of-column, plot geometry) into
small view objects (``report.views``); ``templates/audit.html.j2`` only lays them out.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from spywatch.atomic import atomic_write_text
from spywatch.audit_schema import NightAudit
from spywatch.report.text import fmt, line_text, pct, readable, sig
from spywatch.report.views import audit_context

TEMPLATE = "audit.html.j2"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """Built on first render, not at import; autoescape because messages quote raw data."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=fmt, pct=pct, sig=sig, line=line_text,
                       readable=readable)
    return env


def render_audit_html(audit: NightAudit, drift_report_href: str | None = None) -> str:
    """The audit as a self-contained HTML page (inline CSS and SVG, no script, nothing fetched).

    Args:
        audit: one nightly run's audit (``check_audit`` reads a published ``audit.json``); any
            section may be None.
        drift_report_href: relative link to the Evidently drift report in the same run folder.
    """
    return _environment().get_template(TEMPLATE).render(**audit_context(audit, drift_report_href))


def write_audit_html(audit: NightAudit, path: Path, drift_report_href: str | None = None) -> Path:
    """Render and write atomically, so a reader never opens half a report."""
    return atomic_write_text(Path(path), render_audit_html(audit, drift_report_href))
