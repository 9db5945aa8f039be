"""The root's lock when the root is on object storage (``s3://bucket/prefix``): a lease.

``lock.py`` locks a local root with ``flock(2)``, and the kernel releases that lock when its
holder dies. Object storage has no kernel to do that and no lock primitive at all: what it has is
the conditional write. So the lock of an object root is one object, ``<url>/.lease.json``, that
names its holder (PID, host, purpose, command, since when, as ``.lock.json`` does), the time the
lease ``expires`` (ISO 8601, UTC) and a random ``token``; holding the lock means owning the
current version of that object, and a holder that stops renewing it loses it when it expires.

- Take: ``PUT`` with ``If-None-Match: *``; the store writes it only if no lease exists, so of two
  contenders exactly one succeeds (the other gets 412 Precondition Failed, or 409
  ConditionalRequestConflict while the winner's write is in flight).
- Renew: a daemon heartbeat thread rewrites the record with a later ``expires`` every ``ttl/3``
  (defaults: a 60 s lease renewed every 20 s), with ``If-Match: <the ETag it last wrote>``. A
  412 there means someone else wrote the object (took it over, or deleted it): the lease is
  *lost*. The heartbeat logs an error and sets ``LeaseInfo.lost``; ``LeaseInfo.check()`` raises
  ``LeaseLost`` then, and also once the lease's own expiry has passed without a confirmed
  renewal (a stalled heartbeat, an unreachable store), so a night calls it before it publishes
  and refuses to publish a root it may no longer own.
- Release: ``DELETE`` with ``If-Match: <our ETag>``, so a holder never deletes a lease that is no
  longer its own. A store that rejects conditional deletes gets a read, a token comparison and a
  plain delete instead (a window of one round trip in which a takeover could be deleted; a lease
  is only taken over after it expired, so only a holder that already lost it can hit it).
- Take over: a lease whose ``expires`` has passed belongs to a holder that died (or lost touch);
  the next contender overwrites it with ``If-Match: <the expired version's ETag>``, so of two
  contenders that both saw it expire exactly one wins, and logs a warning naming the old holder.

Clock assumption: ``expires`` is written from the holder's clock and compared with the reader's
local UTC clock. Hosts must agree to well within ``ttl - ttl/3`` (40 s with the defaults: a live
holder's lease always has at least that long to run); NTP gives milliseconds. A contender whose
clock runs ahead by more than that would take over a live lease, and the holder would find out
(and refuse to publish) at its next renewal. The holder's own ``check()`` uses the monotonic
clock, which a wall-clock step cannot fool.

``check()`` is not a fence: between a passing check and the last write of a publication the
lease could still be lost. That window is bounded by the time left on the lease (at least
``ttl - ttl/3`` after any renewal) and a publication is short; the store's own writes are not
conditioned on the lease.

The same contract as ``root_lock``: the same ``RootLocked`` (its ``root`` is then the URL), the
same waiting line on stderr, re-entrant within one process (by URL), a yielded holder record or
None on re-entry. The client is a plain botocore S3 client: endpoint, credentials and region
come from the standard AWS configuration (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles,
...), resolved by the same botocore chain that s3fs's aiobotocore client uses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from spywatch.lock import DEFAULT_TIMEOUT_S, RootLocked, describe

log = logging.getLogger(__name__)

LEASE_NAME = ".lease.json"
DEFAULT_TTL_S = 60.0  # a dead holder blocks the root for at most a minute; renewed every 20 s
URL_SCHEME = "s3://"
# The store's answers that mean "the precondition did not hold": the object exists (If-None-Match),
# changed or vanished (If-Match), or another conditional write on it is in flight (409).
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# ... and those of a store that does not implement conditional deletes
_UNSUPPORTED_CODES = {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}

_held: dict[str, tuple[_Lease, int]] = {}  # normalized URL -> (lease, depth) held by this process
_guard = threading.Lock()


class LeaseLost(RuntimeError):
    """This process held the root's lease and can no longer prove it does: someone overwrote it
    (a takeover after a stall) or it expired without a renewal. Whatever the night was about to
    publish must not be published."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"lost the lease on {url}: {reason} (another run may own the root now: "
                         f"not publishing)")


@dataclass
class _Lease:
    """One held lease: where it is, what was written, and the heartbeat's state. The mutex
    serialises the heartbeat's renewals with the release, so the release deletes the version
    the heartbeat last wrote."""

    url: str
    bucket: str
    key: str
    client: Any
    ttl_s: float
    holder: dict
    etag: str
    deadline: float  # time.monotonic() after which the last confirmed write has expired
    lost: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    mutex: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None


