"""Backfill policy simulation on real SPY data: replay the nightly pipeline month by month over
2022-2024 (walk-forward, the default PatchTST unless told otherwise) and record the policy table:
runs, retrains, alarms, promotions, and the AUC of the published predictions against a Random
Forest refitted at every step.

    .venv/bin/python bench/backfill.py                      # 2022-01 .. 2024-12, default model
    .venv/bin/python bench/backfill.py --prefect            # the same, as the Prefect `backfill` flow
    .venv/bin/python bench/backfill.py --tiny --end 2022-06-30

The data is read in place from data/spy_daily.csv (``csv:PATH``; never copied into the
repo). The root (store, registry, published nights) goes to bench/out/backfill (not committed);
the table to bench/results/backfill.md (+ .json). Each step's row is written as it finishes
(bench/out/backfill/policy/), so a long run can be watched. Each retrain with the default model
takes minutes on 2 cores: run it in the background.
"""

from __future__ import annotations

import argparse
from collections import Counter
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "spy_daily.csv")
    parser.add_argument("--start", default="2022-01-01")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--frequency", default="monthly", choices=("monthly", "weekly", "daily"))
    parser.add_argument("--policy", default="default", help="named retrain policy (spywatch.policy)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model, 2 epochs (a quick smoke run)")
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out" / "backfill")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "backfill.md")
    parser.add_argument("--resume", action="store_true",
                        help="go on from the steps an interrupted run recorded under --root (same settings)")
    parser.add_argument("--prefect", action="store_true",
                        help="run the `backfill` flow on a local Prefect server started here (one task run per night)")
    args = parser.parse_args()
    if args.prefect and args.resume:
        parser.error("--resume replays in plain Python only")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

    from machine import machine

    from spywatch.backfill import backfill_config, run_backfill

    if not args.data.exists():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    if args.root.exists() and not args.resume:
        shutil.rmtree(args.root)  # a policy simulation starts with no model and no history
    cfg = backfill_config(args.root, f"csv:{args.data.resolve()}", policy=args.policy, model=TINY if args.tiny else {},
                          max_epochs=2 if args.tiny else None)
    code = machine().get("git")  # the code that runs (HEAD may move during a long run)
    t0 = time.perf_counter()
    if args.prefect:
        table, flow_run = _run_flow(cfg, args)
    else:
        table = run_backfill(cfg, args.start, args.end, args.frequency, out_dir=args.root / "policy",
                             resume=args.resume)
        flow_run = None
    wall = time.perf_counter() - t0
    checks = _verify(cfg, table)
    info = machine()
    load = os.getloadavg()
    header = [
        "# Backfill policy simulation (bench/backfill.py)", "",
        f"- ran: `python bench/backfill.py{' --tiny' if args.tiny else ''}{' --prefect' if args.prefect else ''} "
        f"--policy {args.policy} "
        f"--start {args.start} --end {args.end} "
        f"--frequency {args.frequency}{' --resume' if args.resume else ''}`, finished {info['date']}, "
        f"**{wall / 60:.1f} min wall**" + (" for the resumed part; the step rows give each night's seconds"
                                          if args.resume else ""),
        f"- machine: {info['cpu']}, {info['host_cores']} cores (shared with other work; load average at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}), torch {info.get('torch')}, CUDA {info.get('cuda')}; git {code} at the start",
        f"- data: `{args.data.name}` read in place as `csv:` source (real SPY, raw OHLC); the store starts empty, so "
        "the first step fetches 1993..its session and trains the first champion (`no_champion`)",
        f"- model: {'the tiny test model, 2 epochs' if args.tiny else 'the default PatchTST and training config'}; "
        f"policy `{cfg.policy}` (`spywatch.policy`; its settings are in the JSON's `config.policy`)",
        "- each step is `night.run_night` for that month's last session on the same root"
        + (f", run as a `replay-night` task of the Prefect `backfill` flow (flow run {flow_run}: {flow_run.state_name}, "
           "on a local `prefect server` started by the bench)" if flow_run else
           " (what the `backfill` flow runs as tasks)")
        + f"; per-step rows: `{_rel(args.root)}/policy/policy_steps.csv` (not committed)",
        *checks, "", ""]
    args.out.write_text("\n".join(header) + table.markdown().split("\n", 2)[2])
    args.out.with_suffix(".json").write_text(json.dumps({"machine": info, "wall_seconds": round(wall, 1),
                                                         **table.to_dict()}, indent=2, default=str) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({wall / 60:.1f} min)")
    return 1 if table.counts["errors"] else 0


def _verify(cfg, table) -> list[str]:
    """Every published night's outputs read back; re-running the last night replaces its rows
    (no duplicates) with the same probabilities and model version."""
    from dataclasses import replace

    from spywatch.backfill import check_outputs
    from spywatch.night import run_night
    from spywatch.publish import Publisher

    published = [r for r in table.steps if r.status == "published"]
    problems = check_outputs(cfg.root, table.steps)
    lines = [f"- outputs: {len(published)} published nights checked (`backfill.check_outputs`: audit, report, Evidently "
             f"reports, one prediction row per horizon from the champion in force, in the folder and the cumulative "
             f"table): " + ("all good" if not problems else f"**{len(problems)} problem(s)**: " + "; ".join(problems))]
    lines.append(_gates(cfg.root))
    if not published:
        return lines
    last = published[-1].session
    publisher = Publisher(cfg.root)
    before = publisher.read_predictions()
    again = run_night(replace(cfg, as_of=last, retrain="never", run_id=f"rerun-{last}"), force=True)
    after = publisher.read_predictions()
    old = before[before.session == last].set_index("horizon").sort_index()
    new = after[after.session == last].set_index("horizon").sort_index()
    same = (len(after) == len(before) and old["probability"].equals(new["probability"])
            and list(old["model_version"]) == list(new["model_version"]) and set(new["run_id"]) == {f"rerun-{last}"})
    lines.append(f"- re-run of the last night ({last}, `retrain=never`, plain pipeline): {again.status}; cumulative "
                 f"predictions {len(before)} -> {len(after)} rows; probabilities "
                 f"{_probs(old)} -> {_probs(new)}, model "
                 f"{sorted(set(new['model_version']))}: " + ("**replaced, identical**" if same else "**DIFFERENT**"))
    return lines


def _gates(root: Path) -> str:
    """Every alias move of the replay went through the gates: each promote event carries its checks."""
    from spywatch.layout import RootLayout
    from spywatch.registry import ModelRegistry

    history = ModelRegistry(RootLayout(root).models).history()
    promotes = [e for e in history if e.event == "promote"]
    passed = [e for e in promotes
              if (g := e.reason.get("gate")) and g["promote"] and all(g["details"]["checks"].values())]
    return (f"- gates: {len(promotes)} promotions in the registry history, {len(passed)} with every gate check passed "
            f"(floor, not collapsed, and the policy's comparison with the champion where one existed: "
            f"rules {dict(Counter(e.reason['gate'].get('rule', '?') for e in passed))}); "
            f"{sum(e.event == 'refuse' for e in history)} challengers refused")


def _probs(rows) -> dict[str, float]:
    return {h: round(float(p), 6) for h, p in rows["probability"].items()}


def _run_flow(cfg, args):
    """The ``backfill`` flow on a project-local Prefect server (stopped by PID, pass or fail)."""
    from spywatch.backfill import PolicyTable
    from spywatch.layout import RootLayout
    from spywatch.orchestration.api import drain_events
    from spywatch.orchestration.checkout import checkout_flows
    from spywatch.orchestration.server import LocalServer

    checkout_flows()
    server = LocalServer.start(RootLayout(args.root).prefect)
    try:
        server.wait_healthy()
        from prefect import get_client
        from flows.backfill import backfill

        state = backfill(root=str(cfg.root), start=dt.date.fromisoformat(args.start),
                         end=dt.date.fromisoformat(args.end), source=cfg.source, policy=cfg.policy,
                         frequency=args.frequency,
                         model=dict(cfg.model) or None, max_epochs=cfg.max_epochs, out_dir=str(args.root / "policy"),
                         return_state=True)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
        drain_events()
    finally:
        server.stop()
    if not state.is_completed():
        raise SystemExit(f"backfill flow run {run.name} ended {state.type.value}: {state.message}")
    table = PolicyTable.from_dict(json.loads((args.root / "policy" / "policy.json").read_text()))
    return table, _FlowRun(run.name, str(run.id), state.type.value)


class _FlowRun:
    def __init__(self, name: str, run_id: str, state_name: str) -> None:
        self.name, self.run_id, self.state_name = name, run_id, state_name

    def __str__(self) -> str:
        return f"`{self.name}` {self.run_id}"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
