"""``spywatch run``: the nightly pipeline once, end to end.

By default it runs the Prefect ``nightly`` flow (``flows/nightly.py`` of this checkout) against
a local Prefect server that it starts and stops itself (no server to start by hand): 127.0.0.1,
a free port, ``PREFECT_HOME=<root>/prefect``, so the run history (flow and task runs, artifacts,
events) stays with the outputs and the UI can show it later (``--ui`` keeps it up after the run).
With ``PREFECT_API_URL`` set, the run goes to that server instead. ``--no-prefect`` runs
``pipeline.run_night`` directly, as plain Python: the same stages, failures and audit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from spywatch.cli import iso_date, root_dir, ticker_arg

    p = sub.add_parser("run", help="run the nightly pipeline once (the Prefect flow, on a local server)")
    p.add_argument("--source", default="synthetic",
                   help="synthetic | synthetic:SEED | csv:PATH | yfinance | a fault spec (faulty:N:INNER, ...)")
    p.add_argument("--as-of", default=None, type=iso_date, help="session date to run for (default: the last settled session)")
    p.add_argument("--root", type=root_dir, default="workspace", help="store, models and published outputs")
    p.add_argument("--ticker", default="SPY", type=ticker_arg, help="the symbol (a name rule: spywatch.names)")
    p.add_argument("--retrain", choices=("inline", "never"), default="inline",
                   help="inline: train here when the decision says so; never: only record the decision")
    p.add_argument("--force", action="store_true", help="redo a session that is already published")
    p.add_argument("--policy", default="default", choices=sorted(_policies()),
                   help="retrain, promotion and fit settings by name (default: %(default)s)")
    p.add_argument("--lock-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="wait this long for another run holding the root's lock, then exit 3 naming it "
                        "(default: %(default)s; 0: do not wait)")
    p.add_argument("--ui", action="store_true", help="keep the local Prefect server and its UI up after the run")
    p.add_argument("--no-prefect", action="store_true", help="run pipeline.run_night directly, without Prefect")
    fleet = p.add_mutually_exclusive_group()
    fleet.add_argument("--tickers", default=None, metavar="A,B,...",
                       help="a fleet: one night per ticker, each on ROOT/tickers/<TICKER>, fanned out on a Dask "
                            "LocalCluster (the nightly-fleet flow); e.g. --source csv-dir:DIR")
    fleet.add_argument("--fleet", type=Path, default=None, help="a fleet file (fleet.yaml) instead of --tickers")
    p.add_argument("--dask-address", default=None, help="with a fleet: an existing Dask scheduler (tcp://host:8786)")
    p.set_defaults(func=_run, skip_teardown=True)


def _policies() -> list[str]:
    from spywatch.policy import POLICIES

    return list(POLICIES)


EXIT_LOCKED = 3


def _run(args: argparse.Namespace) -> int:
    from spywatch.lock import RootLocked, root_lock

    root = args.root.expanduser().resolve()
    print(f"spywatch run: session {_session_line(args.as_of)}; root {root}", flush=True)
    if args.tickers or args.fleet:
        if args.no_prefect:
            raise ValueError("a fleet runs as the nightly-fleet flow on Dask; --no-prefect takes one ticker")
        _check_fleet(args)  # a bad fleet is a usage error before Prefect starts (exit 2, nothing written)
        return _run_flow(args, root)  # each ticker's night takes its own root's lock
    if not args.force and _already_published(root, args.as_of):
        return 0
    try:
        # The whole command holds the root's lock (the flow inside takes it again, re-entrantly):
        # a second run on this root waits here, before it starts a server on the same database.
        with root_lock(root, "spywatch run", timeout_s=args.lock_timeout):
            if args.no_prefect:
                return _run_plain(args, root)
            return _run_flow(args, root)
    except RootLocked as exc:
        print(f"spywatch run: {exc}", file=sys.stderr)
        return EXIT_LOCKED


def _already_published(root: Path, as_of: str | None) -> bool:
    """Say so at once, without starting Prefect, when the session is published and consistent
    (the night would find the same and do nothing); anything to repair goes through the night."""
    from spywatch import sessions
    from spywatch.publish import Publisher

    session = sessions.settled_session(as_of).date().isoformat()
    publisher = Publisher(root)
    if not publisher.is_published(session) or publisher.consistency(session):
        return False
    print(f"session {session} is already published under {root / 'published'} (--force redoes it)")
    return True


def _check_fleet(args: argparse.Namespace) -> None:
    """Parse the fleet as the flow will (``FleetError``, a ValueError: exit 2)."""
    from spywatch import fleet

    if args.fleet:
        fleet.load_fleet(args.fleet)
    else:
        fleet.fleet_of([t.strip().upper() for t in args.tickers.split(",") if t.strip()], args.source, args.policy)


def _session_line(as_of: str | None) -> str:
    """The session this run is for, and why (the flow resolves it the same way)."""
    from spywatch import sessions

    resolved = sessions.settled_session(as_of).date().isoformat()  # a later date: UnsettledSession, exit 2
    if as_of is None:
        return f"{resolved} (the last settled NYSE session)"
    return resolved if resolved == as_of else f"{resolved} (the last NYSE session on or before --as-of {as_of})"


def _run_plain(args: argparse.Namespace, root: Path) -> int:
    import logging

    logging.getLogger("spywatch.pipeline").setLevel(logging.INFO)  # one line per stage: the night's story
    from spywatch.pipeline import PipelineConfig, RunStatus, retrain_inline, run_night

    result = run_night(PipelineConfig.for_policy(args.policy, source=args.source, root=root, ticker=args.ticker,
                                                 as_of=args.as_of, retrain=args.retrain), force=args.force,
                       retrain=None if args.retrain == "never" else retrain_inline)
    if result.status == RunStatus.ALREADY_PUBLISHED:
        print(f"session {result.session} is already published under {root / 'published'} (--force redoes it)")
        return 0
    print(result.summary())
    return 0 if result.ok else 1


# ----------------------------------------------------------------------------- with Prefect


def project_root() -> Path:
    """The checkout holding ``flows/`` and ``prefect.yaml`` (``spywatch`` is installed from ``src/``)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "flows" / "nightly.py").exists() and (parent / "prefect.yaml").exists():
            return parent
    raise FileNotFoundError(f"no flows/nightly.py above {here}: run from a checkout, or use --no-prefect")


