"""Re-render the operator screenshots in docs/ from real runs, with the commands a user types:

1. a SPY night on the project's real data: ``spywatch run --source csv:data/spy_daily.csv
   --as-of 2024-12-31`` -> docs/spy_night.png (the report's first screen);
2. a fleet night on the project's ETF files: ``spywatch run --tickers QQQ,DIA,TLT --source
   csv-dir:DIR --as-of 2024-12-31`` -> docs/fleet_ticker_report.png (QQQ's report) and
   docs/fleet_page.png (the fleet page). DIR holds the three CSVs, TLT's with its last bar's High
   below its Low, so one ticker fails the raw-bars suite and the page shows why;
3. ``spywatch serve --root <SPY root>`` -> docs/serve_index.png (its index at ``/``: the latest
   predictions, the sessions and their reports; a fleet root's ``/`` is the fleet page above).

    .venv/bin/python bench/screenshots.py [--work DIR]     # about 10 minutes on 2 cores

Needs /usr/bin/chromium. What ran, when and at which commit: bench/results/screenshots.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
SPYWATCH = str(Path(sys.executable).with_name("spywatch"))
DOCS = REPO / "docs"
SESSION = "2024-12-31"


def run(args: list[str], log: list[dict]) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run([SPYWATCH, *args], capture_output=True, text=True, cwd=REPO, timeout=3600)
    log.append({"command": "spywatch " + " ".join(args), "rc": proc.returncode,
                "seconds": round(time.monotonic() - start, 1), "stdout_tail": proc.stdout[-1500:]})
    print(f"spywatch {' '.join(args)}: rc {proc.returncode} in {log[-1]['seconds']} s", flush=True)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "screenshots")
    args = parser.parse_args()
    from browser import ui_screenshot
    from machine import machine

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log: list[dict] = []

    spy = work / "spy"
    proc = run(["run", "--source", f"csv:{REPO / 'data' / 'spy_daily.csv'}", "--as-of", SESSION, "--root", str(spy),
                "--no-prefect"], log)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = spy / "published" / "sessions" / SESSION / "report.html"
    ui_screenshot(report.as_uri(), DOCS / "spy_night.png", work / "profile-spy", wait_for="Tonight's predictions",
                  size=(1280, 1400))

    data = work / "etf"
    data.mkdir()
    for ticker in ("QQQ", "DIA"):
        shutil.copyfile(REPO / "data" / "etf" / f"{ticker}.csv", data / f"{ticker}.csv")
    lines = (REPO / "data" / "etf" / "TLT.csv").read_text().splitlines()
    header, last = lines[0].split(","), lines[-1].split(",")
    last[header.index("High")] = str(float(last[header.index("Low")]) - 1.0)  # High below Low on the last bar
    (data / "TLT.csv").write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n")
    fleet = work / "fleet"
    proc = run(["run", "--tickers", "QQQ,DIA,TLT", "--source", f"csv-dir:{data}", "--as-of", SESSION,
                "--root", str(fleet)], log)
    assert proc.returncode == 1 and "TLT" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    qqq = fleet / "tickers" / "QQQ" / "published" / "sessions" / SESSION / "report.html"
    ui_screenshot(qqq.as_uri(), DOCS / "fleet_ticker_report.png", work / "profile-qqq",
                  wait_for="Tonight's predictions", size=(1280, 1400))
    page = fleet / "fleet.html"
    ui_screenshot(page.as_uri(), DOCS / "fleet_page.png", work / "profile-fleet", wait_for="TLT", size=(1280, 700))

    port = free_port()
    serve = subprocess.Popen([SPYWATCH, "serve", "--root", str(spy), "--port", str(port)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ui_screenshot(f"http://127.0.0.1:{port}/", DOCS / "serve_index.png", work / "profile-serve",
                      wait_for=SESSION, size=(1280, 800))
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    log.append({"command": f"spywatch serve --root {spy} --port {port}", "rc": serve.returncode})

    record = {"machine": machine(), "runs": log,
              "screenshots": ["docs/spy_night.png", "docs/fleet_ticker_report.png", "docs/fleet_page.png",
                              "docs/serve_index.png"]}
    out = REPO / "bench" / "results" / "screenshots.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {', '.join(record['screenshots'])} and {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    raise SystemExit(main())
