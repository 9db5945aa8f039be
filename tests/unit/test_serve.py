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

from spywatch.serve import PUBLIC_URL_ENV, make_server, public_base, state_path, url_for

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
    srv = make_server(published, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _get(url: str, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_serves_sessions_through_their_links_and_nothing_hidden_or_writable(server):
    status, body = _get(f"{server}/sessions/{SESSION}/report.html")
    assert status == 200 and b"audit of 2024-06-28" in body
    assert _get(f"{server}/latest.json")[0] == 200
    assert _get(f"{server}/.journal.json")[0] == 404
    assert _get(f"{server}/.runs/{SESSION}.r1/report.html")[0] == 404
    assert _get(f"{server}/sessions/%2e%2e/.journal.json")[0] == 404
    assert _get(f"{server}/sessions/{SESSION}/report.html", method="PUT")[0] == 501
    assert _get(f"{server}/sessions/{SESSION}/report.html", method="DELETE")[0] == 501


def test_refuses_a_root_with_nothing_published(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing has been published"):
        make_server(tmp_path, "127.0.0.1", 0)


def test_links_use_the_public_url_then_a_running_server_then_file(published, monkeypatch):
    report = published / "published" / "sessions" / SESSION / "report.html"
    monkeypatch.delenv(PUBLIC_URL_ENV, raising=False)
    assert public_base(published) is None and url_for(published, report) == report.absolute().as_uri()

    state_path(published).parent.mkdir(parents=True)
    record = {"url": "http://127.0.0.1:9999", "pid": os.getpid(), "host": socket.gethostname()}
    state_path(published).write_text(json.dumps(record))
    assert url_for(published, report) == f"http://127.0.0.1:9999/sessions/{SESSION}/report.html"

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    state_path(published).write_text(json.dumps({**record, "pid": int(dead.stdout)}))
    assert url_for(published, report).startswith("file://")  # a server that is gone is not linked

    monkeypatch.setenv(PUBLIC_URL_ENV, "https://spywatch.example.org/spy/")
    assert url_for(published, report) == f"https://spywatch.example.org/spy/sessions/{SESSION}/report.html"
    with pytest.raises(ValueError, match="not under"):
        url_for(published, published / "models" / "x.html")


def test_spywatch_serve_records_its_url_while_up_and_removes_it_on_exit(published):
    proc = subprocess.Popen([sys.executable, "-m", "spywatch", "serve", "--root", str(published), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not state_path(published).exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        url = json.loads(state_path(published).read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        assert public_base(published) == url
        status, body = _get(f"{url}/sessions/{SESSION}/report.html")
        assert status == 200 and b"audit of" in body
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=30)
    assert "serving" in out and proc.returncode == 0, (out, err)
    assert not state_path(published).exists()


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


def test_spywatch_serve_on_a_fleet_root_records_each_tickers_url_for_its_run_links(fleet_root, monkeypatch):
    monkeypatch.delenv(PUBLIC_URL_ENV, raising=False)
    spy = fleet_root / "tickers" / "SPY"
    proc = subprocess.Popen([sys.executable, "-m", "spywatch", "serve", "--root", str(fleet_root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not state_path(fleet_root / "tickers" / "QQQ").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        link = url_for(spy, spy / "published" / "sessions" / SESSION / "report.html")  # as a SPY run page links it
        assert link.startswith("http://127.0.0.1:") and link.endswith(f"/tickers/SPY/published/sessions/{SESSION}/report.html")
        status, body = _get(link)
        assert status == 200 and b"SPY audit" in body
        assert not state_path(fleet_root).exists()  # the fleet root publishes nothing itself
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "serving the fleet" in out and proc.returncode == 0, (out, err)
    assert not state_path(spy).exists() and not state_path(fleet_root / "tickers" / "QQQ").exists()
