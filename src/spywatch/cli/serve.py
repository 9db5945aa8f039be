"""``spywatch serve``: the published outputs over HTTP, read-only (the server is ``spywatch.serve``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from spywatch.serve import DEFAULT_PORT, serve


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the published reports over HTTP (read-only), for the Prefect UI's links")
    p.add_argument("--root", type=Path, default=Path("workspace"), help="the root whose published/ to serve, or a fleet root (its page and every "
                        "ticker's published/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s; 0: any free port)")
    p.set_defaults(func=lambda args: serve(args.root, args.host, args.port) or 0)
