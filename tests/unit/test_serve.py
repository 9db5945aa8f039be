"""``spywatch serve``: the published folder over HTTP, read-only, and the links that point at it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from spywatch.cli import main
from spywatch.layout import RootLayout
from spywatch.serve import PUBLIC_URL_ENV, index_page, make_server, public_base, url_for

SESSION = "2024-06-28"


@pytest.fixture
def published(tmp_path):
    """The publisher's layout: a hidden run folder behind the ``sessions/<date>`` link."""
    root = tmp_path / "root"
    run = root / "published" / ".runs" / f"{SESSION}.r1"
    run.mkdir(parents=True)
    (run / "report.html").write_text("<html>audit of 2024-06-28</html>")
    (root / "published" / "sessions").mkdir()
    (root / "published" / "sessions" / SESSION).symlink_to(Path("..") / ".runs" / f"{SESSION}.r1")
    (root / "published" / ".journal.json").write_text("{}")
    (root / "published" / "latest.json").write_text(json.dumps({"session": SESSION}))
    return root


@pytest.fixture
def server(published):
    with _running(published) as url:
        yield url


class _running:
    """A server for ``root`` in a thread, as a context manager giving its URL."""

    def __init__(self, root, **kwargs):
        self.srv = make_server(root, "127.0.0.1", 0, **kwargs)

    def __enter__(self) -> str:
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.srv.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def _fetch(url: str, method: str = "GET"):  # noqa: ANN202 - (status, headers as a Message, body)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, b""


def _get(url: str, method: str = "GET") -> tuple[int, bytes]:
    status, _, body = _fetch(url, method)
    return status, body


