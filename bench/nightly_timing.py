"""Wall time of `spywatch run` (the Prefect nightly flow on its self-started local server), the way
an operator runs it: a fresh process each time, Prefect's start included.

    .venv/bin/python bench/nightly_timing.py            # real SPY (csv), the default PatchTST
    .venv/bin/python bench/nightly_timing.py --tiny     # the tiny test model (a quick smoke run)

Set-up (timed, reported apart): the first night on an empty root fetches 1993..2024-06-28 and
trains the first champion. Then, each in a fresh `spywatch run` process:
- nights without retraining (`--retrain never`) for the next month-ends: the first one also pays
  the Prefect database's creation under <root>/prefect (cold), the others are warm;
- one night with retraining (`--retrain inline`) where the decision says retrain (the champion is
  older than the 90-day limit).
Per night: the wall time outside the process, the command's own split (Prefect start + imports vs
the flow) and the audit's per-stage `timings`. Results: bench/results/nightly_timing.md (+ .json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
SPYWATCH = str(Path(sys.executable).with_name("spywatch"))
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}
SPLIT = re.compile(r"wall time: ([\d.]+) s = Prefect start and imports ([\d.]+) s \+ flow ([\d.]+) s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "spy_daily.csv")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out" / "nightly_timing")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "nightly_timing.md")
    args = parser.parse_args()
    from machine import machine

    from spywatch.pipeline import PipelineConfig, run_nightly

    source = f"csv:{args.data.resolve()}"
    root = args.root.resolve()
    if root.exists():
        shutil.rmtree(root)
    model = TINY if args.tiny else {}
    t0 = time.perf_counter()
    first = run_nightly(PipelineConfig(source=source, root=root, as_of="2024-06-28", model=model,
                                       max_epochs=2 if args.tiny else None))
    setup_s = time.perf_counter() - t0
    if not first.ok:
        print(first.summary(), file=sys.stderr)
        print("the first champion was not promoted: no night can predict", file=sys.stderr)
        return 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    nights = []
    for as_of, retrain, label in (("2024-07-31", "never", "no retrain, cold Prefect home"),
                                  ("2024-08-30", "never", "no retrain, warm"),
                                  ("2024-09-30", "never", "no retrain, warm"),
                                  ("2024-10-31", "inline", "with retraining")):
        nights.append(_night(source, root, as_of, retrain, label, env))
        print(json.dumps(nights[-1]), flush=True)
    info = machine()
    load = os.getloadavg()
    result = {"machine": info, "load_average_end": load, "model": "tiny" if args.tiny else "default",
              "setup_seconds": round(setup_s, 1), "setup_timings": first.audit["timings"], "nights": nights}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    args.out.write_text(_markdown(result, args))
    print(f"wrote {args.out}")
    return 0


def _night(source: str, root: Path, as_of: str, retrain: str, label: str, env: dict) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run([SPYWATCH, "run", "--source", source, "--as-of", as_of, "--root", str(root),
                          "--retrain", retrain], env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"spywatch run --as-of {as_of} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    split = SPLIT.search(out.stdout)
    audit = json.loads((root / "published" / "sessions" / as_of / "audit.json").read_text())
    return {"as_of": as_of, "label": label, "retrain": retrain, "wall_s": round(wall, 2),
            "start_and_imports_s": float(split.group(2)) if split else None,
            "flow_s": float(split.group(3)) if split else None, "load_before": round(load, 2),
            "decision": [r["code"] for r in (audit.get("decision") or {}).get("reasons", [])],
            "promoted": (audit.get("retrain") or {}).get("promoted"), "timings": audit["timings"]}


def _markdown(r: dict, args: argparse.Namespace) -> str:
    m = r["machine"]
    stages = sorted({k for n in r["nights"] for k in n["timings"]},
                    key=lambda k: ["fetch_validate", "features", "load_champion", "validate_features", "predict_audit",
                                   "drift", "retrain", "publish"].index(k) if k in
                    ["fetch_validate", "features", "load_champion", "validate_features", "predict_audit", "drift",
                     "retrain", "publish"] else 99)
    lines = ["# Nightly run timing (`spywatch run`, Prefect included)", "",
             f"- ran: `python bench/nightly_timing.py{' --tiny' if args.tiny else ''}`, {m['date']}; git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores, shared with other work (load average at the end "
             f"{r['load_average_end'][0]:.1f}/{r['load_average_end'][1]:.1f}/{r['load_average_end'][2]:.1f}); "
             f"torch {m.get('torch')}, CUDA {m.get('cuda')}",
             f"- data: real SPY (`csv:` {args.data.name}, read in place); model: {r['model']} PatchTST",
             f"- set-up, not in the table: the first night on an empty root (fetch 1993..2024-06-28, validate, train "
             f"and promote the first champion, publish) took {r['setup_seconds']} s "
             f"(stages: {', '.join(f'{k} {v}' for k, v in r['setup_timings'].items())})",
             "- each night: a fresh `spywatch run` process (interpreter, imports, its own `prefect server start` on "
             "127.0.0.1, the flow, the server's stop); `wall` is measured outside the process", "",
             "| night | kind | load before | wall (s) | Prefect start + imports (s) | flow (s) | "
             + " | ".join(stages) + " | decision |",
             "|---|---|---|---|---|---|" + "---|" * len(stages) + "---|"]
    for n in r["nights"]:
        cells = " | ".join(f"{n['timings'].get(k, '')}" for k in stages)
        decision = ", ".join(n["decision"]) or "keep"
        if n["retrain"] == "never" and n["decision"]:
            decision += " (not retrained: --retrain never)"
        elif n["promoted"] is not None:
            decision += f" (promoted: {n['promoted']})"
        lines.append(f"| {n['as_of']} | {n['label']} | {n['load_before']} | **{n['wall_s']}** | "
                     f"{n['start_and_imports_s']} | {n['flow_s']} | {cells} | {decision} |")
    lines += ["", "Stage columns are the audit's `timings` (seconds inside the pipeline stages); the flow's other "
              "time is Prefect's bookkeeping (task runs, artifacts, events) and the stages' imports not preloaded.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