@contextmanager
def prefect_session(root: Path) -> Iterator[LocalServer | None]:
    """What a command's flow runs against: the server at ``PREFECT_API_URL`` when it is set, else a
    local one under ``ROOT/prefect`` that this command starts and stops (yielded; None for the
    configured one). This checkout's ``flows/`` is importable inside; the run's events and last log
    lines are delivered before the server goes away."""
    repo = project_root()
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    server = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so `finally` stops the server
    if not os.environ.get("PREFECT_API_URL"):
        # Started before Prefect is imported here (its settings come from the environment); it
        # boots in its own process while this one does the heavy imports.
        server = LocalServer.start(root / "prefect")
    try:
        _preload_without_gc()
        if server is not None:
            server.wait_healthy()
        with _local_settings(server):
            yield server
        drain_events()
    finally:
        if server is not None:
            server.stop()


def _run_flow(args: argparse.Namespace, root: Path) -> int:
    t0 = time.perf_counter()
    with prefect_session(root) as server:
        t_ready = time.perf_counter()
        if args.tickers or args.fleet:
            from flows.fleet import nightly_fleet

            tickers = [t.strip().upper() for t in args.tickers.split(",") if t.strip()] if args.tickers else None
            state = nightly_fleet(root=str(root), tickers=tickers, fleet_file=str(args.fleet) if args.fleet else None,
                                  as_of=args.as_of, source=args.source, policy=args.policy,
                                  retrain_mode=args.retrain, dask_address=args.dask_address, return_state=True)
        else:
            from flows.nightly import nightly

            state = nightly(root=str(root), as_of=args.as_of, source=args.source, ticker=args.ticker,
                            retrain_mode=args.retrain, force=args.force, policy=args.policy, return_state=True)
        t_done = time.perf_counter()
        drain_events()
        if args.tickers or args.fleet:
            _report_fleet(state, root, t_ready - t0, t_done - t_ready)
        else:
            _report(state, root, server, t_ready - t0, t_done - t_ready, keep_ui=args.ui)
        return 0 if state.is_completed() else 1


def _local_settings(server: LocalServer | None):  # noqa: ANN202 (a context manager)
    """No flow-run heartbeats on the server this command starts: they exist so that the server can
    mark a run whose process died as crashed, and this server dies with the process. (Joining the
    heartbeat thread cost up to 1 s at the end of every run.) Against a real server they stay on."""
    from contextlib import nullcontext

    if server is None:
        return nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _report(state, root: Path, server: LocalServer | None, start_s: float, flow_s: float, keep_ui: bool) -> None:  # noqa: ANN001
    out = state.result(raise_on_failure=False) if state.is_completed() else None
    print()
    if isinstance(out, dict) and out.get("status") == "already_published":
        print(f"session {out['session']} is already published under {root / 'published'} (--force redoes it)")
    elif isinstance(out, dict) and out.get("outputs"):
        print(_summary(out))
    else:
        print(f"spywatch nightly: {state.type.value}: {state.message}")
        failure = _failure_summary(root, str(state.state_details.flow_run_id))
        if failure:
            print(failure)
    print(f"  wall time: {start_s + flow_s:.1f} s = Prefect start and imports {start_s:.1f} s + flow {flow_s:.1f} s")
    run_id = state.state_details.flow_run_id
    ui = os.environ["PREFECT_API_URL"].rstrip("/").removesuffix("/api")
    if server is None:
        print(f"  Prefect UI: {ui}/runs/flow-run/{run_id}")
    elif keep_ui:
        print(f"  Prefect UI: {ui}/runs/flow-run/{run_id}  (the server stays up until Ctrl-C)")
        _wait_for_interrupt()
    else:
        print(f"  Prefect run history: {server.home} (the local server has stopped). To browse it:\n"
              f"    PREFECT_HOME={server.home} {_prefect_command()} server start --host 127.0.0.1 --port 4200\n"
              f"    then open http://127.0.0.1:4200/runs/flow-run/{run_id}   (or run with --ui)")


