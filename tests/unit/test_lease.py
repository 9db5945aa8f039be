"""The lease that locks a root on object storage (spywatch.lease), against moto's real S3 server.

Other holders run in other processes (``python -c``, the AWS variables inherited from the
``s3_server`` fixture), so contention, a holder killed with SIGKILL and a race for an expired
lease go through the store's conditional writes exactly as two hosts would.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from spywatch import lease as L
from spywatch.lock import RootLocked

TTL = 1.5
POLL = 0.05

# One holder: take the lease, print what happened as one JSON line, hold until stdin is closed.
# argv: url purpose timeout_s ttl_s [sync]; with "sync" it first prints "ready" and waits for a
# line on stdin, so that two of them can be started on the same instant.
HOLDER = r"""
import json, sys
from spywatch import lease
from spywatch.lock import RootLocked
url, purpose, timeout_s, ttl_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
if sys.argv[5:] == ["sync"]:
    lease._client()
    print("ready", flush=True)
    sys.stdin.readline()
try:
    with lease.root_lease(url, purpose, timeout_s=timeout_s, poll_s=0.05, ttl_s=ttl_s) as info:
        print(json.dumps({"held": info.holder, "took_over": info.took_over}), flush=True)
        sys.stdin.read()
except RootLocked as exc:
    print(json.dumps({"locked": str(exc), "holder": exc.holder}), flush=True)
    sys.exit(3)
"""


_spawned: list[subprocess.Popen] = []


def _holder(url: str, purpose: str, timeout_s: float, ttl_s: float = TTL,
            sync: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, purpose, str(timeout_s), str(ttl_s)]
                            + (["sync"] if sync else []),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _spawned.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _reap():
    """No holder outlives its test (a failed assertion included), and no pipe is left open."""
    yield
    while _spawned:
        proc = _spawned.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=20)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()


def _report(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line, f"holder exited without a report: rc={proc.wait()} {proc.stderr.read()}"
    return json.loads(line)


def _finish(proc: subprocess.Popen) -> int:
    """Close the holder's stdin (it releases and exits) and return its exit code."""
    proc.stdin.close()
    return proc.wait(timeout=20)


@pytest.fixture
def root(s3_server) -> tuple[str, str, str]:
    """A root URL in a fresh bucket: ``(url, bucket, lease key)``."""
    bucket = s3_server.bucket()
    return f"s3://{bucket}/roots/spy", bucket, "roots/spy/.lease.json"


def _read(s3_server, bucket: str, key: str) -> tuple[dict, str] | None:
    client = s3_server.client()
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    return json.loads(response["Body"].read()), response["ETag"]


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_expired(s3_server, bucket: str, key: str, pid: int = 424242) -> dict:
    """A lease left by a holder that died: its record, expired a second ago."""
    record = {"pid": pid, "host": "gone-host", "purpose": "nightly", "command": "spywatch run",
              "since": "2026-01-02T03:04:05+00:00",
              "expires": (_now() - dt.timedelta(seconds=1)).isoformat(), "token": "dead" * 8}
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())
    return record


def test_is_object_url_and_lease_location():
    assert L.is_object_url("s3://bucket/prefix")
    assert not L.is_object_url("/srv/spywatch") and not L.is_object_url(None)
    assert L.lease_location("s3://bucket/a/b/") == ("bucket", "a/b/.lease.json")
    assert L.lease_location("s3://bucket") == ("bucket", ".lease.json")
    with pytest.raises(ValueError):
        L.lease_location("/srv/spywatch")


def test_take_and_release(s3_server, root):
    url, bucket, key = root
    with L.root_lease(url, "nightly-test", timeout_s=0, poll_s=POLL, ttl_s=TTL) as info:
        assert info.path == f"{url}/.lease.json" and info.took_over is None
        record, _ = _read(s3_server, bucket, key)
        assert record == info.holder
        assert record["pid"] == os.getpid() and record["purpose"] == "nightly-test"
        assert len(record["token"]) == 32 and _parse(record["expires"]) > _now()
        assert L.holds(url) and not info.lost.is_set()
        info.check()
    assert _read(s3_server, bucket, key) is None
    assert not L.holds(url)


