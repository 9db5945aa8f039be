"""``spywatch run``: the nightly pipeline once, end to end.

By default it runs the Prefect ``nightly`` flow (``flows/nightly.py`` of this checkout) against
a local Prefect server that it starts and stops itself (no server to start by hand): 127.0.0.1,
a free port, ``PREFECT_HOME=<root>/prefect``, so the run history (flow and task runs, artifacts,
events) stays with the outputs and the UI can show it later (``--ui`` keeps it up after the run).
With ``PREFECT_API_URL`` set, the run goes to that server instead. ``--no-prefect`` runs
``night.run_night`` directly, as plain Python: the same stages, failures and audit. The server,
the session and the flows come from ``spywatch.orchestration``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spywatch.cli.arguments import iso_date, root_spec, ticker_arg
from spywatch.layout import RootLayout

if TYPE_CHECKING:
    from spywatch.audit_schema import NightAudit
    from spywatch.orchestration.server import LocalServer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the nightly pipeline once (the Prefect flow, on a local server)")
    p.add_argument("--source", default="synthetic",
                   help="synthetic | synthetic:SEED | csv:PATH | yfinance | a fault spec (faulty:N:INNER, ...)")
    p.add_argument("--as-of", default=None, type=iso_date, help="session date to run for (default: the last settled session)")
    p.add_argument("--root", type=root_spec, default="workspace",
                   help="store, models and published outputs: a folder, or s3://bucket/prefix on object storage "
                        "(endpoint and credentials from the AWS environment)")
    p.add_argument("--ticker", default="SPY", type=ticker_arg, help="the symbol (a name rule: spywatch.names)")
    p.add_argument("--retrain", choices=("inline", "never", "one-pass"), default="inline",
                   help="inline: train here when the decision says so; never: only record the decision; "
                        "one-pass (a fleet): every ticker's challenger fitted together in one stacked model")
    p.add_argument("--force", action="store_true", help="redo a session that is already published")
    p.add_argument("--policy", default="default", choices=sorted(_policies()),
                   help="retrain, promotion and fit settings by name (default: %(default)s)")
    p.add_argument("--lock-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="wait this long for another run holding the root's lock, then exit 3 naming it "
                        "(default: %(default)s; 0: do not wait)")
    p.add_argument("--ui", action="store_true", help="keep the local Prefect server and its UI up after the run")
    p.add_argument("--no-prefect", action="store_true",
                   help="run the night as plain Python in this process, without Prefect")
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

    if args.retrain == "one-pass" and not (args.tickers or args.fleet):
        raise ValueError("--retrain one-pass fits a fleet's challengers together: give --tickers or --fleet")
    if isinstance(args.root, str):  # s3://bucket/prefix
        return _run_object_root(args, args.root)
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


def _run_object_root(args: argparse.Namespace, url: str) -> int:
    """A root on object storage: the command holds the root's lease (exit 3 naming its holder when
    another writer has it); the night works on a pulled copy and pushes it back, pointers last
    (``spywatch.objectroot``); the local Prefect home lives in this machine's cache for the root."""
    from spywatch import sessions
    from spywatch.lease import root_lease
    from spywatch.lock import RootLocked
    from spywatch.objectroot import working_root

    print(f"spywatch run: session {_session_line(args.as_of)}; root {url}", flush=True)
    if args.tickers or args.fleet:
        if args.no_prefect:
            raise ValueError("a fleet runs as the nightly-fleet flow on Dask; --no-prefect takes one ticker")
        _check_fleet(args)
        return _run_flow(args, url)
    session = sessions.settled_session(args.as_of).date().isoformat()
    try:
        with root_lease(url, "spywatch run", timeout_s=args.lock_timeout):
            if args.no_prefect:
                with working_root(url, "spywatch run", sessions=(session,)) as work:
                    return _run_plain(args, work.local)
            return _run_flow(args, url)
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
    print(f"session {session} is already published under {RootLayout(root).published} (--force redoes it)")
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

    logging.getLogger("spywatch.night").setLevel(logging.INFO)  # one line per stage: the night's story
    from spywatch.audit_schema import RunStatus
    from spywatch.night import PipelineConfig, run_night

    # retrain: run_night's default trains here when --retrain is inline, else only records the decision
    result = run_night(PipelineConfig.for_policy(args.policy, source=args.source, root=root, ticker=args.ticker,
                                                 as_of=args.as_of, retrain=args.retrain), force=args.force)
    if result.status == RunStatus.ALREADY_PUBLISHED:
        print(f"session {result.session} is already published under {RootLayout(root).published} (--force redoes it)")
        return 0
    print(result.summary())
    return 0 if result.ok else 1


# ----------------------------------------------------------------------------- with Prefect


