"""Policy comparison on real SPY: replay every named retrain policy (never, calendar, default,
legacy) month by month from the same start, each on its own root, and set their numbers side by
side: walk-forward AUC and Brier per horizon with intervals against a Random Forest refitted at
every step, retrains, promotions and how many of them were wrong, alarms per year, training compute.

    OMP_NUM_THREADS=1 .venv/bin/python bench/policy_comparison.py      # 2015..2024: hours; run it in the background
    .venv/bin/python bench/policy_comparison.py --policies default,never
    OMP_NUM_THREADS=1 .venv/bin/python bench/policy_comparison.py --tiny --start 2016-01-01 --end 2016-02-29

Each policy replays with ``backfill.run_backfill`` (what ``spywatch backfill`` and the Prefect
``backfill`` flow run) on its own root, bench/out/policy_comparison/policy_<name>/ (git-ignored
with bench/out/). Its steps are recorded there after each one, so re-running the same command
continues every policy where it stopped (``--fresh`` starts over); a policy that has finished is
only re-scored. The data is read in place (``csv:`` source, never copied). The results go to
bench/results/policy_comparison.{json,md}, rewritten after each policy; ``--tiny`` (the tiny test
model, 2 epochs) keeps its roots and results under bench/out/policy_comparison_tiny/ instead, so a
smoke run never mixes with the real one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}
POLICIES = ("never", "calendar", "default", "legacy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=f"csv:{REPO / 'data' / 'spy_daily.csv'}")
    parser.add_argument("--start", default="2015-01-01")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--frequency", default="monthly", choices=("monthly", "weekly", "daily"))
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policy names")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model, 2 epochs (a smoke run)")
    parser.add_argument("--rf-trees", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None,
                        help="the policies' roots (default bench/out/policy_comparison[_tiny])")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON results; the markdown goes beside (default "
                             "bench/results/policy_comparison.json, with --tiny <work>/policy_comparison.json)")
    parser.add_argument("--fresh", action="store_true", help="delete the policies' roots first instead of resuming")
    parser.add_argument("--keep-recorded", action="store_true",
                        help="take a policy already complete in the results JSON, with the same settings, from there "
                             "instead of replaying it (its roots may be gone, e.g. on another machine)")
    parser.add_argument("--render", action="store_true",
                        help="only write the markdown again from the results JSON (--out)")
    parser.add_argument("--replay", default="",
                        help="with --keep-recorded: comma-separated policies replayed all the same (the code they "
                             "ran has changed since they were recorded)")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

    from machine import machine

    from spywatch.backfill import (backfill_config, backfill_settings, check_replay_inputs, replay_sessions,
                                   resumed_steps, run_backfill)

    work = (args.work or REPO / "bench" / "out" / f"policy_comparison{'_tiny' if args.tiny else ''}").resolve()
    out = (args.out or (work if args.tiny else REPO / "bench" / "results") / "policy_comparison.json").resolve()
    if args.render:
        from spywatch.atomic import atomic_write_json, atomic_write_text
        from spywatch.backfill import PolicyTable

        record = json.loads(out.read_text())
        tables = {n: PolicyTable.from_dict(t) for n, t in record["policies"].items()}
        paired = paired_policies(work, record["settings"]["policies"], tables)
        if paired:  # the walk-forward frames are still on disk: the pairs again (new splits included)
            record["paired_policies"] = json.loads(json.dumps(paired, default=str))
            atomic_write_json(out, record)
        atomic_write_text(out.with_suffix(".md"), markdown(record, tables))
        print(f"wrote {out.with_suffix('.md')}" + (f" and {out}" if paired else ""))
        return 0
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    # Every policy's config and the data are checked before the first step of the first policy.
    try:
        configs = {name: backfill_config(work / f"policy_{name}", args.source, policy=name,
                                         model=TINY if args.tiny else {}, max_epochs=2 if args.tiny else None)
                   for name in names}
        schedule = replay_sessions(args.start, args.end, args.frequency)
        for cfg in configs.values():
            check_replay_inputs(cfg, schedule)
            if not args.fresh:  # a record with other settings is refused now, not after hours of other policies
                resumed_steps(cfg.layout.backfill, backfill_settings(cfg, args.start, args.end, args.frequency))
    except ValueError as exc:
        print(f"policy_comparison: {exc}", file=sys.stderr)
        return 2

    run = {"command": command_line(), "git": git_state(), "machine": machine(),
           "settings": {"source": args.source, "start": args.start, "end": args.end, "frequency": args.frequency,
                        "steps": len(schedule), "tiny": args.tiny, "rf_trees": args.rf_trees,
                        "policies": names}}
    replay = {n.strip() for n in args.replay.split(",") if n.strip()}
    if replay - set(names):
        print(f"policy_comparison: --replay names policies not in --policies: {sorted(replay - set(names))}",
              file=sys.stderr)
        return 2
    keep = {n: c for n, c in configs.items() if n not in replay}
    tables: dict = kept_policies(out, keep, args) if args.keep_recorded else {}
    run["kept_from"] = getattr(args, "kept_from", {})
    t0 = time.perf_counter()
    for name, cfg in configs.items():
        if name in tables:
            print(f"== policy {name}: kept from {out}", file=sys.stderr, flush=True)
            continue
        root = cfg.root
        record = cfg.layout.backfill / "policy.json"
        if root.exists() and (args.fresh or not record.exists()):
            shutil.rmtree(root)  # nothing recorded there yet (or told to start over): a policy starts with no model
        resume = record.exists()
        print(f"== policy {name}: {len(schedule)} steps on {root}" + (" (resuming)" if resume else ""),
              file=sys.stderr, flush=True)
        tables[name] = run_backfill(cfg, args.start, args.end, args.frequency, out_dir=cfg.layout.backfill,
                                    rf_trees=args.rf_trees, resume=resume,
                                    on_step=lambda p, n=name: print(f"{n:9s} {p.line()}", file=sys.stderr, flush=True))
        write_results(out, run, tables, names, time.perf_counter() - t0, work)
    write_results(out, run, tables, names, time.perf_counter() - t0, work)
    print(f"wrote {out} and {out.with_suffix('.md')} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 1 if any(t.counts["errors"] for t in tables.values()) else 0


def kept_policies(out: Path, configs: dict, args) -> dict:
    """Policies the results JSON already holds complete, replayed with exactly today's settings."""
    from spywatch.backfill import PolicyTable, backfill_settings, replay_sessions

    if not out.exists():
        return {}
    recorded = json.loads(out.read_text())
    if {k: v for k, v in recorded["settings"].items() if k != "policies"} != {
            "source": args.source, "start": args.start, "end": args.end, "frequency": args.frequency,
            "steps": len(replay_sessions(args.start, args.end, args.frequency)), "tiny": args.tiny,
            "rf_trees": args.rf_trees}:
        return {}
    kept = {}
    for name, cfg in configs.items():
        record = recorded["policies"].get(name)
        if record is None or record["config"] != backfill_settings(cfg, args.start, args.end, args.frequency).to_json():
            continue
        table = PolicyTable.from_dict(record)
        if len(table.steps) == recorded["settings"]["steps"] and table.scores is not None:
            kept[name] = table
    # Where the kept numbers came from: the run that recorded them (an older commit, another machine).
    args.kept_from = {name: recorded.get("kept_from", {}).get(name) or {"command": recorded["command"],
                                                                         "git": recorded["git"],
                                                                         "machine": recorded["machine"]}
                      for name in kept}
    return kept


