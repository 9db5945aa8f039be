"""What one machine does for a fleet: the nightly-fleet flow on 1, 4 and all 13 tickers.

SPY (``data/spy_daily.csv``) and the 12 ETFs of ``data/etf/`` are read in place
through a ``csv-dir`` folder of links (made under bench/out, not committed). For each fleet size:
a first night with no champions (every ticker trains its own: the default model and policy,
inline) on 2024-11-29, then the next night (2024-12-31) on the same roots, each as one run of the
``nightly-fleet`` flow on a temporary Prefect server and a Dask ``LocalCluster`` of ``--workers``
single-threaded workers. Records wall time per night and per ticker, retrains, and how many
published.

    .venv/bin/python bench/fleet_timing.py [--workers 2] [--sizes 1,4,13]   # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.layout import RootLayout  # noqa: E402
from spywatch.registry import ModelRegistry  # noqa: E402

SHARED = REPO / "data"
ORDER = ["SPY", "QQQ", "IWM", "DIA", "EFA", "EEM", "TLT", "GLD", "XLK", "XLF", "XLE", "XLV", "XLU"]
NIGHTS = ("2024-11-29", "2024-12-31")


def data_dir(out: Path) -> Path:
    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for t in ORDER:
        link = folder / f"{t}.csv"
        if not link.exists():
            link.symlink_to(SHARED / "spy_daily.csv" if t == "SPY" else SHARED / "etf" / f"{t}.csv")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sizes", default="1,4,13")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fleet_timing")
    args = ap.parse_args()
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.fleet import nightly_fleet
    from spywatch import fleet

    work = REPO / "bench" / "out" / "fleet"
    shutil.rmtree(work, ignore_errors=True)
    source = f"csv-dir:{data_dir(work)}"
    results = []
    with prefect_test_harness(server_startup_timeout=120):
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the Dask workers are other processes
        for size in [int(s) for s in args.sizes.split(",")]:
            tickers = ORDER[:size]
            root = work / f"fleet{size}"
            for night in NIGHTS:
                t0 = time.perf_counter()
                state = nightly_fleet(root=str(root), tickers=tickers, as_of=night, source=source,
                                      retrain_mode="inline", n_workers=args.workers, return_state=True)
                wall = time.perf_counter() - t0
                rows = fleet.fleet_rows(root, tickers)
                registries = [ModelRegistry(RootLayout(root).ticker(t).models).versions_dir for t in tickers]
                versions = sum(len(list(folder.iterdir())) for folder in registries if folder.is_dir())
                decided = [r.decision for r in rows]
                results.append({"tickers": size, "night": night, "state": state.type.value, "wall_seconds": round(wall, 1),
                                "seconds_per_ticker": round(wall / size, 1),
                                "published": sum(r.status == "published" for r in rows),
                                "retrained": sum(d == "retrain" for d in decided), "model_versions": versions})
                print(json.dumps(results[-1]), flush=True)
    out = {"command": "python bench/fleet_timing.py " + " ".join(sys.argv[1:]), "machine": machine(),
           "workers": args.workers, "nights": NIGHTS, "results": results}
    atomic_write_json(args.out.with_suffix(".json"), out)
    m = out["machine"]
    lines = ["# The fleet on one machine (bench/fleet_timing.py)", "",
             f"- ran: `{out['command']}`, {m['date']}, git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, torch {m.get('torch')}; Dask LocalCluster of "
             f"{args.workers} single-threaded workers; a temporary Prefect server (SQLite)",
             f"- per fleet size: the first night ({NIGHTS[0]}, no champions: every ticker trains the default model, "
             f"2 members) then the next ({NIGHTS[1]}, same roots); SPY and the ETFs read in place (csv-dir)", "",
             "| tickers | night | run | wall s | s per ticker | published | retrained |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['tickers']} | {r['night']} | {r['state']} | {r['wall_seconds']} | {r['seconds_per_ticker']} | "
                     f"{r['published']} | {r['retrained']} |")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