def _prefect_command() -> str:
    """``prefect`` as this shell can run it: the one beside this interpreter (``.venv/bin/prefect``),
    relative to the current directory when it is under it."""
    prefect = Path(sys.executable).with_name("prefect").absolute()
    try:
        return str(prefect.relative_to(Path.cwd()))
    except ValueError:
        return str(prefect)


def prefect_cli() -> list[str]:
    """The ``prefect`` command of this interpreter: the script beside it (``.venv/bin/prefect``),
    else ``python -m prefect`` (Prefect installed with ``pip --target`` brings no script there)."""
    script = Path(sys.executable).with_name("prefect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


class LocalServer:
    """``prefect server start`` on a free 127.0.0.1 port with a project-local PREFECT_HOME, stopped
    by its PID (its process group) when the run is over."""

    def __init__(self, proc: subprocess.Popen, url: str, home: Path, log: Path) -> None:
        self.proc, self.url, self.home, self.log = proc, url, home, log

    @classmethod
    def start(cls, home: Path) -> LocalServer:
        home.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/api"
        os.environ.update({"PREFECT_HOME": str(home), "PREFECT_API_URL": url,
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
        log = home / "server.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen([*prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                                     "--no-scheduler", "--no-late-runs", "--analytics-off"],
                                    env=os.environ.copy(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(proc, url, home, log)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s; see {self.log}")

    STOPPED = b"Server stopped!"  # printed by `prefect server start` once uvicorn has returned

    def stop(self, timeout: float = 10.0) -> None:
        """A graceful stop (SIGINT: uvicorn's shutdown, the services stop, pending events are
        persisted), then SIGKILL for the interpreter's own teardown (~1 s of freeing modules) once
        the server has said it stopped; SIGKILL as well if it has not stopped within ``timeout``."""
        if self.proc.poll() is not None:
            return
        offset = self.log.stat().st_size if self.log.exists() else 0
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self.STOPPED in self._log_since(offset):
                    break
                time.sleep(0.02)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5.0)
        except ProcessLookupError:
            return

    def _log_since(self, offset: int) -> bytes:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return b""


def _preload_without_gc() -> None:
    """``_preload`` with the cyclic garbage collector off. The imports leave about a million
    objects tracked by the collector, of which it would free some 16 thousand (1.5 %), and its
    full collections walk all of them again as they pile up (measured on 2 cores, the same imports
    in alternating pairs: 7.9-10.9 s with the collector off, 9.5-12.7 s with it on; one full
    collection afterwards takes 0.9 s). ``gc.freeze`` then moves them out of the collector's way
    for the rest of the night, and the collector is back on for what the flow allocates."""
    import gc

    gc.disable()
    try:
        _preload()
    finally:
        gc.freeze()
        gc.enable()


def _preload() -> None:
    """What the stages import lazily (GX, Evidently, torch, scikit-learn, the NYSE calendar), paid
    here while the server boots in its own process, instead of inside the tasks one by one."""
    import evidently  # noqa: F401
    import evidently.metrics  # noqa: F401
    import great_expectations  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch  # noqa: F401

    import flows.nightly  # noqa: F401  (the tasks and spywatch.pipeline)
    from spywatch import sessions

    sessions.nyse_sessions("2000-01-03", "2000-01-04")  # builds the XNYS calendar once


def drain_events() -> None:
    """Deliver the run's events and last log lines before the server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=10)
    APILogWorker.drain_all(timeout=10)


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _failure_summary(root: Path, run_id: str) -> str | None:
    """The failure audit this run published (bad data), if any: which checks failed."""
    from spywatch.pipeline import NightlyResult
    from spywatch.publish import Publisher

    publisher = Publisher(root)
    for session in reversed(publisher.published_sessions()):
        folder = publisher.session_dir(session)
        attempt = folder / "attempts" / run_id
        if attempt.is_dir():
            folder = attempt
        audit = json.loads((folder / "audit.json").read_text())
        if audit.get("run_id") == run_id:
            return NightlyResult(session=session, status=audit["status"], audit=audit,
                                 outputs={"audit": folder / "audit.json", "report": folder / "report.html",
                                          "latest": publisher.latest_path}).summary()
    return None


def _report_fleet(state, root: Path, start_s: float, flow_s: float) -> None:  # noqa: ANN001
    from spywatch import fleet

    print()
    if not state.is_completed():
        print(f"spywatch nightly-fleet: {state.type.value}: {state.message}")
    rows = fleet.fleet_rows(root)
    print(fleet.summary_markdown(rows))
    print(f"  fleet page: {fleet.page_path(root)}")
    print(f"  wall time: {start_s + flow_s:.1f} s = Prefect start and imports {start_s:.1f} s + flow {flow_s:.1f} s")


def _summary(out: dict) -> str:
    from spywatch.pipeline import NightlyResult

    outputs = {name: Path(path) for name, path in out["outputs"].items()}
    audit = json.loads(outputs["audit"].read_text())
    return NightlyResult(session=out["session"], status=out["status"], audit=audit, outputs=outputs).summary()
