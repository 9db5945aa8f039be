"""The nightly audit for people: the HTML page, the Prefect run page and the words both use.

Import from the module that holds what you need; this file imports nothing, so the night's
monitoring can take ``metrics`` and the alerts ``text`` without loading jinja or the views.

- ``metrics``: ROC and reliability points, stored in the audit for the plots (numpy only).
- ``text``: numbers and sentences as people read them (fmt, pct, sig, readable, drift_detail...).
- ``charts``: the plots as pixel geometry (``Chart``), drawn as inline SVG by the template.
- ``tables``: the rows: models against each other, drift tests, input shifts, timings, failures.
- ``views``: the verdict badges, the panels and ``audit_context``, everything the page shows.
- ``render``: the jinja environment, ``render_audit_html`` and ``write_audit_html``.
- ``run_page``: the same verdicts laid out as markdown and tables for the Prefect UI.
"""
