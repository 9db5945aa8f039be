"""``spywatch serve``: the published outputs over HTTP, read-only, and the links that point at them.

The Prefect UI cannot open ``file://`` links (the browser refuses them from an http page, and on
a remote server they name that server's disk), so the run page links each session's HTML audit
and drift report through a base URL, in this order:

1. ``SPYWATCH_PUBLIC_URL``: where ``ROOT/published`` is served for the people who watch the runs
   (a reverse proxy, an object-store website, or ``spywatch serve`` behind a name);
2. a ``spywatch serve`` running on this host for this root (it records itself in
   ``ROOT/state/serve.json`` while it runs);
3. otherwise ``file://`` (useful only on the machine that ran the night).

The server serves static files under ``ROOT/published`` with GET and HEAD only; hidden paths
(``.runs``, ``.journal.json``) are not served by name, only through the ``sessions/<date>`` links.

A fleet root (``ROOT/tickers/<TICKER>/``, one root per ticker, and ``ROOT/fleet.html``) is served
as the fleet page at ``/`` and each ticker's published outputs under
``/tickers/<TICKER>/published/``, the paths the page links to; the rest of the fleet root (models,
bars, state) is not served. Every ticker root records its part of the URL, so the links of each
ticker's runs in the Prefect UI go through the same server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import os
import socket
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

PUBLIC_URL_ENV = "SPYWATCH_PUBLIC_URL"
DEFAULT_PORT = 8765


def state_path(root: Path) -> Path:
    return Path(root) / "state" / "serve.json"


def public_base(root: Path) -> str | None:
    """The base URL under which ``ROOT/published`` is reachable, or None (see the module doc)."""
    configured = os.environ.get(PUBLIC_URL_ENV, "").strip()
    if configured:
        return configured.rstrip("/")
    try:
        running = json.loads(state_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if running.get("host") != socket.gethostname() or not _alive(int(running.get("pid", 0))):
        return None
    return str(running["url"]).rstrip("/")


def url_for(root: Path, path: Path) -> str:
    """Link to ``path`` (a file under ``ROOT/published``, e.g. ``sessions/<date>/report.html``)."""
    published = Path(root).absolute() / "published"
    path = Path(path).absolute()
    base = public_base(root)
    if base:
        try:
            relative = path.relative_to(published)
        except ValueError:
            raise ValueError(f"{path} is not under {published}: it cannot be served") from None
        return f"{base}/{quote(relative.as_posix())}"
    return path.as_uri()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class PublishedHandler(SimpleHTTPRequestHandler):
    """Static files of one folder; no hidden path components; GET and HEAD only (the base class
    answers 501 to anything else)."""

    server_version = "spywatch-serve"

    def send_head(self):  # noqa: ANN201 - the base class's contract
        parts = [p for p in unquote(urlsplit(self.path).path).split("/") if p]
        if any(p.startswith(".") for p in parts):
            self.send_error(404, "not found")
            return None
        return super().send_head()

    def log_message(self, format: str, *args) -> None:  # noqa: A002, ANN002 - the base class's signature
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class FleetHandler(PublishedHandler):
    """A fleet root: ``/`` is its page (fleet.html), ``/tickers/<T>/published/...`` each ticker's
    published outputs; anything else of the fleet root is not found."""

    def send_head(self):  # noqa: ANN201 - the base class's contract
        parts = [p for p in unquote(urlsplit(self.path).path).split("/") if p]
        if not parts:
            self.path, parts = "/fleet.html", ["fleet.html"]
        if not (parts == ["fleet.html"] or (len(parts) >= 3 and parts[0] == "tickers" and parts[2] == "published")):
            self.send_error(404, "not found")
            return None
        return super().send_head()


def is_fleet_root(root: Path) -> bool:
    """A root of ticker roots (``ROOT/tickers/<TICKER>``) that publishes nothing itself."""
    return (Path(root) / "tickers").is_dir() and not (Path(root) / "published").is_dir()


def make_server(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server for ``ROOT/published``, or for a fleet root (port 0: any free port;
    ``server.server_address`` has it)."""
    if is_fleet_root(root):
        return ThreadingHTTPServer((host, port), partial(FleetHandler, directory=str(root)))
    published = Path(root) / "published"
    if not published.is_dir():
        raise FileNotFoundError(f"{published} does not exist: nothing has been published under --root {root}")
    return ThreadingHTTPServer((host, port), partial(PublishedHandler, directory=str(published)))


def server_url(server: ThreadingHTTPServer, host: str) -> str:
    port = server.server_address[1]
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def serve(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve until interrupted; while up, record the URL in ``ROOT/state/serve.json`` for the links."""
    from spywatch.atomic import atomic_write_json
    from spywatch.fleet import root_tickers, ticker_root

    root = Path(root).expanduser().resolve()
    server = make_server(root, host, port)
    url = server_url(server, host)
    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    # where each root's published/ is reachable: the root itself, or every ticker root of a fleet
    served = ({ticker_root(root, t): f"{url}/tickers/{quote(t)}/published" for t in root_tickers(root)}
              if is_fleet_root(root) else {root: url})
    for troot, base in served.items():
        record = state_path(troot)
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, {"url": base, "pid": os.getpid(), "host": socket.gethostname(),
                                   "root": str(troot), "since": since})
    if is_fleet_root(root):
        print(f"serving the fleet {root} read-only at {url}/ (the fleet page; {len(served)} tickers under "
              f"{url}/tickers/<TICKER>/published/); Ctrl-C stops", flush=True)
    else:
        print(f"serving {root / 'published'} read-only at {url}/ (latest: {url}/latest.json); Ctrl-C stops",
              flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for troot in served:
            try:
                if json.loads(state_path(troot).read_text(encoding="utf-8")).get("pid") == os.getpid():
                    state_path(troot).unlink()
            except (OSError, ValueError):
                pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the published reports over HTTP (read-only), for the Prefect UI's links")
    p.add_argument("--root", type=Path, default=Path("workspace"), help="the root whose published/ to serve, or a fleet root (its page and every "
                        "ticker's published/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s; 0: any free port)")
    p.set_defaults(func=lambda args: serve(args.root, args.host, args.port) or 0)
