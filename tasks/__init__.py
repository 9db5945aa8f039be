"""Thin Prefect tasks: each is a decorator (retries, timeout, cache policy, tags, a run name from
the session date) and one call into ``spywatch``; they take and return values. All logic lives in
``src/spywatch``. Prefect is imported only here, in ``flows/``, and in ``spywatch.cli`` /
``spywatch.orchestration`` (``lint-imports`` keeps it so: ``docs/architecture.md``)."""
