"""The same 13-ticker fleet night with its root on a local disk and on object storage (S3).

One Prefect server (``prefect server start``, SQLite) and one ``moto_server`` (moto's real S3
endpoint over HTTP, on 127.0.0.1) are started by this script for the whole run. The fleet root is
either a local folder or ``s3://<fresh bucket>/fleet`` (``spywatch.objectroot``: each ticker's
night leases its prefix, pulls a working copy into its Dask worker's own scratch folder, runs and
pushes back, pointers last). Four fleet nights, in this order:

1. night A (2024-12-30, ``retrain_mode="inline"``): the first night, every ticker trains its
   first champion (the tests' small model), on the local root, then on the S3 root;
2. night B (2024-12-31, ``retrain_mode="never"``): the steady-state nightly cost, nothing trained,
   on the same roots (continuing from night A).

Each night runs on a fresh standing Dask cluster (``dask scheduler`` and two ``dask worker``
processes, one thread each, ``OMP_NUM_THREADS=1``, each with its own scratch folder: the shape
an S3 root is meant for, and the same for both roots), started before the night's clock starts
and stopped after it. Recorded per night: the fleet flow's wall time, its state, how many tickers
published (read back from each ticker's ``audit.json`` of the session, on either root), and what
the root holds afterwards (local: regular files and bytes under the fleet root, ``prefect/``
excluded, links counted apart; S3: objects and bytes in the bucket).

For the S3 nights, the requests: moto_server prints one access-log line per HTTP request
(``"PUT /bucket/key HTTP/1.1" 200``); the lines written between a night's start and end (by byte
offset in its log) are counted by verb (GET, PUT, HEAD, LIST = a GET with ``list-type``, DELETE =
DELETE or a batch ``POST ?delete``) and attributed to a ticker by the key or the listed prefix
(``fleet/tickers/<T>/...``; a batch delete names no key and stays unattributed). Bytes and
seconds of each ticker's pull and push are the ones ``spywatch.objectroot`` logs at INFO
("pulled N object(s), X MB, in S s" / "pushed N object(s), X MB, removed K, in S s": bytes are the
objects' sizes, to 10 kB; seconds to 0.1 s), read from the Dask workers' logs
(``DASK_LOGGING__SPYWATCH=info``). The lease's own small writes (create, renew every 20 s, release)
are counted as requests, not as bytes.

    nice -n 10 .venv/bin/python bench/fleet_s3.py [--tickers 13] [--workers 2] [--keep]
    # about 10-15 minutes on 2 cores; results: bench/results/fleet_s3.{json,md}
    .venv/bin/python bench/fleet_s3.py --report bench/results/fleet_s3.json   # re-render the .md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

TICKERS = ["SPY", "QQQ", "IWM", "DIA", "EFA", "EEM", "TLT", "GLD", "XLK", "XLF", "XLE", "XLV", "XLU"]
NIGHTS = [("A", "2024-12-30", "inline"), ("B", "2024-12-31", "never")]
PREFIX = "fleet"  # the S3 fleet root: s3://<bucket>/fleet
BUCKET = "spywatch-bench-fleet"
S3_ENV = {"AWS_ACCESS_KEY_ID": "spywatch-bench", "AWS_SECRET_ACCESS_KEY": "spywatch-bench",
          "AWS_DEFAULT_REGION": "us-east-1"}
VERBS = ["GET", "PUT", "LIST", "HEAD", "DELETE", "OTHER"]
ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
PULLED = re.compile(r"spywatch\.objectroot - INFO - s3://[^/]+/" + PREFIX + r"/tickers/(?P<t>[^:/\s]+): pulled "
                    r"(?P<n>\d+) object\(s\), (?P<mb>[\d.]+) MB, in (?P<s>[\d.]+) s")
PUSHED = re.compile(r"spywatch\.objectroot - INFO - s3://[^/]+/" + PREFIX + r"/tickers/(?P<t>[^:/\s]+): pushed "
                    r"(?P<n>\d+) object\(s\), (?P<mb>[\d.]+) MB, removed (?P<rm>\d+), in (?P<s>[\d.]+) s")


# ----------------------------------------------------------------------------- the servers


@contextlib.contextmanager
def moto(base: Path) -> Iterator[SimpleNamespace]:
    """``moto_server`` on a free port (as tests/conftest.py starts it), its access log in a file;
    this process's S3 clients reach it through the standard AWS variables."""
    from tests.flows.conftest import stop_process
    from tests.s3 import start_moto_server

    log = base / "moto.log"
    # unbuffered: the access log is cut by byte offset at each night's start and end
    proc, endpoint = start_moto_server(log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        env = {"AWS_ENDPOINT_URL": endpoint, **S3_ENV}
        os.environ.update(env)
        yield SimpleNamespace(endpoint=endpoint, env=env, log=log, proc=proc)
    finally:
        stop_process(proc, grace=5)


def s3_client():  # noqa: ANN201 - a boto3 S3 client on moto (the AWS variables of this process)
    import boto3

    return boto3.client("s3")


@contextlib.contextmanager
def prefect_server(base: Path) -> Iterator[SimpleNamespace]:
    """``prefect server start`` on SQLite with its own PREFECT_HOME (tests/flows/conftest.py)."""
    from tests.flows.conftest import start_server, stop_process

    home = base / "server-home"
    started = time.monotonic()
    proc, url = start_server(home, base / "server.log", cwd=base)
    print(f"prefect server healthy in {time.monotonic() - started:.1f} s at {url}", flush=True)
    try:
        yield SimpleNamespace(url=url, home=home)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def cluster(base: Path, api_url: str, workers: int) -> Iterator[SimpleNamespace]:
    """A standing Dask cluster as tests/flows/test_object_storage.py starts one: a scheduler and
    ``workers`` single-threaded workers, each a process with its own scratch folder, Prefect home and
    log; the workers log ``spywatch``'s INFO lines (the object root's pull and push reports)."""
    from distributed import Client

    from tests.flows.conftest import free_port, stop_process

    base.mkdir(parents=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "DASK_LOGGING__DISTRIBUTED": "warning", "DASK_LOGGING__SPYWATCH": "info", "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        with open(base / "scheduler.log", "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                           "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                                          env=env, cwd=base, stdout=fh, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        for i in range(workers):
            scratch = base / f"worker-{i}"
            scratch.mkdir()
            log = base / f"worker-{i}.log"
            logs.append(log)
            with open(log, "wb") as fh:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers",
                     "1", "--local-directory", str(scratch), "--name", f"w{i}", "--no-dashboard"],
                    env={**env, "SPYWATCH_SCRATCH": str(scratch), "PREFECT_HOME": str(scratch / "prefect-home")},
                    cwd=scratch, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield SimpleNamespace(address=address, logs=logs)
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            stop_process(proc, grace=10)


# ----------------------------------------------------------------------------- one fleet night


def fleet_night(server: SimpleNamespace, root: str, data: Path, session: str, retrain_mode: str, address: str,
                workers: int, tickers: list[str]) -> dict:
    from flows.fleet import nightly_fleet
    from prefect_db import pointed_at
    from tests.flows.support import SMALL_EPOCHS, SMALL_MODEL

    with pointed_at(server):
        start = time.perf_counter()
        state = nightly_fleet(root=root, tickers=tickers, as_of=session, source=f"csv-dir:{data}",
                              retrain_mode=retrain_mode, model=SMALL_MODEL, max_epochs=SMALL_EPOCHS,
                              dask_address=address, n_workers=workers, return_state=True)
        wall = time.perf_counter() - start
    return {"state": state.type.value, "message": (state.message or "")[:600], "wall_seconds": round(wall, 1)}


def outcomes(read_json, session: str, tickers: list[str]) -> dict:
    """Each ticker's night as its root tells it: the session's audit (status, failure kind) and
    ``latest.json`` (the session readers are on, stale or not). ``read_json(ticker, rel)``."""
    rows = {}
    for t in tickers:
        audit = read_json(t, f"published/sessions/{session}/audit.json") or {}
        latest = read_json(t, "published/latest.json") or {}
        failure = audit.get("failure") or {}
        rows[t] = {"status": audit.get("status", "no audit"), "failure": failure.get("kind"),
                   "failure_reason": (failure.get("reason") or "")[:300] or None,
                   "model_version": audit.get("model_version"),
                   "latest_session": latest.get("session"), "stale": latest.get("stale")}
    published = [t for t, r in rows.items() if r["status"] == "published"]
    return {"published": len(published), "statuses": dict(Counter(r["status"] for r in rows.values())),
            "failures": {t: r["failure"] for t, r in rows.items() if r["status"] != "published"}, "tickers": rows}


def local_json(root: Path):  # noqa: ANN201
    def read(ticker: str, rel: str) -> dict | None:
        try:
            return json.loads((root / "tickers" / ticker / rel).read_text())
        except (OSError, ValueError):
            return None

    return read


def s3_json(bucket: str):  # noqa: ANN201
    client = s3_client()

    def read(ticker: str, rel: str) -> dict | None:
        try:
            return json.loads(client.get_object(Bucket=bucket, Key=f"{PREFIX}/tickers/{ticker}/{rel}")["Body"].read())
        except client.exceptions.NoSuchKey:
            return None

    return read


def area(rel: str, session: str | None = None) -> str:
    """What part of a ticker's root a path (relative to the fleet root) is: ``models/versions``,
    ``published/sessions`` (``.../<tonight>`` or ``.../earlier``), ``store``, ``.lease.json``, ..."""
    parts = rel.split("/")
    if parts[0] != "tickers" or len(parts) < 3:
        return "(fleet) " + rel
    p = parts[2:]
    if len(p) == 1:
        return p[0]
    if p[0] == "published" and p[1] == "sessions" and len(p) > 2 and session is not None:
        return f"published/sessions/{'tonight' if p[2] == session else 'earlier'}"
    if p[0] in ("published", "models"):
        return f"{p[0]}/{p[1]}"
    return p[0]


def local_inventory(root: Path) -> dict:
    """Regular files and bytes under the fleet root (``prefect/`` excluded; links counted apart)."""
    files, size, links, by_area = 0, 0, 0, defaultdict(lambda: [0, 0])
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        if base == root:
            dirnames[:] = [d for d in dirnames if d != "prefect"]
        for name in [*filenames, *[d for d in dirnames if (base / d).is_symlink()]]:
            path = base / name
            if path.is_symlink():
                links += 1
                continue
            st = path.lstat()
            files, size = files + 1, size + st.st_size
            a = by_area[area(path.relative_to(root).as_posix())]
            a[0], a[1] = a[0] + 1, a[1] + st.st_size
    return {"files": files, "mb": round(size / 1e6, 2), "bytes": size, "links": links,
            "by_area": {k: {"files": v[0], "mb": round(v[1] / 1e6, 3)} for k, v in sorted(by_area.items())}}


def bucket_inventory(bucket: str) -> dict:
    """Objects and bytes in the bucket (one paginated listing, made after the night's window)."""
    objects, size, by_area, per_ticker, sizes = 0, 0, defaultdict(lambda: [0, 0]), Counter(), {}
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            objects, size = objects + 1, size + obj["Size"]
            rel = obj["Key"][len(PREFIX) + 1:]
            sizes[rel] = obj["Size"]
            a = by_area[area(rel)]
            a[0], a[1] = a[0] + 1, a[1] + obj["Size"]
            if rel.startswith("tickers/"):
                per_ticker[rel.split("/")[1]] += 1
    return {"objects": objects, "mb": round(size / 1e6, 2), "bytes": size,
            "by_area": {k: {"objects": v[0], "mb": round(v[1] / 1e6, 3)} for k, v in sorted(by_area.items())},
            "keys_per_ticker": dict(sorted(per_ticker.items())), "_sizes": sizes}


# ----------------------------------------------------------------------------- the requests


def requests_between(log: Path, start: int, end: int, bucket: str, session: str) -> dict:
    """moto's access-log lines in bytes [start, end) of its log: counted by verb, status, ticker
    and (for GET and PUT) by part of the root."""
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read(end - start).decode(errors="replace")
    total, statuses = Counter(), Counter()
    per_ticker: dict[str, Counter] = defaultdict(Counter)
    areas = {"GET": Counter(), "PUT": Counter()}
    keys: dict[str, Counter] = defaultdict(Counter)  # ticker -> GET key -> times (the same key read twice)
    moved = {"GET": [], "PUT": []}  # (part of the root, key) of each GET and PUT
    unattributed = Counter()
    for line in text.splitlines():
        m = ACCESS.search(line)
        if not m:
            continue
        method, target, status = m["method"], m["target"], m["status"]
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        path = unquote(url.path).lstrip("/")
        key = path.split("/", 1)[1] if "/" in path else ""
        if method == "GET" and not key and "list-type" in query:
            verb, key = "LIST", (query.get("prefix") or [""])[0]
        elif method == "POST" and "delete" in query:
            verb = "DELETE"
        elif method in ("GET", "PUT", "HEAD", "DELETE") and key:
            verb = method
        else:
            verb = "OTHER"
        total[verb] += 1
        statuses[status] += 1
        rel = key[len(PREFIX) + 1:] if key.startswith(PREFIX + "/") else key
        ticker = rel.split("/")[1] if rel.startswith("tickers/") and rel.count("/") >= 1 else None
        if ticker:
            per_ticker[ticker][verb] += 1
            if verb in areas:
                areas[verb][area(rel, session)] += 1
                moved[verb].append((area(rel, session), rel))
            if verb == "GET":
                keys[ticker][rel] += 1
        else:
            unattributed[f"{verb} {rel or '(batch)'}"] += 1
    return {"total": sum(total.values()), "by_verb": {v: total[v] for v in VERBS},
            "statuses": dict(sorted(statuses.items())),
            "per_ticker": {t: {v: c[v] for v in VERBS} | {"total": sum(c.values())} for t, c in sorted(per_ticker.items())},
            "unattributed": dict(unattributed), "get_by_area": dict(areas["GET"].most_common()),
            "put_by_area": dict(areas["PUT"].most_common()),
            "repeated_gets_per_ticker": {t: sum(n - 1 for n in c.values() if n > 1) for t, c in sorted(keys.items())},
            "repeated_get_keys": sorted({k.split("/", 2)[2] for c in keys.values() for k, n in c.items() if n > 1}),
            "_moved": moved}


def mb_by_area(moved: list[tuple[str, str]], sizes: dict[str, int]) -> dict:
    """MB a night's GETs (or PUTs) moved, by part of the root: each request's key at its size in the
    bucket after the night (exact for content; a pointer rewritten since differs by a few bytes;
    keys gone since, the lease, count 0)."""
    out = Counter()
    for part, rel in moved:
        out[part] += sizes.get(rel, 0)
    return {k: round(v / 1e6, 3) for k, v in out.most_common()}


def transfers(logs: list[Path]) -> dict:
    """Each ticker's pull and push as ``spywatch.objectroot`` logged them in the workers."""
    out: dict[str, dict] = defaultdict(lambda: {"pulls": 0, "pushes": 0, "pulled_objects": 0, "pulled_mb": 0.0,
                                                "pull_s": 0.0, "pushed_objects": 0, "pushed_mb": 0.0, "removed": 0,
                                                "push_s": 0.0})
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        for m in PULLED.finditer(text):
            r = out[m["t"]]
            r["pulls"] += 1
            r["pulled_objects"] += int(m["n"])
            r["pulled_mb"] = round(r["pulled_mb"] + float(m["mb"]), 2)
            r["pull_s"] = round(r["pull_s"] + float(m["s"]), 1)
        for m in PUSHED.finditer(text):
            r = out[m["t"]]
            r["pushes"] += 1
            r["pushed_objects"] += int(m["n"])
            r["pushed_mb"] = round(r["pushed_mb"] + float(m["mb"]), 2)
            r["removed"] += int(m["rm"])
            r["push_s"] = round(r["push_s"] + float(m["s"]), 1)
    return dict(sorted(out.items()))


def worker_problems(window: dict[Path, int]) -> list[str]:
    """The workers' error and warning lines (Dask's, Prefect's and spywatch's) up to the night's
    end (``window``: each log's size then), first 20."""
    lines = []
    for log, size in window.items():
        if log.exists():
            with open(log, "rb") as fh:
                text = fh.read(size).decode(errors="replace")
            lines += [f"{log.name}: {ln.strip()[:300]}" for ln in text.splitlines()
                      if re.search(r"\b(ERROR|CRITICAL|Traceback)\b|- WARNING -|\| WARNING ", ln)]
    return lines[:20]


# ----------------------------------------------------------------------------- the run


def run_night(label: str, session: str, mode: str, kind: str, root: str, server: SimpleNamespace, s3, data: Path,
              work: Path, args) -> dict:  # noqa: ANN001
    with cluster(work / f"cluster-{label}-{kind}", server.url, args.workers) as c:
        offset = s3.log.stat().st_size
        night = fleet_night(server, root, data, session, mode, c.address, args.workers, args.tickers)
        time.sleep(1.0)  # moto writes a request's log line after answering it
        end = s3.log.stat().st_size
        window = {log: log.stat().st_size for log in c.logs}  # the workers' lines up to the night's end
    result = {"night": label, "session": session, "retrain_mode": mode, "root": kind, "root_spec": root, **night}
    requests = requests_between(s3.log, offset, end, BUCKET, session)
    if kind == "local":
        result |= outcomes(local_json(Path(root)), session, args.tickers)
        result["inventory"] = local_inventory(Path(root))
        result["s3_requests_during_night"] = requests["total"]  # nothing expected
    else:
        result |= outcomes(s3_json(BUCKET), session, args.tickers)
        result["inventory"] = bucket_inventory(BUCKET)
        sizes = result["inventory"].pop("_sizes")
        moved = requests.pop("_moved")
        requests["get_mb_by_area"] = mb_by_area(moved["GET"], sizes)
        requests["put_mb_by_area"] = mb_by_area(moved["PUT"], sizes)
        result["requests"] = requests
        result["transfers"] = transfers(c.logs)
    result["worker_problems"] = worker_problems(window)
    inv = result["inventory"]
    print(f"night {label} ({session}, {mode}) on {kind}: {result['state']} in {result['wall_seconds']} s, "
          f"{result['published']} published, failures {result['failures']}; "
          f"{inv.get('files', inv.get('objects'))} files/objects, {inv['mb']} MB"
          + (f"; {requests['total']} S3 requests {requests['by_verb']}" if kind == "s3" else ""), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="Dask workers of the standing cluster")
    ap.add_argument("--tickers", type=int, default=len(TICKERS), help="the first N tickers (a quick check)")
    ap.add_argument("--work", type=Path, default=HERE / "out" / "fleet_s3")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fleet_s3")
    ap.add_argument("--keep", action="store_true", help="keep the roots and scratch folders under --work")
    ap.add_argument("--report", type=Path, help="only re-render the .md from this .json")
    args = ap.parse_args()
    from spywatch.atomic import atomic_write_json, atomic_write_text

    if args.report:
        atomic_write_text(args.report.with_suffix(".md"), report(json.loads(args.report.read_text())))
        return
    args.tickers = TICKERS[:args.tickers]
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # this process is a client only: its own home, none of the caller's PREFECT_* or AWS_* settings
    for key in [k for k in os.environ if k.startswith(("PREFECT_", "AWS_", "SPYWATCH_"))]:
        del os.environ[key]
    os.environ.update({"PREFECT_HOME": str(work / "client-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False"})
    from machine import machine
    from prefect_db import data_dir

    data = data_dir(work, args.tickers)
    local_root = work / "local-fleet"
    s3_root = f"s3://{BUCKET}/{PREFIX}"
    nights = []
    started = time.perf_counter()
    with moto(work) as s3, prefect_server(work) as server:
        s3_client().create_bucket(Bucket=BUCKET)
        for label, session, mode in NIGHTS:
            for kind, root in (("local", str(local_root)), ("s3", s3_root)):
                nights.append(run_night(label, session, mode, kind, root, server, s3, data, work, args))
        moto_log_mb = round(s3.log.stat().st_size / 1e6, 2)

    import moto as moto_pkg
    import prefect
    import s3fs

    scratch_mb = round(sum(p.lstat().st_size for p in work.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6, 1)
    out = {"command": "nice -n 10 .venv/bin/python bench/fleet_s3.py " + " ".join(sys.argv[1:]),
           "machine": machine(), "versions": {"prefect": prefect.__version__, "moto": moto_pkg.__version__,
                                              "s3fs": s3fs.__version__},
           "tickers": args.tickers, "workers": args.workers, "model": "tests.flows.support SMALL_MODEL/SMALL_EPOCHS",
           "s3_root": s3_root, "total_seconds": round(time.perf_counter() - started, 1), "moto_log_mb": moto_log_mb,
           "nights": nights}
    if args.keep:
        out["scratch"] = f"kept: {work} ({scratch_mb} MB)"
    else:  # the roots, the data copies and the worker scratch folders; the logs stay (small)
        for p in work.iterdir():
            if p.is_dir() and not p.name.startswith("cluster-"):
                shutil.rmtree(p, ignore_errors=True)
        for c in work.glob("cluster-*"):
            for p in c.iterdir():
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
        left = round(sum(p.stat().st_size for p in work.rglob("*") if p.is_file()) / 1e6, 2)
        out["scratch"] = f"{scratch_mb} MB under {work.relative_to(REPO)} deleted, its logs kept ({left} MB)"
    atomic_write_json(args.out.with_suffix(".json"), out)
    atomic_write_text(args.out.with_suffix(".md"), report(out))
    print(report(out))


# ----------------------------------------------------------------------------- the report


def _night(out: dict, label: str, kind: str) -> dict | None:
    return next((n for n in out["nights"] if n["night"] == label and n["root"] == kind), None)


def per_ticker_means(n: dict) -> dict:
    """A ticker-night of an S3 night, averaged over the fleet's tickers."""
    k = len(n["tickers"])
    req, tr = n["requests"], n["transfers"]
    verbs = {v: sum(t.get(v, 0) for t in req["per_ticker"].values()) / k for v in VERBS}
    return {"requests": sum(t["total"] for t in req["per_ticker"].values()) / k, **verbs,
            "mb_up": sum(t["pushed_mb"] for t in tr.values()) / k, "mb_down": sum(t["pulled_mb"] for t in tr.values()) / k,
            "pull_s": sum(t["pull_s"] for t in tr.values()) / k, "push_s": sum(t["push_s"] for t in tr.values()) / k,
            "objects_up": sum(t["pushed_objects"] for t in tr.values()) / k,
            "objects_down": sum(t["pulled_objects"] for t in tr.values()) / k}


def report(out: dict) -> str:
    m = out["machine"]
    lines = ["# A 13-ticker fleet night with a local root and with its root on S3 (bench/fleet_s3.py)", "",
             f"- ran: `{out['command']}`, {m['date']}, git {m.get('git')} (plus the working tree's uncommitted "
             f"changes at the time); {out['total_seconds']} s in all",
             f"- machine: {m['cpu']}, {m['host_cores']} cores shared by the Prefect server, moto_server, the flow "
             f"process and the {out['workers']} Dask workers; Python {m['python']}, Prefect {out['versions']['prefect']}, "
             f"moto {out['versions']['moto']} (`moto_server`, real HTTP on 127.0.0.1), s3fs {out['versions']['s3fs']}",
             f"- fleet: {len(out['tickers'])} tickers ({', '.join(out['tickers'])}; csv-dir copies of data/etf and "
             f"data/spy_daily.csv), the tests' small model; each night on a fresh standing Dask cluster (a scheduler and "
             f"{out['workers']} single-threaded worker processes, each with its own scratch folder), one Prefect server "
             f"(SQLite) for all four nights; S3 root `{out['s3_root']}` in a fresh bucket, default lease TTL (60 s)",
             "- order: night A local, night A S3, night B local, night B S3; night A (2024-12-30) trains every "
             "ticker's first champion inline, night B (2024-12-31) `retrain_mode=never` on the same roots",
             f"- scratch: {out['scratch']}", "",
             "## Local vs S3, per night", "",
             "| night | session | root | run | wall s | published | failed (kind) | files / objects | MB | links |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in out["nights"]:
        inv = n["inventory"]
        failed = ", ".join(f"{t} ({k})" for t, k in n["failures"].items()) or "none"
        lines.append(f"| {n['night']} | {n['session']} ({n['retrain_mode']}) | {n['root']} | {n['state']} | "
                     f"{n['wall_seconds']} | {n['published']}/{len(n['tickers'])} | {failed} | "
                     f"{inv.get('files', inv.get('objects'))} | {inv['mb']} | {inv.get('links', '—')} |")
    for label, _, _ in NIGHTS:
        lo, s3 = _night(out, label, "local"), _night(out, label, "s3")
        if lo and s3:
            d = s3["wall_seconds"] - lo["wall_seconds"]
            lines.append(f"\nNight {label}: S3 {d:+.1f} s against local ({d / lo['wall_seconds'] * 100:+.0f}%), "
                         f"{d / len(s3['tickers']):+.2f} s per ticker-night of fleet wall time "
                         f"({out['workers']} workers in parallel).")
            same = {t: (lo["tickers"][t]["status"], s3["tickers"][t]["status"]) for t in lo["tickers"]
                    if lo["tickers"][t]["status"] != s3["tickers"][t]["status"]
                    or lo["tickers"][t]["failure"] != s3["tickers"][t]["failure"]}
            lines.append(f"Outcome per ticker, local vs S3: {'identical' if not same else 'DIFFERENT: ' + json.dumps(same)}."
                         + (f" S3 requests during the local night: {lo['s3_requests_during_night']}."
                            if lo.get("s3_requests_during_night") is not None else ""))
    lines += ["", "## S3: cost per ticker-night", "",
              "Means over the fleet's tickers (the failed ones included: a failed night pulls and pushes its failure "
              "audit too). Requests from moto_server's access log, attributed by key or listed prefix; MB and "
              "seconds from the pull and push reports `spywatch.objectroot` logs in the workers (object sizes, to "
              "10 kB; seconds to 0.1 s). Lease requests included in the counts.", "",
              "| night | requests | GET | PUT | LIST | HEAD | DELETE | objects down | MB down | objects up | MB up | "
              "pull s | push s | fleet-level requests |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, _, _ in NIGHTS:
        n = _night(out, label, "s3")
        if not n:
            continue
        p = per_ticker_means(n)
        fleet_level = sum(n["requests"]["unattributed"].values())
        lines.append(f"| {label} | {p['requests']:.1f} | {p['GET']:.1f} | {p['PUT']:.1f} | {p['LIST']:.1f} | "
                     f"{p['HEAD']:.1f} | {p['DELETE']:.1f} | {p['objects_down']:.1f} | {p['mb_down']:.2f} | "
                     f"{p['objects_up']:.1f} | {p['mb_up']:.2f} | {p['pull_s']:.2f} | {p['push_s']:.2f} | "
                     f"{fleet_level} ({', '.join(f'{k}: {v}' for k, v in n['requests']['unattributed'].items())}) |")
    for label, _, _ in NIGHTS:
        n = _night(out, label, "s3")
        if not n:
            continue
        r = n["requests"]
        lines += ["", f"Night {label} on S3, per ticker ({r['total']} requests in all, statuses "
                      f"{', '.join(f'{k}: {v}' for k, v in r['statuses'].items())}; GETs by part of the root: "
                      f"{_parts(r['get_by_area'], r.get('get_mb_by_area'))}; PUTs: {_parts(r['put_by_area'], r.get('put_mb_by_area'))}; "
                      f"the same key read twice in "
                      f"one night: {', '.join(r['repeated_get_keys']) or 'none'}):", "",
                  "| ticker | status | requests | GET | PUT | LIST | HEAD | DELETE | objects down | MB down | "
                  "objects up | MB up | removed | pull s | push s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in n["tickers"]:
            q = r["per_ticker"].get(t, {})
            x = n["transfers"].get(t, {})
            lines.append(f"| {t} | {n['tickers'][t]['status']}{' (' + n['tickers'][t]['failure'] + ')' if n['tickers'][t]['failure'] else ''} | "
                         f"{q.get('total', 0)} | {q.get('GET', 0)} | {q.get('PUT', 0)} | {q.get('LIST', 0)} | "
                         f"{q.get('HEAD', 0)} | {q.get('DELETE', 0)} | {x.get('pulled_objects', 0)} | "
                         f"{x.get('pulled_mb', 0)} | {x.get('pushed_objects', 0)} | {x.get('pushed_mb', 0)} | "
                         f"{x.get('removed', 0)} | {x.get('pull_s', 0)} | {x.get('push_s', 0)} |")
    lines += ["", "## What the roots hold, by part of a ticker's root (all tickers)", "",
              "| night | root | " + " | ".join(["part", "files / objects", "MB"]) + " |", "|---|---|---|---|---|"]
    for n in out["nights"]:
        for k, v in n["inventory"]["by_area"].items():
            lines.append(f"| {n['night']} | {n['root']} | {k} | {v.get('files', v.get('objects'))} | {v['mb']} |")
    problems = [(n["night"], n["root"], p) for n in out["nights"] for p in n["worker_problems"]]
    lines += ["", "## Warnings and errors in the workers' logs", "",
              "Up to each night's end (the cluster's teardown afterwards, SIGINT to the workers, is not scanned).", ""]
    lines += [f"- night {a} {b}: `{p}`" for a, b, p in problems] or ["- none"]
    lines += ["", "## Flow run messages", ""]
    lines += [f"- night {n['night']} {n['root']}: {n['state']}: {n['message'] or '(none)'}" for n in out["nights"]]
    if out.get("conclusions"):
        lines += ["", "## Conclusions", "", out["conclusions"]]
    return "\n".join(lines) + "\n"


def _parts(counts: dict, mb: dict | None) -> str:
    """``part N (X MB)``, largest first by MB when known."""
    order = sorted(counts, key=lambda k: -(mb or {}).get(k, 0)) if mb else list(counts)
    return ", ".join(f"{k} {counts[k]}" + (f" ({mb.get(k, 0):.2f} MB)" if mb else "") for k in order) or "none"


if __name__ == "__main__":
    main()
