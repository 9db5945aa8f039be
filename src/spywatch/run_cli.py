"""``spywatch run``: the nightly pipeline once, end to end, as plain Python."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the nightly pipeline once (fetch, validate, features, ...)")
    p.add_argument("--source", default="synthetic", help="synthetic | synthetic:SEED | csv:PATH | yfinance")
    p.add_argument("--as-of", default=None, help="session date to run for (default: the last settled session)")
    p.add_argument("--root", type=Path, default=Path("workspace"), help="store, models and published outputs")
    p.add_argument("--ticker", default="SPY")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from spywatch.pipeline import PipelineConfig, run_nightly

    result = run_nightly(PipelineConfig(source=args.source, root=args.root.resolve(), ticker=args.ticker,
                                        as_of=args.as_of))
    print(result.summary())
    return 0 if result.ok else 1
