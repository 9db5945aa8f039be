"""Prefect flows of spywatch: ``nightly``, ``retrain``, ``backfill``. They read like the pipeline and
call only ``tasks/``; deployments are in ``prefect.yaml``."""
