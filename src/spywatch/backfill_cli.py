"""``spywatch backfill``: replay the nightly pipeline over past sessions under a named retrain
policy, and write what it did and what it was worth as one JSON record.

The same code as the Prefect ``backfill`` flow (``backfill.run_backfill``), in plain Python, with
one progress line per step on stderr. Everything the replay trains, promotes and publishes goes
under ``--root`` (default: beside ``--out``, ``<name>-root/``); the steps so far are recorded in
``<root>/backfill/policy.json`` after each one, so ``--resume`` continues an interrupted run.
Bad input (an unknown policy, an inverted range, a source that lacks the sessions or the history
a first model needs) is refused before anything is written, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from spywatch.cli import iso_date

    p = sub.add_parser("backfill", help="replay past nights under a retrain policy: retrains, promotions, alarms, "
                       "walk-forward AUC and Brier against a Random Forest, with intervals")
    p.add_argument("--source", required=True, help="csv:PATH | synthetic | synthetic:SEED | yfinance")
    p.add_argument("--start", required=True, type=iso_date, help="first date of the range (ISO)")
    p.add_argument("--end", required=True, type=iso_date, help="last date of the range (ISO)")
    p.add_argument("--frequency", choices=("daily", "weekly", "monthly"), default="monthly",
                   help="replay every session, or the last one of each week or month")
    p.add_argument("--policy", default="default", help="a named retrain policy of spywatch.policy "
                   "(default, never, calendar, legacy)")
    p.add_argument("--root", type=Path, default=None,
                   help="store, models and published nights of the replay (default: <out name>-root beside --out)")
    p.add_argument("--ticker", default="SPY")
    p.add_argument("--resume", action="store_true",
                   help="go on from the steps an interrupted run recorded under --root (same settings)")
    p.add_argument("--max-epochs", type=int, default=None, help="training epochs per challenger (quick runs)")
    p.add_argument("--model", default="", metavar="KEY=VALUE,...",
                   help="PatchTST size overrides, e.g. d_model=8,n_heads=2,n_layers=1,d_ff=16,head_hidden=16")
    p.add_argument("--rf-trees", type=int, default=100, help="trees of the Random Forest refitted at every step")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", required=True, type=Path, help="the JSON record (written when the replay is done)")
    p.set_defaults(func=_run, skip_teardown=True)


def _run(args: argparse.Namespace) -> int:
    from spywatch.atomic import atomic_write_json
    from spywatch.backfill import (backfill_config, backfill_settings, check_replay_inputs, replay_sessions,
                                   resumed_steps, run_backfill)

    # Every check before anything is written: a refused replay leaves no root and no record.
    out = args.out.expanduser().resolve()
    root = (args.root or out.parent / f"{out.stem}-root").expanduser().resolve()
    if args.rf_trees < 1:
        raise ValueError(f"--rf-trees {args.rf_trees}; expected >= 1")
    cfg = backfill_config(root, args.source, args.ticker, args.policy, model_overrides(args.model),
                          args.max_epochs, args.device)
    schedule = replay_sessions(args.start, args.end, args.frequency)
    record_dir = root / "backfill"
    if (record_dir / "policy.json").exists() and not args.resume:
        raise ValueError(f"root {root} already holds a backfill record ({record_dir / 'policy.json'}): pass --resume "
                         f"to continue it, or choose another --root")
    if args.resume:  # a record written with other settings is refused here, as run_backfill would
        resumed_steps(record_dir, backfill_settings(cfg, args.start, args.end, args.frequency))
    check_replay_inputs(cfg, schedule)

    print(f"spywatch backfill: policy {cfg.policy}, {len(schedule)} {args.frequency} step(s) "
          f"{schedule[0].date()}..{schedule[-1].date()} on {root}", file=sys.stderr, flush=True)
    table = run_backfill(cfg, args.start, args.end, args.frequency, out_dir=record_dir, rf_trees=args.rf_trees,
                         resume=args.resume, on_step=lambda p: print(p.line(), file=sys.stderr, flush=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, table.to_dict())
    s = table.summary
    print(f"{s['steps']} steps, {s['retrains']} retrains, {s['promotions']} promotions "
          f"({s['wrong_promotions']} wrong of {s['promotions_judged']} judged), {s['events']} events, "
          f"{s['errors']} errors; training {s['train_seconds'] / 60:.1f} min")
    print(f"wrote {out}")
    return 1 if s["errors"] else 0


def model_overrides(text: str) -> dict:
    """``d_model=8,n_heads=2`` -> ``{"d_model": 8, "n_heads": 2}``, checked against ``PatchTSTConfig``."""
    from dataclasses import fields

    from spywatch.features import FEATURES
    from spywatch.model import PatchTSTConfig

    out: dict = {}
    # the data sets channels and outputs, and the fit spec the lookback (bundle.FitSpec.lookback)
    known = {f.name for f in fields(PatchTSTConfig)} - {"n_channels", "n_outputs", "lookback"}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--model {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        out[key] = _number(value)
    PatchTSTConfig(n_channels=len(FEATURES), **out)  # its own checks (d_model divisible by n_heads, ...)
    return out


def _number(value: str) -> int | float | str | bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
