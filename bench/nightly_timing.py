"""Wall time of `spywatch run` (the Prefect nightly flow on its self-started local server), the way
an operator runs it: a fresh process each time, Prefect's start included.

    .venv/bin/python bench/nightly_timing.py            # real SPY (csv), the default PatchTST
    .venv/bin/python bench/nightly_timing.py --tiny     # smoke run: a tiny first champion (the
                                                        # retraining night still trains the default
                                                        # model: `spywatch run` has no model flag)

Set-up (timed, reported apart): the first night on an empty root fetches 1993..2024-06-28 and
trains the first champion. Then, each in a fresh `spywatch run` process:
- six nights without retraining (`--retrain never`), July to mid-October 2024: the first one also
  pays the Prefect database's creation under <root>/prefect (cold), the others are warm;
- one of the same nights started the naive way (the flow called from a bare `python -c`), for
  comparison;
- one night with retraining (`--retrain inline`) where the decision says retrain (the champion is
  older than the 90-day limit).
Per night: the wall time outside the process, the command's own split (Prefect start + imports vs
the flow) and the audit's per-stage `timings`. Results: bench/results/nightly_timing.md (+ .json);
`--render` rewrites the markdown from the JSON without measuring again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
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
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the markdown from the recorded JSON (no measuring)")
    args = parser.parse_args()
    if args.render:
        recorded = json.loads(args.out.with_suffix(".json").read_text())
        args.out.write_text(_markdown(recorded, argparse.Namespace(**{**vars(args), "tiny": recorded["model"] == "tiny"})))
        print(f"wrote {args.out} from {args.out.with_suffix('.json')}")
        return 0
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
                                  ("2024-08-15", "never", "no retrain, warm"),
                                  ("2024-08-30", "never", "no retrain, warm"),
                                  ("2024-09-13", "naive", "no retrain, naive start (before)"),
                                  ("2024-09-16", "never", "no retrain, warm"),
                                  ("2024-09-30", "never", "no retrain, warm"),
                                  ("2024-10-15", "never", "no retrain, warm"),
                                  ("2024-10-31", "inline", "with retraining")):
        run = _naive_night if retrain == "naive" else _night
        nights.append(run(source, root, as_of, retrain, label, env))
        print(json.dumps(nights[-1]), flush=True)
    info = machine()
    load = os.getloadavg()
    result = {"machine": info, "load_average_end": load, "model": "tiny" if args.tiny else "default",
              "setup_seconds": round(setup_s, 1), "setup_timings": first.audit["timings"], "nights": nights}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    args.out.write_text(_markdown(result, args))
    print(f"wrote {args.out}")
    return 0


def _naive_night(source: str, root: Path, as_of: str, retrain: str, label: str, env: dict) -> dict:
    """The same flow called the plain way: Prefect starts its own temporary server at the first
    call (in this process's thread) and every library is imported inside the task that needs it."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from flows.nightly import nightly; "
            f"s = nightly(root={str(root)!r}, as_of={as_of!r}, source={source!r}, retrain_mode='never', "
            f"return_state=True); sys.exit(0 if s.is_completed() else 1)")
    naive_env = {**env, "PREFECT_HOME": str(root / "prefect-naive"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False"}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=naive_env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"naive night {as_of} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    audit = json.loads((root / "published" / "sessions" / as_of / "audit.json").read_text())
    return {"as_of": as_of, "label": label, "retrain": "never", "wall_s": round(wall, 2), "start_and_imports_s": None,
            "flow_s": None, "load_before": round(load, 2),
            "decision": [r["code"] for r in (audit.get("decision") or {}).get("reasons", [])],
            "promoted": None, "train_seconds": None, "timings": audit["timings"]}


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
            "promoted": (audit.get("retrain") or {}).get("promoted"),
            "train_seconds": (audit.get("retrain") or {}).get("train_seconds"), "timings": audit["timings"]}


WHERE_THE_TIME_GOES = """## Where the time of a warm night goes, and what was cut

Measured on the machine above (an idle 2.1 GHz Xeon: `import evidently` alone takes 6.9 s here, a
warm `prefect server start` 5.5 s to healthy) by timing the pieces apart and a cProfile of the
stages run in-process:

- **Start, ~12-14 s, on the imports' critical path.** `spywatch run` starts `prefect server start`
  as a process of its own *first*, then imports what the stages need (Evidently ~3.9 s of which
  ~3.1 s is `evidently.descriptors`, pulled in by `import evidently` itself; Great Expectations
  ~2.1 s; torch ~1.5 s; Prefect ~1.1 s; pandas, scikit-learn and nltk through Evidently) while it
  boots; the server's boot runs on the other core. Before, the flow was called directly and each
  library was imported inside the first task needing it, one after the other (the naive row).
- **Flow, ~11 s:** stages ~6.5 s: Evidently ~2.8 s (three `Report.run`: the window against the
  training reference, against its recent past, and the predictions), Great Expectations ~2.5 s
  (`validate_features` ~1.5 s for 102 expectations, most of it GX building each expectation's
  metric graph, and the raw-bars suite inside `fetch_validate` ~1 s), `predict_audit` ~0.6 s;
  publishing ~0.8 s (HTML audit, Evidently HTML, parquet); and Prefect's bookkeeping ~4 s (about
  0.3 s of API calls per task run, 12 task runs, 4 artifacts and the events).
- **Outside the process' own clock, ~3 s:** interpreter start and the CLI's imports, and
  stopping the server (SIGINT, ~1 s, waited for so that nothing outlives the command).
- **Cut:** the Random Forest and logistic decay baselines are fitted on the champion's training
  period once per champion and kept as arrays in `<root>/cache/baselines.npz` (`predict_audit`
  2.5 s -> 0.6 s); libraries load while the server boots instead of inside the tasks (the naive
  row: 44.5 s).
- **Not cut, and why:** what is left is the libraries' own import and run time (Evidently, Great
  Expectations) and Prefect's per-task API calls; fewer task runs would hide the stages the UI
  shows. On the AMD EPYC machine of the previous recording (2026-11-24, before the baselines
  cache) the same nights took 18.1 / 21.8 / 21.6 s with the start at ~7 s and the flow 7-11 s; on
  this slower machine the 20 s goal is not met.
"""


GOAL_S = 20.0


def _goal_line(r: dict) -> str:
    """The goal's verdict, from the measured nights: every `spywatch run` night without retraining."""
    walls = sorted(n["wall_s"] for n in r["nights"] if n["retrain"] == "never")
    retrain = [n["wall_s"] for n in r["nights"] if n["retrain"] == "inline"]
    met = "met" if walls and walls[-1] < GOAL_S else "NOT met"
    return (f"**Goal: a night without retraining under {GOAL_S:.0f} s on 2 cores, Prefect's start included: {met}.** "
            f"{len(walls)} nights without retraining: median {statistics.median(walls):.1f} s, fastest {walls[0]:.1f} s, "
            f"slowest {walls[-1]:.1f} s. With retraining: "
            f"{', '.join(f'{w:.1f} s' for w in retrain) or 'not run'}.")


def _markdown(r: dict, args: argparse.Namespace) -> str:
    m = r["machine"]
    stages = sorted({k for n in r["nights"] for k in n["timings"]},
                    key=lambda k: ["fetch_validate", "features", "load_champion", "validate_features", "predict_audit",
                                   "drift", "retrain", "publish"].index(k) if k in
                    ["fetch_validate", "features", "load_champion", "validate_features", "predict_audit", "drift",
                     "retrain", "publish"] else 99)
    lines = ["# Nightly run timing (`spywatch run`, Prefect included)", "",
             f"- ran: `python bench/nightly_timing.py{' --tiny' if args.tiny else ''}`, {m['date']}; git {m.get('git')}",
             f"- machine: {m['cpu']}, {m['host_cores']} cores (load average at the end "
             f"{r['load_average_end'][0]:.1f}/{r['load_average_end'][1]:.1f}/{r['load_average_end'][2]:.1f}); "
             f"torch {m.get('torch')}, CUDA {m.get('cuda')}",
             f"- data: real SPY (`csv:` {args.data.name}, read in place); model: {r['model']} PatchTST",
             f"- set-up, not in the table: the first night on an empty root (fetch 1993..2024-06-28, validate, train "
             f"and promote the first champion, publish) took {r['setup_seconds']} s "
             f"(stages: {', '.join(f'{k} {v}' for k, v in r['setup_timings'].items())})",
             "- each night: a fresh `spywatch run` process (interpreter, imports, its own `prefect server start` on "
             "127.0.0.1, the flow, the server's stop); `wall` is measured outside the process", "",
             _goal_line(r), "",
             "| night | kind | load before | wall (s) | Prefect start + imports (s) | flow (s) | "
             + " | ".join(stages) + " | decision |",
             "|---|---|---|---|---|---|" + "---|" * len(stages) + "---|"]
    for n in r["nights"]:
        cells = " | ".join(f"{n['timings'].get(k, '')}" for k in stages)
        decision = ", ".join(n["decision"]) or "keep"
        if n["retrain"] == "never" and n["decision"]:
            decision += " (not retrained: --retrain never)"
        elif n["promoted"] is not None:
            decision += f" (trained {n['train_seconds']:.0f} s; promoted: {n['promoted']})"
        lines.append(f"| {n['as_of']} | {n['label']} | {n['load_before']} | **{n['wall_s']}** | "
                     f"{n['start_and_imports_s'] or '—'} | {n['flow_s'] or '—'} | {cells} | {decision} |")
    lines += ["", "Stage columns are the audit's `timings` (seconds inside the pipeline stages); the flow's other "
              "time is Prefect's bookkeeping (task runs, artifacts, events) and publishing (HTML, parquet). The naive "
              "night calls the flow from a bare `python -c` (Prefect's own temporary server, started in-process at "
              "the first call; libraries imported inside the tasks): the way the run was started before.", "",
              WHERE_THE_TIME_GOES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
