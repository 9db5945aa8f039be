"""Thin Prefect tasks: each is a decorator (retries, timeout, cache policy, tags, a run name from
the session date) and one call into ``spywatch``. All logic lives in ``src/spywatch``; only this
package and ``flows/`` import Prefect."""