def test_contention_across_processes(s3_server, root):
    url, bucket, key = root
    with L.root_lease(url, "first-night", timeout_s=0, poll_s=POLL, ttl_s=TTL):
        # timeout 0: refused at once, and told who holds the root
        refused = _holder(url, "second", timeout_s=0)
        report = _report(refused)
        assert refused.wait(timeout=20) == 3
        assert f"PID {os.getpid()}" in report["locked"] and "first-night" in report["locked"]
        assert report["holder"]["pid"] == os.getpid()

        # a small timeout: it waits (and says so once on stderr), then gets the lease once we release
        waiter = _holder(url, "second", timeout_s=15)
        line = waiter.stderr.readline()
        assert line.startswith(f"spywatch: waiting up to 15 s for the lock on {url}, "
                               f"held by PID {os.getpid()}")
        assert "first-night" in line
    report = _report(waiter)
    assert report["held"]["pid"] == waiter.pid and report["took_over"] is None
    assert _read(s3_server, bucket, key)[0]["pid"] == waiter.pid
    assert _finish(waiter) == 0
    assert "waiting up to" not in waiter.stderr.read()  # said once only
    assert _read(s3_server, bucket, key) is None


def test_reentry_in_one_process_yields_none(s3_server, root):
    url, bucket, key = root
    with L.root_lease(url, timeout_s=0, poll_s=POLL, ttl_s=TTL) as outer:
        with L.root_lease(url + "/", timeout_s=0, poll_s=POLL, ttl_s=TTL) as inner:  # the same root
            assert inner is None
            with L.root_lease(url, timeout_s=0) as innermost:
                assert innermost is None
            L.check(url)
        record, _ = _read(s3_server, bucket, key)
        assert record["token"] == outer.holder["token"]  # leaving the re-entries kept it
    assert _read(s3_server, bucket, key) is None
    with pytest.raises(L.LeaseLost):
        L.check(url)  # no longer held


def test_takeover_after_the_holder_was_killed(s3_server, root, caplog):
    url, bucket, key = root
    dead = _holder(url, "doomed-night", timeout_s=0, ttl_s=TTL)
    held = _report(dead)["held"]
    os.kill(dead.pid, signal.SIGKILL)  # no release, no more heartbeats
    dead.wait(timeout=20)
    record, _ = _read(s3_server, bucket, key)
    assert record["pid"] == dead.pid  # left behind
    with pytest.raises(RootLocked) as refused:  # not yet expired: still the dead holder's
        with L.root_lease(url, timeout_s=0, poll_s=POLL, ttl_s=TTL):
            pass
    assert f"PID {dead.pid}" in str(refused.value)

    with caplog.at_level(logging.WARNING, logger="spywatch.lease"):
        with L.root_lease(url, "next-night", timeout_s=10, poll_s=POLL, ttl_s=TTL) as info:
            assert _now() >= _parse(record["expires"])  # taken only after the expiry
            assert info.took_over["pid"] == dead.pid and info.took_over["token"] == held["token"]
            assert _read(s3_server, bucket, key)[0]["token"] == info.holder["token"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("took over the lease on" in m and "expired" in m and f"PID {dead.pid}" in m
               and "doomed-night" in m for m in warnings), warnings
    assert _read(s3_server, bucket, key) is None


def test_heartbeat_keeps_the_lease_past_its_ttl(s3_server, root):
    url, bucket, key = root
    with L.root_lease(url, "long-night", timeout_s=0, poll_s=POLL, ttl_s=TTL) as info:
        t0 = time.monotonic()
        # a contender polling every 50 ms for longer than two leases would take an expired one
        contender = _holder(url, "contender", timeout_s=2 * TTL + 0.5)
        seen: set[str] = set()
        while contender.poll() is None:
            record, _ = _read(s3_server, bucket, key)
            assert _parse(record["expires"]) > _now(), "the held lease expired"
            assert record["token"] == info.holder["token"]
            seen.add(record["expires"])
            time.sleep(0.1)
        held_s = time.monotonic() - t0
        report = _report(contender)
        assert contender.returncode == 3 and report["holder"]["pid"] == os.getpid()
        assert held_s > 2 * TTL
        assert len(seen) >= 4  # renewed every ttl/3
        assert not info.lost.is_set()
        info.check()


def test_an_overwritten_lease_is_detected_as_lost(s3_server, root, caplog):
    url, bucket, key = root
    intruder = {"pid": 777, "host": "other-host", "purpose": "rogue", "command": "x", "since": "now",
                "expires": (_now() + dt.timedelta(hours=1)).isoformat(), "token": "f" * 32}
    with caplog.at_level(logging.WARNING, logger="spywatch.lease"):
        with L.root_lease(url, timeout_s=0, poll_s=POLL, ttl_s=TTL) as info:
            info.check()
            s3_server.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(intruder).encode())
            assert info.lost.wait(timeout=2 * TTL), "the heartbeat did not notice"
            with pytest.raises(L.LeaseLost, match="PID 777") as lost:
                info.check()
            assert "not publishing" in str(lost.value)
            with pytest.raises(L.LeaseLost):
                L.check(url)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("lost the lease on" in m and "PID 777" in m for m in errors), errors
    assert _read(s3_server, bucket, key)[0] == intruder  # the release left the other's lease alone