def paired_policies(work: Path, names: list[str], tables: dict) -> list[dict]:
    """Every two policies' walk-forward mean AUC, a minus b, paired on the sessions both predicted
    (the same labels), with its block-bootstrap interval: the policies compared with each other,
    not only each with its Random Forest. Only policies whose walk-forward frame is on disk (a
    policy kept from an earlier run on another machine has none)."""
    import pandas as pd

    from spywatch.comparison import BootstrapConfig, paired_auc
    from spywatch.layout import RootLayout

    frames = {}
    for name in names:
        path = RootLayout(work / f"policy_{name}").backfill / "walk_forward.parquet"
        if name in tables and path.exists():
            frames[name] = pd.read_parquet(path)
    out = []
    present = [n for n in names if n in frames]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            fa, fb = frames[a], frames[b]
            common = fa.index.intersection(fb.index)
            horizons = [c.removeprefix("y_") for c in fa.columns if c.startswith("y_")]

            def diff(sessions):  # noqa: ANN001, ANN202 - a paired comparison on these sessions
                return paired_auc(fa.loc[sessions, [f"y_{h}" for h in horizons]].to_numpy(),
                                  fa.loc[sessions, [f"patchtst_{h}" for h in horizons]].to_numpy(),
                                  fb.loc[sessions, [f"patchtst_{h}" for h in horizons]].to_numpy(), horizons,
                                  sessions, BootstrapConfig())

            # a replay of more than ten years is also split at the calendar year nearest its middle:
            # where in time a difference lies (a champion never retrained grows older along the replay)
            years = sorted(set(pd.DatetimeIndex(common).year))
            halves = []
            if len(years) > 10:
                cut = pd.Timestamp(f"{years[len(years) // 2]}-01-01")
                halves = [diff(common[common < cut]), diff(common[common >= cut])]
            out.append({"a": a, "b": b, "difference": diff(common), "halves": halves})
    return out