def _raw(url: str, target: bytes) -> int:
    """The status of ``GET <target>`` sent as it is (urllib would normalise some paths)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_serves_sessions_through_their_links_and_nothing_hidden_or_writable(server):
    status, body = _get(f"{server}/sessions/{SESSION}/report.html")
    assert status == 200 and b"audit of 2024-06-28" in body
    assert _get(f"{server}/latest.json")[0] == 200
    assert _get(f"{server}/.journal.json")[0] == 404
    assert _get(f"{server}/.runs/{SESSION}.r1/report.html")[0] == 404
    assert _get(f"{server}/sessions/%2e%2e/.journal.json")[0] == 404
    assert _get(f"{server}/sessions/{SESSION}/report.html", method="PUT")[0] == 501
    assert _get(f"{server}/sessions/{SESSION}/report.html", method="DELETE")[0] == 501


def test_starts_on_a_root_with_nothing_published_and_refuses_a_file_as_root(tmp_path, capsys):
    root = tmp_path / "day0"  # not even created yet
    with _running(root) as url:
        status, headers, body = _fetch(f"{url}/")
        assert status == 200 and b"Nothing is published yet" in body
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert _get(f"{url}/latest.json")[0] == 404
        (root / "published").mkdir(parents=True)  # the first night publishes, the server stays up
        (root / "published" / "latest.json").write_text(json.dumps({"session": SESSION}))
        status, body = _get(f"{url}/")
        assert status == 200 and b'href="latest.json"' in body and b"Nothing is published" not in body
        assert _get(f"{url}/latest.json")[0] == 200

    not_a_root = tmp_path / "root.txt"
    not_a_root.write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        make_server(not_a_root, "127.0.0.1", 0)
    assert main(["serve", "--root", str(not_a_root), "--port", "0"]) == 2  # a usage error
    assert "is not a folder" in capsys.readouterr().err


def test_symlinks_that_lead_out_of_the_served_folder_are_not_served(published, tmp_path):
    (published / "models").mkdir()
    (published / "models" / "champion.json").write_text('{"secret": 1}')
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    pub = published / "published"
    (pub / "models").symlink_to(Path("..") / "models")
    (pub / "champion.json").symlink_to(Path("..") / "models" / "champion.json")
    (pub / "outside.txt").symlink_to(outside)  # absolute, like /etc/passwd
    (pub / "passwd").symlink_to("/etc/passwd")
    (pub / "sessions" / "2024-06-27").symlink_to(Path("..") / ".." / "models")  # a session link leading out
    (pub / "inside.json").symlink_to("latest.json")  # a link that stays inside is a file like any other
    with _running(published) as url:
        assert _get(f"{url}/sessions/{SESSION}/report.html")[0] == 200
        assert _get(f"{url}/inside.json")[0] == 200
        for path in ("models/champion.json", "champion.json", "outside.txt", "passwd", "sessions/2024-06-27/champion.json"):
            assert _get(f"{url}/{path}")[0] == 404, path
        assert b"2024-06-27" not in _get(f"{url}/")[1]  # nor listed on the index page


def test_directories_are_never_listed_and_slash_is_the_index_of_sessions(published):
    pub = published / "published"
    older = pub / ".runs" / "2024-06-27.r3"
    older.mkdir()
    (older / "report.html").write_text("<html>older</html>")
    (older / "drift.html").write_text("<html>drift</html>")
    (pub / "sessions" / "2024-06-27").symlink_to(Path("..") / ".runs" / "2024-06-27.r3")
    (pub / "sessions" / "index.html").write_text("not an index")  # not served in place of a listing either
    with _running(published) as url:
        status, headers, body = _fetch(f"{url}/")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        page = body.decode("utf-8")
        assert 'href="latest.json"' in page and "Directory listing" not in page and ".runs" not in page
        assert page.index(f'href="sessions/{SESSION}/report.html"') < page.index('href="sessions/2024-06-27/report.html"')
        assert 'href="sessions/2024-06-27/drift.html"' in page and f'href="sessions/{SESSION}/drift.html"' not in page
        status, head, nothing = _fetch(f"{url}/", method="HEAD")
        assert (status, head["Content-Length"], nothing) == (200, str(len(body)), b"")
        for folder in ("sessions", "sessions/", f"sessions/{SESSION}", f"sessions/{SESSION}/", "latest.json/"):
            assert _get(f"{url}/{folder}")[0] == 404, folder
    # the latest predictions first: the session, each horizon's probability, the report's link
    from spywatch.latest import LATEST_FORMAT, LatestRecord

    LatestRecord(format=LATEST_FORMAT, ticker="QQQ", session=SESSION, probabilities={"h1": 0.1234, "h3": 0.4},
                 member_std={"h1": 0.01}, path=f"sessions/{SESSION}",
                 report=f"sessions/{SESSION}/report.html").write(pub / "latest.json")
    page = index_page(RootLayout(published))
    assert "<title>spywatch · QQQ</title>" in page and "± 1.0% between members" in page
    latest = json.loads((pub / "latest.json").read_text())
    assert f"Latest: session {latest['session']}" in page, page
    for h, p in latest["probabilities"].items():
        assert f"<td>{h}</td><td>{p:.1%}</td>" in page
    assert page.index(f'href="{latest["report"]}"') < page.index("Sessions, newest first")
    newest_only = index_page(RootLayout(published), limit=1)
    assert SESSION in newest_only and "2024-06-27" not in newest_only


def test_a_connection_that_stalls_is_closed_after_the_timeout(published):
    running = _running(published, timeout=1)
    assert running.srv.daemon_threads  # nor does a stalled connection hold the process at exit
    with running as url:
        port = int(url.rsplit(":", 1)[1])
        for sent in (b"", b"GET /lat"):  # nothing at all; half a request line
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(sent)
                started = time.monotonic()
                assert sock.recv(1024) == b""  # closed by the server, not by our 10 s
                assert time.monotonic() - started < 5
        assert _get(f"{url}/latest.json")[0] == 200


def test_responses_are_not_cached_not_sniffed_and_name_their_charset(published):
    run = published / "published" / ".runs" / f"{SESSION}.r1"
    (run / "predictions.csv").write_text("session,probability\n")
    (run / "notes.txt").write_text("notes")
    with _running(published) as url:
        for path, ctype in (("latest.json", "application/json; charset=utf-8"),
                            (f"sessions/{SESSION}/report.html", "text/html; charset=utf-8"),
                            (f"sessions/{SESSION}/predictions.csv", "text/csv; charset=utf-8"),
                            (f"sessions/{SESSION}/notes.txt", "text/plain; charset=utf-8"),
                            ("", "text/html; charset=utf-8")):
            status, headers, _ = _fetch(f"{url}/{path}")
            assert (status, headers["Content-Type"]) == (200, ctype), path
            assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff", path
        status, headers, _ = _fetch(f"{url}/.journal.json")
        assert status == 404 and headers["X-Content-Type-Options"] == "nosniff"


def test_malformed_paths_get_400_and_dot_dot_never_escapes_without_a_traceback(published, capsys):
    (published / "models").mkdir()
    (published / "models" / "x").write_text("model")
    with _running(published) as url:
        assert _get(f"{url}/latest.json%00")[0] == 400
        for target in (b"/latest.json%00", b"/a%00b", b"/%ff", b"/lat\x01est.json", b"latest.json", b"*",
                       b"http://[/latest.json"):
            assert _raw(url, target) == 400, target
        for target in (b"/../models/x", b"/%2e%2e/%2e%2e/etc/passwd", b"/sessions/../../models/x",
                       b"/sessions/%2e%2e/%2e%2e/models/x", f"/sessions/{SESSION}/..%2f..%2f..%2fmodels/x".encode(),
                       b"/../../../../../../etc/passwd", b"//etc/passwd", b"/./latest.json"):
            assert _raw(url, target) == 404, target
        assert _raw(url, b"/latest.json?x=1") == 200 and _raw(url, b"http://host/latest.json") == 200
    err = capsys.readouterr().err
    assert "Traceback" not in err and '" 400 ' in err and "\x00" not in err


def test_links_use_the_public_url_then_a_running_server_then_file(published, monkeypatch):
    report = published / "published" / "sessions" / SESSION / "report.html"
    monkeypatch.delenv(PUBLIC_URL_ENV, raising=False)
    assert public_base(published) is None and url_for(published, report) == report.absolute().as_uri()

    RootLayout(published).serve_record.parent.mkdir(parents=True)
    record = {"url": "http://127.0.0.1:9999", "pid": os.getpid(), "host": socket.gethostname()}
    RootLayout(published).serve_record.write_text(json.dumps(record))
    assert url_for(published, report) == f"http://127.0.0.1:9999/sessions/{SESSION}/report.html"

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    RootLayout(published).serve_record.write_text(json.dumps({**record, "pid": int(dead.stdout)}))
    assert url_for(published, report).startswith("file://")  # a server that is gone is not linked

    monkeypatch.setenv(PUBLIC_URL_ENV, "https://spywatch.example.org/spy/")
    assert url_for(published, report) == f"https://spywatch.example.org/spy/sessions/{SESSION}/report.html"
    with pytest.raises(ValueError, match="not under"):
        url_for(published, published / "models" / "x.html")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_spywatch_serve_records_its_url_while_up_and_removes_it_on_exit(published, stop):
    proc = subprocess.Popen([sys.executable, "-m", "spywatch", "serve", "--root", str(published), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not RootLayout(published).serve_record.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        url = json.loads(RootLayout(published).serve_record.read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        assert public_base(published) == url
        status, body = _get(f"{url}/sessions/{SESSION}/report.html")
        assert status == 200 and b"audit of" in body
    finally:
        proc.send_signal(stop)  # Ctrl-C, or a stop by systemd
        out, err = proc.communicate(timeout=30)
    assert "serving" in out and proc.returncode == 0, (out, err)
    assert not RootLayout(published).serve_record.exists()


@pytest.fixture
def fleet_root(tmp_path):
    """A fleet's layout: ticker roots under tickers/, the fleet page beside them; the published
    files are placeholders (what is tested is which paths are served)."""
    root = tmp_path / "fleet"
    for ticker in ("QQQ", "SPY"):
        troot = root / "tickers" / ticker
        (troot / "published" / "sessions" / SESSION).mkdir(parents=True)
        (troot / "published" / "sessions" / SESSION / "report.html").write_text(f"<html>{ticker} audit</html>")
        (troot / "published" / ".journal.json").write_text("{}")
        (troot / "models").mkdir()
        (troot / "models" / "champion.json").write_text("{}")
    (root / "fleet.html").write_text('<a href="tickers/SPY/published/sessions/2024-06-28/report.html">audit</a>')
    return root


def test_a_fleet_root_serves_its_page_and_each_tickers_published_outputs_only(fleet_root):
    srv = make_server(fleet_root, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        status, body = _get(f"{url}/")
        assert status == 200 and b"tickers/SPY/published" in body  # the fleet page
        assert _get(f"{url}/fleet.html")[0] == 200
        status, body = _get(f"{url}/tickers/SPY/published/sessions/{SESSION}/report.html")  # the page's link
        assert status == 200 and b"SPY audit" in body
        for hidden in ("tickers/SPY/models/champion.json", "tickers/SPY/published/.journal.json",
                       "tickers/SPY/published/%2e%2e/models/champion.json", "tickers/SPY", "tickers", "models"):
            assert _get(f"{url}/{hidden}")[0] == 404, hidden
        assert _get(f"{url}/fleet.html", method="PUT")[0] == 501
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_fleet_root_serves_each_ticker_only_what_lies_inside_its_published_folder(fleet_root):
    spy = fleet_root / "tickers" / "SPY" / "published"
    (spy / "models").symlink_to(Path("..") / "models")
    (spy / "qqq").symlink_to(Path("..") / ".." / "QQQ" / "published")  # inside the fleet root, not SPY's
    (spy / "page.html").symlink_to(Path("..") / ".." / ".." / "fleet.html")
    (fleet_root / "tickers" / "SPY" / "fleet.html").write_text("not the page")
    srv = make_server(fleet_root, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert _get(f"{url}/tickers/QQQ/published/sessions/{SESSION}/report.html")[0] == 200
        for leaked in ("models/champion.json", f"qqq/sessions/{SESSION}/report.html", "page.html"):
            assert _get(f"{url}/tickers/SPY/published/{leaked}")[0] == 404, leaked
        for folder in ("tickers/SPY/published/", f"tickers/SPY/published/sessions/{SESSION}/"):
            assert _get(f"{url}/{folder}")[0] == 404, folder
    finally:
        srv.shutdown()
        srv.server_close()


def test_spywatch_serve_on_a_fleet_root_records_each_tickers_url_for_its_run_links(fleet_root, monkeypatch):
    monkeypatch.delenv(PUBLIC_URL_ENV, raising=False)
    spy = fleet_root / "tickers" / "SPY"
    proc = subprocess.Popen([sys.executable, "-m", "spywatch", "serve", "--root", str(fleet_root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not RootLayout(spy).serve_record.exists():  # the last written (tickers in order), the one read
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        link = url_for(spy, spy / "published" / "sessions" / SESSION / "report.html")  # as a SPY run page links it
        assert link.startswith("http://127.0.0.1:") and link.endswith(f"/tickers/SPY/published/sessions/{SESSION}/report.html")
        status, body = _get(link)
        assert status == 200 and b"SPY audit" in body
        assert not RootLayout(fleet_root).serve_record.exists()  # the fleet root publishes nothing itself
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "serving the fleet" in out and proc.returncode == 0, (out, err)
    assert not RootLayout(spy).serve_record.exists() and not RootLayout(fleet_root / "tickers" / "QQQ").serve_record.exists()


def test_a_huge_request_path_is_logged_cut(server, capsys):
    assert _get(f"{server}/{'a' * 20_000}")[0] == 404
    time.sleep(0.1)  # the handler logs after it answered
    log = capsys.readouterr().err
    assert "[20,0" in log and max(len(line) for line in log.splitlines()) < 1_000