@dataclass(frozen=True)
class LeaseInfo:
    """What ``root_lease`` yields, like ``lock.LockInfo``: the lease object's URL, the record this
    run wrote, the expired holder's record when it took the lease over, and ``lost``, set by the
    heartbeat when the lease was lost."""

    path: str
    holder: dict
    took_over: dict | None
    _lease: _Lease = field(repr=False, compare=False)

    @property
    def lost(self) -> threading.Event:
        return self._lease.lost

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this run still owns the lease: call it before publishing."""
        _check(self._lease)


def is_object_url(root: object) -> bool:
    """Whether ``root`` names a root on object storage (``s3://...``) rather than a folder."""
    return isinstance(root, str) and root.startswith(URL_SCHEME)


def lease_location(url: str) -> tuple[str, str]:
    """``(bucket, key)`` of the lease object of the root at ``url``."""
    if not is_object_url(url):
        raise ValueError(f"not an object-storage root (expected {URL_SCHEME}bucket/prefix): {url!r}")
    bucket, _, prefix = url[len(URL_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/{LEASE_NAME}" if prefix else LEASE_NAME


def _normalize(url: str) -> str:
    bucket, key = lease_location(url)
    return f"{URL_SCHEME}{bucket}/{key[:-len(LEASE_NAME)]}".rstrip("/")


@contextlib.contextmanager
def root_lease(url: str, purpose: str = "nightly", timeout_s: float | None = None,
               poll_s: float = 0.25, ttl_s: float = DEFAULT_TTL_S) -> Iterator[LeaseInfo | None]:
    """Hold the lease on the root at ``url`` for the block, renewed every ``ttl_s / 3``; wait up
    to ``timeout_s`` (default ``lock.DEFAULT_TIMEOUT_S``, 0: do not wait) for another holder,
    then raise ``RootLocked`` naming it. A lease that expired is taken over (and logged).

    Yields a ``LeaseInfo``, or None when this process already held the lease (re-entry).
    """
    url = _normalize(url)
    with _guard:
        if url in _held:
            lease, depth = _held[url]
            _held[url] = (lease, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield None
        finally:
            _release(url)
        return

    lease, took_over = _acquire(url, purpose, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
                                poll_s, ttl_s)
    lease.thread = threading.Thread(target=_heartbeat, args=(lease,), daemon=True,
                                    name=f"spywatch-lease {url}")
    with _guard:
        _held[url] = (lease, 1)
    lease.thread.start()
    try:
        yield LeaseInfo(f"{URL_SCHEME}{lease.bucket}/{lease.key}", lease.holder, took_over, lease)
    finally:
        _release(url)


def holds(url: str) -> bool:
    """Whether this process holds the lease on the root at ``url``."""
    with _guard:
        return _normalize(url) in _held


def check(url: str) -> None:
    """Raise ``LeaseLost`` unless this process holds the lease on ``url`` and still owns it; for
    code that entered the lease again (and so got None) and is about to publish."""
    with _guard:
        entry = _held.get(_normalize(url))
    if entry is None:
        raise LeaseLost(url, "this process does not hold the lease")
    _check(entry[0])


# ----------------------------------------------------------------------------- taking and releasing


def _acquire(url: str, purpose: str, timeout_s: float, poll_s: float,
             ttl_s: float) -> tuple[_Lease, dict | None]:
    """Create the lease, or take over an expired one, or wait for it; raise ``RootLocked`` when
    ``timeout_s`` has passed."""
    bucket, key = lease_location(url)
    client = _client()
    token = secrets.token_hex(16)
    since = _iso(_now(), "seconds")
    t0 = time.monotonic()
    told = False
    while True:
        holder = _record(purpose, since, token, ttl_s)
        sent = time.monotonic()
        etag = _conditional(client, bucket, key, holder, _put_new)
        if etag:
            return _lease(url, bucket, key, client, ttl_s, holder, etag, sent), None
        current = _get(client, bucket, key)
        if current is None:
            continue  # released between our write and our read: try again at once
        previous, previous_etag, modified = current
        if _expired(previous, modified, ttl_s):
            sent = time.monotonic()
            etag = _conditional(client, bucket, key, holder,
                                functools.partial(_put_if_match, etag=previous_etag))
            if etag:
                log.warning("took over the lease on %s from a holder whose lease expired: %s", url,
                            _describe(previous))
                return _lease(url, bucket, key, client, ttl_s, holder, etag, sent), previous or {}
            current = _get(client, bucket, key)  # another contender won: name it
            if current is None:
                continue  # ... or the lease was released meanwhile: try again at once
            previous = current[0]
        waited = time.monotonic() - t0
        if waited >= timeout_s:
            raise RootLocked(url, previous, waited)  # type: ignore[arg-type]  # the URL is its root
        if not told:
            print(f"spywatch: waiting up to {timeout_s:.0f} s for the lock on {url}, held by "
                  f"{_describe(previous)}", file=sys.stderr, flush=True)
            told = True
        time.sleep(poll_s)


def _lease(url: str, bucket: str, key: str, client: Any, ttl_s: float, holder: dict, etag: str,
           sent: float) -> _Lease:
    return _Lease(url, bucket, key, client, ttl_s, holder, etag, deadline=sent + ttl_s)


def _release(url: str) -> None:
    """Leave one level of re-entry; at the last, stop the heartbeat and delete the lease if it is
    still ours. A failure here is logged, not raised: the lease then expires on its own."""
    with _guard:
        lease, depth = _held[url]
        if depth > 1:
            _held[url] = (lease, depth - 1)
            return
        del _held[url]
    lease.stop.set()
    if lease.thread is not None:
        lease.thread.join(timeout=lease.ttl_s)
    with lease.mutex:
        try:
            _delete_ours(lease)
        except Exception as exc:  # noqa: BLE001 - the block's own outcome matters more
            log.warning("could not release the lease on %s (it expires within %.0f s): %s", url,
                        lease.ttl_s, exc)


def _delete_ours(lease: _Lease) -> None:
    """Delete the lease only if it is the version we last wrote (or, on a store without
    conditional deletes, if it still carries our token)."""
    try:
        _delete_if_match(lease.client, lease.bucket, lease.key, lease.etag)
        return
    except Exception as exc:  # noqa: BLE001 - sorted by its S3 error code below
        code = _code(exc)
        if code in _CONFLICT_CODES or code in _MISSING_CODES:
            if not lease.lost.is_set():
                log.warning("the lease on %s was no longer ours when released (%s): left alone",
                            lease.url, code)
            return
        if code not in _UNSUPPORTED_CODES:
            raise
    current = _get(lease.client, lease.bucket, lease.key)
    if current and current[0] and current[0].get("token") == lease.holder["token"]:
        _delete(lease.client, lease.bucket, lease.key)


# ----------------------------------------------------------------------------- the heartbeat


def _heartbeat(lease: _Lease) -> None:
    """Renew the lease every ttl/3 until released; a failed renewal is retried sooner, and the
    lease is marked lost when the store says it changed or when it expired unrenewed."""
    interval = lease.ttl_s / 3
    wait = interval
    while not lease.stop.wait(wait):
        with lease.mutex:
            if lease.stop.is_set():
                return
            try:
                if not _renew(lease):
                    return  # lost: _renew said so
                wait = interval
            except Exception as exc:  # noqa: BLE001 - a transient failure: retry before the expiry
                if time.monotonic() >= lease.deadline:
                    _mark_lost(lease, f"could not renew it before it expired ({exc})")
                    return
                log.warning("could not renew the lease on %s, retrying: %s", lease.url, exc)
                wait = interval / 4


def _renew(lease: _Lease) -> bool:
    """One renewal; False (and the lease marked lost) when someone else wrote the object."""
    holder = {**lease.holder, "expires": _iso(_now() + dt.timedelta(seconds=lease.ttl_s))}
    sent = time.monotonic()
    try:
        etag = _put_if_match(lease.client, lease.bucket, lease.key, holder, lease.etag)
    except Exception as exc:  # noqa: BLE001 - sorted by its S3 error code below
        code = _code(exc)
        if code in {"ConditionalRequestConflict", "409"}:
            raise  # a concurrent conditional write in flight: retried; the next answer decides
        if code not in _CONFLICT_CODES and code not in _MISSING_CODES:
            raise
        current = _get(lease.client, lease.bucket, lease.key)
        if current and current[0] and current[0].get("token") == holder["token"]:
            etag = current[1]  # our own write landed and its answer was lost (a retried request)
        else:
            _mark_lost(lease, f"it was overwritten by {_describe(current[0])}" if current
                       else "it was deleted by someone else")
            return False
    lease.holder, lease.etag, lease.deadline = holder, etag, sent + lease.ttl_s
    return True


def _mark_lost(lease: _Lease, reason: str) -> None:
    lease.reason = reason
    lease.lost.set()
    log.error("lost the lease on %s: %s; this run must not publish", lease.url, reason)


def _check(lease: _Lease) -> None:
    if lease.lost.is_set():
        raise LeaseLost(lease.url, lease.reason or "lost")
    late = time.monotonic() - lease.deadline
    if late >= 0:
        raise LeaseLost(lease.url, f"it expired {late:.1f} s ago without a confirmed renewal")


# ----------------------------------------------------------------------------- records and time


def _record(purpose: str, since: str, token: str, ttl_s: float) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
            "command": " ".join(sys.argv)[:300], "since": since,
            "expires": _iso(_now() + dt.timedelta(seconds=ttl_s)), "token": token}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime, timespec: str = "milliseconds") -> str:
    return t.isoformat(timespec=timespec)


def _expired(holder: dict | None, modified: dt.datetime | None, ttl_s: float) -> bool:
    """Whether a lease has expired by the local clock. A record without a readable ``expires``
    (not written by spywatch) counts as a lease of ``ttl_s`` from its last modification."""
    try:
        expires = dt.datetime.fromisoformat(holder["expires"])  # type: ignore[index]
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.timezone.utc)
    except (TypeError, KeyError, ValueError):
        if modified is None:
            return False
        expires = modified + dt.timedelta(seconds=ttl_s)
    return _now() >= expires


def _describe(holder: dict | None) -> str:
    if holder and holder.get("expires"):
        return f"{describe(holder)}, lease expires {holder['expires']}"
    return describe(holder)


# ----------------------------------------------------------------------------- the store: one function a verb


@functools.lru_cache(maxsize=8)
def _cached_client(env: tuple[tuple[str, str | None], ...]) -> Any:
    import botocore.session
    from botocore.config import Config

    # A renewal that hangs longer than a lease is useless: bound each request (botocore's default
    # is 60 s); the rest (endpoint, credentials, region, retries) is the standard AWS configuration.
    return botocore.session.get_session().create_client(
        "s3", config=Config(connect_timeout=5, read_timeout=10))


def _client() -> Any:
    """A botocore S3 client, one per process and AWS environment (clients are thread-safe)."""
    names = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
             "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
    return _cached_client(tuple((n, os.environ.get(n)) for n in names))


def _code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (None for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code") or
               response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "") or None


def _body(holder: dict) -> bytes:
    return json.dumps(holder, indent=1).encode()


def _put_new(client: Any, bucket: str, key: str, holder: dict) -> str:
    """PUT the lease if none exists (``If-None-Match: *``); its ETag."""
    return client.put_object(Bucket=bucket, Key=key, Body=_body(holder), IfNoneMatch="*",
                             ContentType="application/json")["ETag"]


def _put_if_match(client: Any, bucket: str, key: str, holder: dict, etag: str) -> str:
    """PUT the lease over the version ``etag`` only (``If-Match``); its new ETag."""
    return client.put_object(Bucket=bucket, Key=key, Body=_body(holder), IfMatch=etag,
                             ContentType="application/json")["ETag"]


def _get(client: Any, bucket: str, key: str) -> tuple[dict | None, str, dt.datetime | None] | None:
    """The lease's record (None if unreadable), ETag and last modification; None if absent."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - sorted by its S3 error code
        if _code(exc) in _MISSING_CODES:
            return None
        raise
    try:
        holder = json.loads(response["Body"].read())
        holder = holder if isinstance(holder, dict) else None
    except ValueError:
        holder = None
    return holder, response["ETag"], response.get("LastModified")


def _delete_if_match(client: Any, bucket: str, key: str, etag: str) -> None:
    """DELETE the lease only if it is the version ``etag`` (``If-Match``)."""
    client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)


def _delete(client: Any, bucket: str, key: str) -> None:
    """DELETE the lease unconditionally (stores without conditional deletes)."""
    client.delete_object(Bucket=bucket, Key=key)


def _conditional(client: Any, bucket: str, key: str, holder: dict, put: Any) -> str | None:
    """Run a conditional ``put``; its ETag, or None when the precondition failed. A failure that
    hides our own success (a request retried after its answer was lost) is recognised by the
    token and counts as the success it was."""
    try:
        return put(client, bucket, key, holder)
    except Exception as exc:  # noqa: BLE001 - sorted by its S3 error code
        if _code(exc) not in _CONFLICT_CODES and _code(exc) not in _MISSING_CODES:
            raise
    current = _get(client, bucket, key)
    if current and current[0] and current[0].get("token") == holder["token"]:
        return current[1]
    return None