def write_results(out: Path, run: dict, tables: dict, names: list[str], wall: float, work: Path) -> None:
    from spywatch.atomic import atomic_write_json, atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    import datetime as dt

    record = {**run, "wall_seconds": round(wall, 1), "pending": [n for n in names if n not in tables],
              "paired_policies": paired_policies(work, names, tables),
              "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "policies": {name: table.to_dict() for name, table in tables.items()}}
    atomic_write_json(out, json.loads(json.dumps(record, default=str)))
    atomic_write_text(out.with_suffix(".md"), markdown(record, tables))


def markdown(record: dict, tables: dict) -> str:
    from spywatch.backfill import REVIEW_SESSIONS, difference_cell, interval_cell

    s = record["settings"]
    m = record["machine"]
    names = [n for n in s["policies"] if n in tables]  # the order asked for, kept ones included
    summaries = {n: t.summary for n, t in tables.items()}
    scores = {n: t.scores for n, t in tables.items()}
    level = next((round(100 * sc.bootstrap.level) for sc in scores.values() if sc), 90)
    block = next((sc.bootstrap.block for sc in scores.values() if sc), "?")
    lines = ["# Retrain policies compared on real SPY (bench/policy_comparison.py)", "",
             f"- ran: `{record['command']}`, started {m['date']}, written {record.get('written', '?')}, "
             f"{record['wall_seconds'] / 60:.0f} min wall"
             + (f"; **pending**: {', '.join(record['pending'])}" if record["pending"] else ""),
             f"- code: git {record['git']['commit']}"
             + (" (with uncommitted changes)" if record["git"]["dirty"] else ""),
             *[f"- `{n}` kept from an earlier run with the same settings: `{k['command']}` at git "
               f"{k['git']['commit']}, started {k['machine']['date']} on {k['machine']['cpu']}" for n, k in record.get("kept_from", {}).items()],
             f"- machine: {m['cpu']}, {m['host_cores']} cores, torch {m.get('torch')}, CUDA {m.get('cuda')}",
             f"- replay: `{s['source']}`, {s['start']} .. {s['end']}, {s['steps']} {s['frequency']} steps per policy, "
             f"each policy on its own root from an empty store and registry; model: "
             + ("the tiny test model, 2 epochs (smoke run: the numbers mean nothing)" if s["tiny"]
                else "the default PatchTST and each policy's fit settings"),
             f"- scores: walk-forward (every session between two steps, predicted by the champion in force after "
             f"the earlier one), against a Random Forest ({s['rf_trees']} trees) refitted at every step on every label "
             f"matured by then; {level}% circular block-bootstrap intervals, blocks of {block} sessions, paired for "
             f"differences (P = share of resamples in which PatchTST is better)",
             f"- a promotion is *wrong* when the promoted model's mean AUC over horizons on the next "
             f"{REVIEW_SESSIONS} matured sessions is below the model it replaced (judged: enough sessions followed)",
             "", "| | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(n) for n in names) + " |")

    row("steps (errors)", lambda n: f"{summaries[n]['steps']} ({summaries[n]['errors']})")
    row("retrains (per year)", lambda n: f"{summaries[n]['retrains']} ({_num(summaries[n]['retrains_per_year'])})")
    row("promotions", lambda n: str(summaries[n]["promotions"]))
    row("wrong promotions / judged (beyond interval)",
        lambda n: f"{summaries[n]['wrong_promotions']} / {summaries[n]['promotions_judged']} "
                  f"({summaries[n]['wrong_beyond_interval']})")
    row("wrong promotions by gate rule: wrong / judged (beyond interval)",
        lambda n: "; ".join(f"{rule} {v['wrong']} / {v['judged']} ({v['wrong_beyond_interval']})"
                            for rule, v in (summaries[n].get("wrong_by_rule") or {}).items()) or "—")
    row("retrain reasons (count)", lambda n: ", ".join(f"{k} {v}" for k, v in sorted(
        (tables[n].counts.get("reasons") or {}).items())) or "—")
    row("baseline verdict of the steps (count)", lambda n: ", ".join(f"{k} {v}" for k, v in sorted(
        (tables[n].counts.get("vs_baseline") or {}).items())) or "—")
    row("alarms: events per year", lambda n: _num(summaries[n]["events_per_year"]))
    row("training compute (min)", lambda n: f"{summaries[n]['train_seconds'] / 60:.1f}")
    row("replay wall (min)", lambda n: f"{summaries[n]['wall_seconds'] / 60:.1f}")
    horizons = next((list(sc.auc) for sc in scores.values() if sc and sc.auc), [])
    for h in horizons:
        row(f"{h} AUC PatchTST", lambda n: interval_cell((scores[n].auc.get(h) or {}).get("patchtst"), "auc"))
        row(f"{h} AUC Random Forest", lambda n: interval_cell((scores[n].auc.get(h) or {}).get("random_forest"), "auc"))
        row(f"{h} AUC PatchTST - RF (P)", lambda n: difference_cell((scores[n].auc.get(h) or {}).get("difference")))
        row(f"{h} Brier PatchTST", lambda n: interval_cell((scores[n].brier.get(h) or {}).get("patchtst"), "brier"))
        row(f"{h} Brier Random Forest",
            lambda n: interval_cell((scores[n].brier.get(h) or {}).get("random_forest"), "brier"))
    row("mean AUC PatchTST - RF (P)", lambda n: difference_cell(scores[n].mean_auc_difference))
    row("walk-forward sessions", lambda n: " .. ".join(scores[n].walk_forward_window) or "—")

    if record.get("paired_policies"):
        lines += ["", "Policies against each other: walk-forward mean AUC of a minus b on the sessions both "
                  "predicted, paired (P = share of resamples in which a is better):", "",
                  "| a | b | a - b (P) | sessions |", "|---|---|---|---|"]
        for p in record["paired_policies"]:
            lines.append(f"| `{p['a']}` | `{p['b']}` | {difference_cell(p['difference'])} | "
                         f"{(p['difference'] or {}).get('n', '—')} |")
            lines += [f"| `{p['a']}` | `{p['b']}`, {h['span'][0]} .. {h['span'][1]} | {difference_cell(h)} | "
                      f"{h['n']} |" for h in p.get("halves") or [] if h]
    lines += ["", "Events per year by kind: " + "; ".join(
        f"`{n}` " + (", ".join(f"{k.removeprefix('spywatch.')} {v:.2f}"
                               for k, v in summaries[n]["events_per_year_by_event"].items()) or "none")
        for n in names), ""]
    for n in names:
        review = scores[n].promotions
        if not review:
            continue
        lines += [f"## `{n}`: promotions reviewed", "",
                  "| session | promoted | replaced | gate rule | n | promoted mean AUC | replaced mean AUC | "
                  "difference (P) | wrong |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in review:
            lines.append(f"| {p.session} | {p.new} | {p.old} | {p.rule or '—'} | {p.n_sessions} | "
                         f"{_num(p.new_mean_auc)} | {_num(p.old_mean_auc)} | {difference_cell(p.as_difference())} | "
                         f"{'—' if p.wrong is None else ('**yes**' if p.wrong else 'no')} |")
        lines.append("")
    lines += ["Each policy's full record (config with the policy's settings, every step with its decision "
              "and gate) is under `policies.<name>` in the JSON.", ""]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def command_line() -> str:
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + " ".join(
        ["python", "bench/policy_comparison.py", *sys.argv[1:]])


def git_state() -> dict:
    """The commit at the start (HEAD may move during a run of hours) and whether tracked files differ from it."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


if __name__ == "__main__":
    sys.exit(main())
