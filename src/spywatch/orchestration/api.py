"""The Prefect API a command's flows run against: the server at ``PREFECT_API_URL`` when it is set,
else a ``LocalServer`` under ``ROOT/prefect`` that the command starts and stops; the heavy imports
paid while that server boots; the run's events and last log lines delivered before it goes away."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from spywatch.orchestration.checkout import checkout_flows, load_flow
from spywatch.orchestration.server import LocalServer


@contextmanager
def prefect_session(root: Path) -> Iterator[LocalServer | None]:
    """What a command's flow runs against: the server at ``PREFECT_API_URL`` when it is set, else a
    local one under ``ROOT/prefect`` that this command starts and stops (yielded; None for the
    configured one). This checkout's ``flows/`` is importable inside; the run's events and last log
    lines are delivered before the server goes away."""
    checkout_flows()
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


def drain_events() -> None:
    """Deliver the run's events and last log lines before the server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=10)
    APILogWorker.drain_all(timeout=10)


def _local_settings(server: LocalServer | None) -> AbstractContextManager:
    """No flow-run heartbeats on the server this command starts: they exist so that the server can
    mark a run whose process died as crashed, and this server dies with the process. (Joining the
    heartbeat thread cost up to 1 s at the end of every run.) Against a real server they stay on."""
    if server is None:
        return nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


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

    from spywatch import sessions

    load_flow("nightly", "nightly")  # the tasks and spywatch.night
    sessions.nyse_sessions("2000-01-03", "2000-01-04")  # builds the XNYS calendar once
