"""``spywatch evaluate``: out-of-time PatchTST ensemble vs baselines, with intervals and the collapse audit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spywatch.cli.arguments import iso_date


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="train PatchTST and baselines, evaluate out of time with paired "
                       "bootstrap comparisons, audit for collapse")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--train-end", required=True, type=iso_date, help="end of the training span (fit + validation)")
    p.add_argument("--test-start", required=True, type=iso_date)
    p.add_argument("--test-end", default=None, type=iso_date)
    p.add_argument("--val-start", default=None, type=iso_date, help="start of validation, with --recipe early_stopping "
                   "(default: last 20%% of the training span)")
    p.add_argument("--recipe", choices=("full", "early_stopping"), default="full",
                   help="full: fit every session up to an embargo before the test for --epochs epochs (the "
                   "pipeline's recipe); early_stopping: stop on the validation span")
    p.add_argument("--features", choices=("normalized", "raw"), default="normalized")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (full) or max epochs (early_stopping); default: the recipe's")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--boot", type=int, default=2000, metavar="N",
                   help="block-bootstrap resamples for the AUC intervals and the paired comparisons")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--progress", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spywatch.atomic import atomic_write_json
    from spywatch.evaluate import EvalConfig, Split, evaluate, format_report
    from spywatch.market_data import read_bars_csv

    cfg = EvalConfig(features=args.features, seeds=args.seeds, n_boot=args.boot, recipe=args.recipe)
    train = replace(cfg.train, device=args.device, progress=args.progress)
    if args.epochs:
        train = replace(train, max_epochs=args.epochs)
        cfg = replace(cfg, epochs=args.epochs)
    cfg = replace(cfg, train=train)
    split = Split(train_end=args.train_end, test_start=args.test_start, test_end=args.test_end,
                  val_start=args.val_start)
    report = evaluate(read_bars_csv(args.data), split, cfg)
    print(format_report(report))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    else:
        print(json.dumps({"audit": report["audit"]["verdict"],
                          "training_audit": (report.get("training_audit") or {}).get("verdict")}))
    return 0