def test_two_contenders_for_an_expired_lease_exactly_one_wins(s3_server, root):
    url, bucket, key = root
    dead = _write_expired(s3_server, bucket, key)
    procs = [_holder(url, f"racer-{i}", timeout_s=0, sync=True) for i in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # go: both find the expired lease and try to take it over at once
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = {p.pid: _report(p) for p in procs}
    winners = [pid for pid, r in reports.items() if "held" in r]
    assert len(winners) == 1, reports
    (winner,) = winners
    (loser,) = set(reports) - {winner}
    assert reports[winner]["took_over"]["pid"] == dead["pid"]
    assert reports[loser]["holder"]["pid"] == winner  # refused, naming the winner
    assert _read(s3_server, bucket, key)[0]["pid"] == winner
    assert [_finish(p) for p in procs if p.pid == winner] == [0]
    assert [_finish(p) for p in procs if p.pid == loser] == [3]


def test_only_one_takeover_of_the_same_expired_version(s3_server, root):
    """The worst interleaving, forced: both contenders read the expired lease before either
    writes. The If-Match on the version they both saw lets the first write only."""
    _, bucket, key = root
    _write_expired(s3_server, bucket, key)
    client = L._client()
    seen = [L._get(client, bucket, key) for _ in range(2)]
    assert seen[0][1] == seen[1][1] and L._expired(seen[0][0], seen[0][2], TTL)
    records = [L._record(f"racer-{i}", "now", f"{i}" * 32, TTL) for i in range(2)]
    first = L._conditional(client, bucket, key, records[0],
                           lambda c, b, k, h: L._put_if_match(c, b, k, h, seen[0][1]))
    second = L._conditional(client, bucket, key, records[1],
                            lambda c, b, k, h: L._put_if_match(c, b, k, h, seen[1][1]))
    assert first and second is None
    assert L._get(client, bucket, key)[0]["token"] == "0" * 32
    # and If-None-Match: a lease that exists is never created over
    assert L._conditional(client, bucket, key, records[1], L._put_new) is None
    # a conditional delete of a version that is not the current one deletes nothing
    with pytest.raises(Exception) as refused:
        L._delete_if_match(client, bucket, key, seen[0][1])
    assert L._code(refused.value) == "PreconditionFailed"
    assert L._get(client, bucket, key) is not None