def _run_flow(args: argparse.Namespace, root: Path | str) -> int:
    from spywatch.objectroot import companion
    from spywatch.orchestration.api import drain_events, prefect_session
    from spywatch.orchestration.checkout import load_flow

    t0 = time.perf_counter()
    with prefect_session(companion(root)) as server:
        t_ready = time.perf_counter()
        if args.tickers or args.fleet:
            nightly_fleet = load_flow("fleet", "nightly_fleet")
            tickers = [t.strip().upper() for t in args.tickers.split(",") if t.strip()] if args.tickers else None
            state = nightly_fleet(root=str(root), tickers=tickers, fleet_file=str(args.fleet) if args.fleet else None,
                                  as_of=args.as_of, source=args.source, policy=args.policy,
                                  retrain_mode=args.retrain, dask_address=args.dask_address, return_state=True)
        else:
            nightly = load_flow("nightly", "nightly")
            state = nightly(root=str(root), as_of=args.as_of, source=args.source, ticker=args.ticker,
                            retrain_mode=args.retrain, force=args.force, policy=args.policy, return_state=True)
        t_done = time.perf_counter()
        drain_events()
        if args.tickers or args.fleet:
            _report_fleet(state, root, t_ready - t0, t_done - t_ready)
        else:
            _report(state, root, server, t_ready - t0, t_done - t_ready, keep_ui=args.ui)
        return 0 if state.is_completed() else 1


def _report(state, root: Path | str, server: LocalServer | None, start_s: float, flow_s: float,  # noqa: ANN001
            keep_ui: bool) -> None:
    from spywatch.orchestration.server import prefect_command

    out = state.result(raise_on_failure=False) if state.is_completed() else None
    print()
    if isinstance(out, dict) and out.get("status") == "already_published":
        where = f"{root}/published" if isinstance(root, str) else RootLayout(root).published
        print(f"session {out['session']} is already published under {where} (--force redoes it)")
    elif isinstance(out, dict) and out.get("outputs"):
        print(_summary(out))
    else:
        print(f"spywatch nightly: {state.type.value}: {state.message}")
        failure = _failure_summary(root, str(state.state_details.flow_run_id)) if isinstance(root, Path) else None
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
              f"    PREFECT_HOME={server.home} {prefect_command()} server start --host 127.0.0.1 --port 4200\n"
              f"    then open http://127.0.0.1:4200/runs/flow-run/{run_id}   (or run with --ui)")


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _failure_summary(root: Path, run_id: str) -> str | None:
    """The failure audit this run published (bad data), if any: which checks failed."""
    from spywatch.night import NightlyResult
    from spywatch.publish import Publisher

    publisher = Publisher(root)
    for session in reversed(publisher.published_sessions()):
        folder = publisher.session_dir(session)
        attempt = publisher.layout.attempts(session) / run_id
        if attempt.is_dir():
            folder = attempt
        audit = _read_audit(folder / "audit.json")
        if audit.run_id == run_id:
            return NightlyResult(session=session, status=audit.status.value, audit=audit,
                                 outputs={"audit": folder / "audit.json", "report": folder / "report.html",
                                          "latest": publisher.latest_path}).summary()
    return None


def _report_fleet(state, root: Path | str, start_s: float, flow_s: float) -> None:  # noqa: ANN001
    from spywatch import fleet

    print()
    if not state.is_completed():
        print(f"spywatch nightly-fleet: {state.type.value}: {state.message}")
    if isinstance(root, str):  # on object storage: the page and each ticker's outputs are in the bucket
        print(f"  fleet page: {root}/fleet.html (each ticker under {root}/tickers/)")
        print(f"  wall time: {start_s + flow_s:.1f} s = Prefect start and imports {start_s:.1f} s + flow {flow_s:.1f} s")
        return
    rows = fleet.fleet_rows(root)
    print(fleet.summary_markdown(rows))
    print(f"  fleet page: {RootLayout(root).fleet_page}")
    print(f"  wall time: {start_s + flow_s:.1f} s = Prefect start and imports {start_s:.1f} s + flow {flow_s:.1f} s")


def _summary(out: dict) -> str:
    from spywatch.night import NightlyResult

    outputs = {name: path if "://" in path else Path(path) for name, path in out["outputs"].items()}
    audit = _read_audit(outputs["audit"])
    return NightlyResult(session=out["session"], status=out["status"], audit=audit, outputs=outputs).summary()


def _read_audit(path: Path) -> NightAudit:
    """An ``audit.json`` the run published, typed."""
    from spywatch.audit_schema import check_audit

    if isinstance(path, str):  # an object URL (a root on object storage)
        import fsspec

        with fsspec.open(path, "rb") as fh:
            return check_audit(json.loads(fh.read()))
    return check_audit(json.loads(path.read_text()))
