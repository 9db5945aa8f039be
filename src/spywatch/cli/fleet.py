"""``spywatch fleet status``: every ticker of a fleet root, one line each (or JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spywatch.cli.arguments import root_dir
from spywatch.layout import RootLayout


def register(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="the fleet: many tickers, each on ROOT/tickers/<TICKER>")
    actions = fleet.add_subparsers(dest="action", required=True)
    p = actions.add_parser("status", help="one line per ticker: session, status, health, decision, probabilities; "
                                          "exit 1 when any ticker failed or is stale")
    p.add_argument("--root", type=root_dir, default="workspace", help="the fleet root (spywatch run --tickers --root)")
    p.add_argument("--fleet", type=Path, default=None, help="a fleet file: its tickers, in its order")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from spywatch import fleet

    layout = RootLayout(args.root)
    if not layout.tickers.is_dir():
        raise ValueError(f"{args.root} is not a fleet root: no {layout.tickers} "
                         f"(spywatch run --tickers A,B --root {args.root} makes one)")
    tickers = fleet.load_fleet(args.fleet).names if args.fleet else None
    rows = fleet.fleet_rows(args.root, tickers)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
    else:
        print(f"{'ticker':8} {'session':10}  {'status':40} {'health':12} {'decision':14} P(h1 / h3 / h5)")
        for r in rows:
            status = r.status + (f" ({r.failure})" if r.failure else "") + (" STALE" if r.stale else "")
            p = r.probabilities
            probs = " / ".join(f"{p[h]:.3f}" for h in ("h1", "h3", "h5") if h in p) or "-"
            print(f"{r.ticker:8} {r.session or '-':10}  {status:40} {r.health or '-':12} "
                  f"{r.decision or '-':14} {probs}")
            if r.failure:
                print(f"{'':8} why: {r.failure_reason}")
        print(f"page: {layout.fleet_page}")
    bad = [r for r in rows if not r.published or r.stale]
    return 1 if bad else 0
