"""Headless Chromium driven over the DevTools protocol, for the tests that look at pages (the
Prefect UI, the HTML audit) the way a person does."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# headless, with everything that could reach the network switched off
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium run once from the command line (``--dump-dom``, ``--screenshot``)."""
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=True)


def ui_screenshot(url: str, png: Path, profile: Path, wait_for: str, click: str | None = None,
                  then_wait_for: str | None = None, size: tuple[int, int] = (1440, 1300), timeout: float = 90.0,
                  clip: str | None = None) -> None:
    """A PNG of a page (the Prefect UI is a single-page app: the command-line ``--screenshot`` fires
    before its data arrives), driven over the DevTools protocol: load ``url``, wait until the page
    shows ``wait_for``, optionally click the tab or button labelled ``click`` and wait for
    ``then_wait_for``, then capture the viewport, or only the element matching the CSS selector
    ``clip`` (wherever it is on the page)."""
    import base64
    import itertools
    import json as _json
    import re
    import urllib.request

    from websockets.sync.client import connect

    proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
            port = found and found.group(1)
        assert port, "chromium did not open its DevTools port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            page = next(t for t in _json.loads(r.read()) if t["type"] == "page")
        ids = itertools.count(1)
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            def call(method: str, **params):  # noqa: ANN202
                n = next(ids)
                ws.send(_json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    message = _json.loads(ws.recv(timeout=timeout))
                    if message.get("id") == n:
                        assert "error" not in message, message
                        return message["result"]

            def wait_text(text: str) -> None:
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    shown = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                                 returnByValue=True)["result"].get("value") or ""
                    if text in shown:
                        return
                    time.sleep(0.5)
                raise AssertionError(f"{url}: {text!r} never appeared on the page")

            call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False)
            call("Page.enable")
            call("Page.navigate", url=url)
            wait_text(wait_for)
            if click:
                script = ("(() => { const el = [...document.querySelectorAll('button, a, [role=tab], li')]"
                          f".find(e => e.textContent.trim() === {_json.dumps(click)}); if (el) el.click(); return !!el; }})()")
                assert call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"], click
                wait_text(then_wait_for or click)
            time.sleep(1.5)  # let the last rows render
            area = {}
            if clip:
                box = call("Runtime.evaluate", returnByValue=True, expression=(
                    f"(() => {{ const r = document.querySelector({_json.dumps(clip)}).getBoundingClientRect(); "
                    "return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()"
                ))["result"]["value"]
                area = {"clip": {**box, "scale": 1}, "captureBeyondViewport": True}
            data = call("Page.captureScreenshot", format="png", **area)["data"]
        png.write_bytes(base64.b64decode(data))
    finally:
        proc.kill()
        proc.wait(timeout=30)
