"""``spywatch serve``: the published outputs over HTTP, read-only, and the links that point at them.

The Prefect UI cannot open ``file://`` links (the browser refuses them from an http page, and on
a remote server they name that server's disk), so the run page links each session's HTML audit
and drift report through a base URL, in this order:

1. ``SPYWATCH_PUBLIC_URL``: where ``ROOT/published`` is served for the people who watch the runs
   (a reverse proxy, an object-store website, or ``spywatch serve`` behind a name);
2. a ``spywatch serve`` running on this host for this root (it records itself in
   ``ROOT/state/serve.json`` while it runs);
3. otherwise ``file://`` (useful only on the machine that ran the night).

The server answers GET and HEAD only (501 to anything else):

- a file is served only when its real path (symlinks followed) lies inside the real path of
  ``ROOT/published``: the ``sessions/<date>`` links into ``.runs/`` work, a link that leads out
  (to ``../models``, to ``/etc/passwd``) gives 404, as does a request path with a hidden component
  (``.runs``, ``.journal.json``, ``..``) and anything that is not a regular file;
- no directory listings: ``/`` is an index page (``latest.json`` and the newest 60 sessions), or
  says nothing is published yet (the server starts on such a root, beside the worker on day 0);
  any other directory gives 404;
- a malformed request path (not absolute, not UTF-8, a NUL or another control character) gives 400;
- every response carries ``Cache-Control: no-cache`` and ``X-Content-Type-Options: nosniff``; text
  and JSON are ``charset=utf-8``;
- a connection that stalls for 10 s (``timeout``) is closed; its thread is a daemon;
- SIGTERM stops it as Ctrl-C does, and ``ROOT/state/serve.json`` goes with it.

A fleet root (``ROOT/tickers/<TICKER>/``, one root per ticker, and ``ROOT/fleet.html``) is served
as the fleet page at ``/`` and each ticker's published outputs under
``/tickers/<TICKER>/published/``, the paths the page links to, under the same rules (contained in
that ticker's ``published/``; the page in the fleet root); the rest of the fleet root (models,
bars, state) is not served. Every ticker root records its part of the URL, so the links of each
ticker's runs in the Prefect UI go through the same server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import json
import os
import signal
import socket
import sys
from dataclasses import asdict, dataclass
from functools import partial
from html import escape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes, urlsplit

from spywatch import names
from spywatch.layout import RootLayout
from spywatch.text import LIMIT, cut

PUBLIC_URL_ENV = "SPYWATCH_PUBLIC_URL"
DEFAULT_PORT = 8765
DEFAULT_TIMEOUT = 10.0  # seconds a connection may stall (an idle keep-alive, a half-sent request)
INDEX_SESSIONS = 60  # sessions listed on the index page
SESSION_FILES = ("report.html", "drift.html", "audit.json")  # linked from the index page


@dataclass(frozen=True)
class ServeRecord:
    """``ROOT/state/serve.json``: a ``spywatch serve`` that serves this root's ``published/``."""

    url: str  # where this root's published/ is served
    pid: int
    host: str
    root: str | None = None
    since: str | None = None  # when the server started (UTC, ISO 8601)

    @classmethod
    def read(cls, path: Path) -> ServeRecord | None:
        """The record at ``path``; None when there is none or it cannot be read."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(url=str(doc["url"]), pid=int(doc["pid"]), host=str(doc["host"]),
                       **{k: doc[k] for k in ("root", "since") if k in doc})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path) -> Path:
        from spywatch.atomic import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(path, asdict(self))

    @property
    def running_here(self) -> bool:
        """Its server is a live process of this host."""
        return self.host == socket.gethostname() and _alive(self.pid)


def public_base(root: Path) -> str | None:
    """The base URL under which ``ROOT/published`` is reachable, or None (see the module doc)."""
    configured = os.environ.get(PUBLIC_URL_ENV, "").strip()
    if configured:
        return configured.rstrip("/")
    running = ServeRecord.read(RootLayout(root).serve_record)
    return running.url.rstrip("/") if running is not None and running.running_here else None


def url_for(root: Path, path: Path) -> str:
    """Link to ``path`` (a file under ``ROOT/published``, e.g. ``sessions/<date>/report.html``)."""
    published = RootLayout(root.absolute()).published
    path = path.absolute()
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
    """Regular files inside one folder (real paths, see the module doc), the index page at ``/``;
    GET and HEAD only (the base class answers 501 to anything else)."""

    server_version = "spywatch-serve"

    def __init__(self, *args, directory: str, layout: RootLayout, timeout: float = DEFAULT_TIMEOUT, **kwargs) -> None:
        self.timeout = timeout  # read by setup(), which the base __init__ runs: set it first
        self.target: str | None = None  # the real path send_file() found, opened by the base send_head()
        self.layout = layout  # the root served (its published/) or the fleet root (its page, its tickers')
        super().__init__(*args, directory=directory, **kwargs)

    def send_head(self):  # noqa: ANN201 - the base class's contract
        path = self.request_path()
        if path is None:
            self.send_error(400, "bad request path")
            return None
        if path == "/":
            return self.send_index()
        parts = [p for p in path.split("/") if p]
        if path.endswith("/") or any(p.startswith(".") for p in parts):  # a directory, a hidden path
            self.send_error(404, "not found")
            return None
        return self.send_file(parts)

    def request_path(self) -> str | None:
        """The request's path, percent-decoded as UTF-8; None when malformed (not absolute, not
        UTF-8, a NUL or another control character)."""
        try:
            raw = urlsplit(self.path).path.encode("latin-1")  # the request line was read as latin-1
            path = unquote_to_bytes(raw).decode("utf-8")
        except ValueError:  # UnicodeError included
            return None
        if not path.startswith("/") or any(c < " " or c == "\x7f" for c in path):
            return None
        return path

    def route(self, parts: list[str]) -> tuple[str, list[str]] | None:
        """(served folder, path segments inside it) for a request, or None: not served."""
        return self.directory, parts

    def send_file(self, parts: list[str]):  # noqa: ANN201 - as send_head
        routed = self.route(parts)
        self.target = contained_file(*routed) if routed else None
        if not self.target:
            self.send_error(404, "not found")
            return None
        return super().send_head()  # opens translate_path(), i.e. self.target; answers If-Modified-Since

    def send_index(self):  # noqa: ANN201 - as send_head
        body = index_page(self.layout).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def translate_path(self, path: str) -> str:
        return self.target

    def list_directory(self, path):  # noqa: ANN001, ANN201 - the base class's signature
        self.send_error(404, "not found")  # never a listing (only reached if a file became a folder)
        return None

    def guess_type(self, path) -> str:  # noqa: ANN001 - the base class's signature
        ctype = super().guess_type(path)
        return f"{ctype}; charset=utf-8" if ctype.startswith("text/") or ctype == "application/json" else ctype

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # the browser revalidates: latest.json changes nightly
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002, ANN002 - the base class's signature
        message = cut((format % args).translate(self._control_char_table), 2 * LIMIT)  # a 20 kB path: one line
        sys.stderr.write(f"{self.address_string()} {message}\n")


class FleetHandler(PublishedHandler):
    """A fleet root: ``/`` is its page (fleet.html), ``/tickers/<T>/published/...`` each ticker's
    published outputs; anything else of the fleet root is not found."""

    def route(self, parts: list[str]) -> tuple[str, list[str]] | None:
        if parts == [self.layout.fleet_page.name]:
            return self.directory, parts
        if len(parts) >= 4 and names.TICKER.match(parts[1]):
            published = self.layout.ticker(parts[1]).published
            if Path(self.directory, *parts[:3]) == published:  # tickers/<T>/published
                return str(published), parts[3:]
        return None

    def send_index(self):  # noqa: ANN201 - as send_head
        return self.send_file([self.layout.fleet_page.name])


def contained_file(folder: str, parts: list[str]) -> str | None:
    """The real path of ``folder/parts...`` (symlinks followed) when it is a regular file inside
    the real path of ``folder``; else None."""
    base = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(base, *parts))
    if os.path.commonpath([base, path]) != base or not os.path.isfile(path):
        return None
    return path


INDEX_STYLE = """body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2433; max-width: 60em; }
table { border-collapse: collapse; } th, td { border-bottom: 1px solid #d8dde6; padding: 5px 10px; text-align: left; }
th { background: #f3f5f9; } .stale { color: #8a2a1f; font-weight: 600; } .muted { color: #5b6475; }"""


def index_page(layout: RootLayout, limit: int = INDEX_SESSIONS) -> str:
    """The page at ``/``: the latest predictions (``latest.json``: ticker, session, P(+1% within h),
    stale or not and why, the report), then the newest ``limit`` sessions' files of the root's
    ``published/``; or that nothing is published yet."""
    from spywatch.latest import LatestRecord

    def served(path: Path) -> str | None:  # the link to a file of published/, when it is served
        relative = path.relative_to(layout.published)
        return quote(relative.as_posix()) if contained_file(str(layout.published), list(relative.parts)) else None

    latest = served(layout.latest)
    title = "spywatch"
    if not latest:
        items = "<p>Nothing is published yet.</p>"
    else:
        record = LatestRecord.read(layout.latest)
        head = ""
        if record is not None:
            title = f"spywatch · {record.ticker or 'SPY'}"
            probs = "".join(f"<tr><td>{escape(h)}</td><td>{p:.1%}</td><td class=muted>"
                            + (f"± {record.member_std[h]:.1%} between members" if h in record.member_std else "")
                            + "</td></tr>" for h, p in record.probabilities.items())
            report = served(layout.published / record.report) if record.report else None
            state = (f'<p class="stale">STALE since {escape(str(record.stale_since))}: {escape(str(record.reason))}</p>'
                     if record.stale else "")
            head = (f"<h2>Latest: session {escape(str(record.session or '—'))}</h2>\n{state}"
                    + (f"<table><tr><th>P(+1% within h sessions)</th><th></th><th></th></tr>{probs}</table>\n"
                       if probs else "")
                    + f'<p>{"<a href=" + chr(34) + report + chr(34) + ">the night&#39;s report</a> · " if report else ""}'
                    f'<a href="{latest}">latest.json</a> (the poller&#39;s contract)'
                    + (" · <span class=muted>synthetic data</span>" if record.synthetic else "") + "</p>\n")
        sessions = layout.sessions
        dates = sorted((n for n in os.listdir(sessions) if not n.startswith(".")), reverse=True) \
            if sessions.is_dir() else []
        rows = []
        for date in dates:
            links = [f'<a href="{href}">{f}</a>' for f in SESSION_FILES if (href := served(layout.session(date) / f))]
            if links:
                rows.append(f"<li>{escape(date)}: {' '.join(links)}</li>")
            if len(rows) == limit:
                break
        listed = "\n".join(rows)
        items = f"{head}<h2>Sessions, newest first</h2>\n<ul>\n{listed}\n</ul>"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{INDEX_STYLE}</style></head>\n<body><h1>{escape(title)}: published</h1>\n{items}\n</body></html>\n")


def is_fleet_root(root: Path) -> bool:
    """A root of ticker roots (``ROOT/tickers/<TICKER>``) that publishes nothing itself."""
    layout = RootLayout(root)
    return layout.tickers.is_dir() and not layout.published.is_dir()


def make_server(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                timeout: float = DEFAULT_TIMEOUT) -> ThreadingHTTPServer:
    """A server for ``ROOT/published`` (which need not exist yet), or for a fleet root (port 0: any
    free port; ``server.server_address`` has it). ``timeout``: seconds a connection may stall."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"--root {root} is not a folder")
    layout = RootLayout(root)
    handler, folder = (FleetHandler, root) if is_fleet_root(root) else (PublishedHandler, layout.published)
    # ThreadingHTTPServer's threads are daemons: a stalled connection never holds the exit
    return ThreadingHTTPServer((host, port), partial(handler, directory=str(folder), layout=layout, timeout=timeout))


def server_url(server: ThreadingHTTPServer, host: str) -> str:
    port = server.server_address[1]
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


def serve(root: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve until Ctrl-C or SIGTERM; while up, record the URL in ``ROOT/state/serve.json`` for the links."""
    root = root.expanduser().resolve()
    server = make_server(root, host, port)
    url = server_url(server, host)
    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    layout, fleet = RootLayout(root), is_fleet_root(root)
    # where each root's published/ is reachable: the root itself, or every ticker root of a fleet
    troots = [layout.ticker(t) for t in layout.ticker_names()] if fleet else [layout]
    served = {t: f"{url}/{quote(t.published.relative_to(root).as_posix())}" if fleet else url for t in troots}
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a stop (systemd's) exits as Ctrl-C does
    try:
        for troot, base in served.items():
            ServeRecord(url=base, pid=os.getpid(), host=socket.gethostname(), root=str(troot.root),
                        since=since).write(troot.serve_record)
        if fleet:
            print(f"serving the fleet {root} read-only at {url}/ (the fleet page; {len(served)} tickers under "
                  f"{url}/tickers/<TICKER>/published/); Ctrl-C stops", flush=True)
        else:
            print(f"serving {layout.published} read-only at {url}/ (latest: {url}/latest.json); Ctrl-C stops",
                  flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        for troot in served:
            record = ServeRecord.read(troot.serve_record)
            if record is not None and record.pid == os.getpid():
                with contextlib.suppress(OSError):
                    troot.serve_record.unlink()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
