"""The folders and files of a spywatch root, named in one place.

A root holds one ticker's whole life; a fleet root holds one such root per ticker. Every module
reaches them through :class:`RootLayout`, so this is the tree::

    ROOT/
      bars/<TICKER>.parquet              the bar store (store.py), each beside <TICKER>.revisions.jsonl
      models/                            the model registry (registry.py: versions/, champion.json,
                                         history.json and its own .lock)
      published/                         what the nights publish (publish.py)
        sessions/<YYYY-MM-DD>            a link to .runs/<date>.<run_id>/, the session's outputs
          attempts/<run_id>/             failed re-runs of a published session: their audit
        .runs/                           the session folders behind the links
        predictions.parquet              every published session's predictions
        latest.json                      the poller's contract
        .journal.json                    a publication in progress
      state/
        last_run.json                    the last published night
        drift_history.json               the nights' drift verdicts
        retrain/<YYYY-MM-DD>.json        the outcome of a retrain run on the GPU pool
        serve.json                       a running ``spywatch serve`` (its URL), while it runs
      validation/                        one JSON record per validation suite run
      cache/baselines.npz                the Random Forest and logistic baselines of the champion
      backfill/                          a replay's record: policy.json, policy_steps.csv, policy.md,
                                         walk_forward.parquet
      prefect/                           the home of the local Prefect server (``spywatch run``)
      .lock, .lock.json                  the root's lock and its holder (lock.py)

    FLEET_ROOT/
      tickers/<TICKER>/                  one ROOT as above per ticker
      fleet.html                         the fleet's page

Paths are built from ``root`` as given; a caller converts what a user typed to a ``Path`` once,
where it enters (the CLI's arguments, a flow's parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spywatch import names


@dataclass(frozen=True)
class RootLayout:
    """The paths of one root (see the module docstring); names only, nothing is created or read."""

    root: Path

    def __post_init__(self) -> None:
        if not isinstance(self.root, Path):
            raise TypeError(f"root must be a pathlib.Path (convert it where it enters), "
                            f"got {type(self.root).__name__} {self.root!r}")

    # ------------------------------------------------------------------ data and models

    @property
    def bars(self) -> Path:
        return self.root / "bars"

    def bars_file(self, ticker: str) -> Path:
        return self.bars / f"{names.ticker(ticker)}.parquet"

    def revisions_file(self, ticker: str) -> Path:
        return self.bars / f"{names.ticker(ticker)}.revisions.jsonl"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def baselines(self) -> Path:
        return self.cache / "baselines.npz"

    # ------------------------------------------------------------------ published outputs

    @property
    def published(self) -> Path:
        return self.root / "published"

    @property
    def sessions(self) -> Path:
        return self.published / "sessions"

    def session(self, session: str) -> Path:
        """The link ``published/sessions/<session>`` (a date, ``YYYY-MM-DD``)."""
        return self.sessions / session

    def attempts(self, session: str) -> Path:
        """Where failed re-runs of a published session leave their audit, one folder per run id."""
        return self.session(session) / "attempts"

    @property
    def runs(self) -> Path:
        return self.published / ".runs"

    @property
    def predictions(self) -> Path:
        return self.published / "predictions.parquet"

    @property
    def latest(self) -> Path:
        return self.published / "latest.json"

    @property
    def journal(self) -> Path:
        return self.published / ".journal.json"

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def last_run(self) -> Path:
        return self.state / "last_run.json"

    @property
    def drift_history(self) -> Path:
        return self.state / "drift_history.json"

    def retrain_outcome(self, session: str) -> Path:
        return self.state / "retrain" / f"{session}.json"

    def fleet_retrain_outcome(self, request_id: str) -> Path:
        """A fleet root's one-pass retrain outcome, by the request (the nightly-fleet run) that asked."""
        return self.state / "fleet-retrain" / f"{names.run_id(request_id)}.json"

    @property
    def serve_record(self) -> Path:
        return self.state / "serve.json"

    # ------------------------------------------------------------------ runs around the night

    @property
    def backfill(self) -> Path:
        return self.root / "backfill"

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def lock_holder(self) -> Path:
        return self.root / ".lock.json"

    # ------------------------------------------------------------------ a fleet root

    @property
    def tickers(self) -> Path:
        return self.root / "tickers"

    def ticker_names(self) -> list[str]:
        """The tickers that have a root under ``tickers/`` (none when this is not a fleet root)."""
        return sorted(p.name for p in self.tickers.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if self.tickers.is_dir() else []

    def ticker(self, ticker: str) -> RootLayout:
        """The root of one ticker of a fleet (``BadName`` for a ticker that is not a plain symbol)."""
        return RootLayout(self.tickers / names.ticker(ticker))

    @property
    def fleet_page(self) -> Path:
        return self.root / "fleet.html"
