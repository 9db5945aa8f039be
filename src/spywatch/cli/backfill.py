"""``spywatch backfill``: replay the nightly pipeline over past sessions under a named retrain
policy, and write what it did and what it was worth as one JSON record.

The same code as the Prefect ``backfill`` flow (``backfill.run_backfill``), in plain Python, with
one progress line per step on stderr. Everything the replay trains, promotes and publishes goes
under ``--root`` (default: beside ``--out``, ``<name>-root/``); the steps so far are recorded in
``<root>/backfill/policy.json`` after each one, so ``--resume`` continues an interrupted run.
Bad input (an unknown policy, an inverted range, a source that lacks the sessions or the history
a first model needs) is refused before anything is written, with exit status 2.

With ``--tickers A,B`` or ``--fleet fleet.yaml`` it replays every ticker, each on its own root
under ``--root`` (``tickers/<TICKER>/``, its record in ``tickers/<TICKER>/backfill/``), as the
Prefect ``backfill-fleet`` flow fanned out on Dask (a temporary LocalCluster, or
``--dask-address``), against a local Prefect server it starts itself (or ``PREFECT_API_URL``).
A ticker that cannot be replayed fails alone; ``--out`` gets one row per ticker.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spywatch.cli.arguments import iso_date, root_dir, ticker_arg
from spywatch.layout import RootLayout


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="replay past nights under a retrain policy: retrains, promotions, alarms, "
                       "walk-forward AUC and Brier against a Random Forest, with intervals")
    p.add_argument("--source", required=True, help="csv:PATH | csv-dir:DIR (a fleet: DIR/<TICKER>.csv) | synthetic | synthetic:SEED | yfinance | a fault spec")
    p.add_argument("--start", required=True, type=iso_date, help="first date of the range (ISO)")
    p.add_argument("--end", required=True, type=iso_date, help="last date of the range (ISO)")
    p.add_argument("--frequency", choices=("daily", "weekly", "monthly"), default="monthly",
                   help="replay every session, or the last one of each week or month")
    p.add_argument("--policy", default="default", help="a named retrain policy of spywatch.policy "
                   "(default, never, calendar, legacy)")
    p.add_argument("--root", type=root_dir, default=None,
                   help="store, models and published nights of the replay (default: <out name>-root beside --out)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ticker", default="SPY", type=ticker_arg)
    which.add_argument("--tickers", default=None, metavar="A,B,...",
                       help="a fleet: every ticker on ROOT/tickers/<TICKER>, fanned out on Dask (the backfill-fleet "
                            "flow); e.g. --source csv-dir:DIR")
    which.add_argument("--fleet", type=Path, default=None, help="a fleet file (fleet.yaml) instead of --tickers")
    p.add_argument("--dask-address", default=None, help="with a fleet: an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--one-pass", action="store_true",
                   help="with a fleet: replay the tickers in lock-step here, each session's retrains fitted together "
                        "in one stacked model (on this host's GPU when it has one) instead of one Dask task per ticker")
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
    if args.tickers or args.fleet:
        return _run_fleet(args, root, out)
    if args.one_pass:
        raise ValueError("--one-pass fits a fleet's challengers together: give --tickers or --fleet")
    cfg = backfill_config(root, args.source, args.ticker, args.policy, model_overrides(args.model),
                          args.max_epochs, args.device)
    schedule = replay_sessions(args.start, args.end, args.frequency)
    record_dir = RootLayout(root).backfill
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


def _run_fleet(args: argparse.Namespace, root: Path, out: Path) -> int:
    from spywatch import fleet
    from spywatch.atomic import atomic_write_json
    from spywatch.backfill import replay_sessions
    from spywatch.orchestration.api import prefect_session
    from spywatch.orchestration.checkout import load_flow

    tickers = [t.strip().upper() for t in args.tickers.split(",") if t.strip()] if args.tickers else None
    the_fleet = fleet.load_fleet(args.fleet) if args.fleet else fleet.fleet_of(tickers, args.source, args.policy)
    names = the_fleet.names
    schedule = replay_sessions(args.start, args.end, args.frequency)  # an empty or inverted range: refused here
    model = model_overrides(args.model)
    _check_fleet_records(args, root, the_fleet, model)
    print(f"spywatch backfill: {len(names)} tickers ({', '.join(names)}), {len(schedule)} {args.frequency} step(s) "
          f"{schedule[0].date()}..{schedule[-1].date()} each, on {root}", file=sys.stderr, flush=True)
    with prefect_session(root):
        backfill_fleet = load_flow("fleet", "backfill_fleet")
        state = backfill_fleet(root=str(root), start=args.start, end=args.end, tickers=tickers,
                               fleet_file=str(args.fleet) if args.fleet else None, source=args.source,
                               policy=args.policy, frequency=args.frequency, model=model or None,
                               max_epochs=args.max_epochs, device=args.device, rf_trees=args.rf_trees,
                               dask_address=args.dask_address, one_pass=args.one_pass, resume=args.resume,
                               return_state=True)
    rows = [fleet_backfill_row(RootLayout(root).ticker(t).backfill, t) for t in names]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"root": str(root), "start": str(args.start), "end": str(args.end),
                            "frequency": args.frequency, "state": state.type.value, "message": state.message,
                            "tickers": rows})
    for r in rows:
        print(f"{r['ticker']:8} " + (f"{r['steps']} steps, {r['retrains']} retrains, {r['promotions']} promotions, "
                                     f"{r['errors']} errors" if r["recorded"] else "no record (the replay could not run)"))
    print(f"backfill-fleet: {state.type.value}: {state.message}")
    print(f"wrote {out}")
    return 0 if state.is_completed() else 1


def _check_fleet_records(args: argparse.Namespace, root: Path, the_fleet, model: dict) -> None:  # noqa: ANN001
    """As for one ticker, before a server starts: a ticker's record is neither overwritten (no
    ``--resume``) nor resumed with other settings (the ticker and the setting named)."""
    from spywatch.backfill import backfill_config, backfill_settings, resumed_steps

    for t in the_fleet.tickers:
        troot = RootLayout(root).ticker(t.ticker)
        if not (troot.backfill / "policy.json").exists():
            continue
        if not args.resume:
            raise ValueError(f"{t.ticker}: {troot.root} already holds a backfill record ({troot.backfill / 'policy.json'}): "
                             f"pass --resume to continue the fleet's replay, or choose another --root")
        cfg = backfill_config(troot.root, t.source, t.ticker, t.policy, model, args.max_epochs, args.device)
        try:
            resumed_steps(troot.backfill, backfill_settings(cfg, args.start, args.end, args.frequency))
        except ValueError as exc:
            raise ValueError(f"{t.ticker}: {exc}") from exc


def fleet_backfill_row(record_dir: Path, ticker: str) -> dict:
    """One ticker's line of a fleet backfill, from the record its replay wrote."""
    import json

    path = record_dir / "policy.json"
    if not path.exists():
        return {"ticker": ticker, "recorded": False, "record": str(path)}
    s = json.loads(path.read_text())["summary"]
    return {"ticker": ticker, "recorded": True, "record": str(path), **{k: s[k] for k in (
        "steps", "retrains", "promotions", "wrong_promotions", "promotions_judged", "events", "errors")}}


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
