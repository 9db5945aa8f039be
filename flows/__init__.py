"""Prefect flows of spywatch: ``nightly`` (one night: ``spywatch.night.run_night`` with each stage
as a task), ``retrain`` (a challenger trained and gated, on the GPU pool when deployed),
``backfill`` (``spywatch.backfill.run_backfill`` with each replayed night as a task), and
``nightly-fleet`` / ``backfill-fleet`` (one per ticker on a Dask cluster). Deployments are in
``prefect.yaml``; ``spywatch run`` loads them through ``spywatch.orchestration.checkout``."""
