"""``spywatch models list|show|promote|rollback``: inspect the registry and move the alias by hand.

A manual promote skips the metric gate (an operator's decision) but never the checksum check.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spywatch.artifact import ArtifactError
from spywatch.registry import ModelRegistry, RegistryError, VersionInfo

DEFAULT_REGISTRY = Path("workspace/models")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its actions to the top-level parser."""
    models = subparsers.add_parser("models", help="list, inspect, promote and roll back model versions")
    actions = models.add_subparsers(dest="action", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY,
                        help=f"registry root folder (default: {DEFAULT_REGISTRY}, relative to the current directory)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = actions.add_parser("list", parents=[common], help="all versions, oldest first; * marks the champion")
    p.add_argument("--verify", action="store_true", help="recompute every checksum (reads every file)")
    p.set_defaults(func=_guarded(_cmd_list))

    p = actions.add_parser("show", parents=[common], help="one version, checksums verified")
    p.add_argument("version")
    p.set_defaults(func=_guarded(_cmd_show))

    p = actions.add_parser("promote", parents=[common], help="make VERSION the champion (no metric gate)")
    p.add_argument("version")
    p.add_argument("--note", default="manual promotion", help="why, recorded in the history")
    p.set_defaults(func=_guarded(_cmd_promote))

    p = actions.add_parser("rollback", parents=[common], help="move the champion back to the previous one")
    p.add_argument("--note", default="manual rollback", help="why, recorded in the history")
    p.set_defaults(func=_guarded(_cmd_rollback))


def _cmd_list(args: argparse.Namespace) -> int:
    infos = ModelRegistry(args.registry).list(verify=args.verify)
    if args.json:
        _print_json([i.to_dict() for i in infos])
    elif not infos:
        print(f"no versions in {args.registry}")
    else:
        for info in infos:
            print(_row(info))
    return 1 if any(i.problem for i in infos) else 0


def _cmd_show(args: argparse.Namespace) -> int:
    registry = ModelRegistry(args.registry)
    info = registry.show(args.version)
    events = [e.to_dict() for e in registry.history() if e.version == args.version]
    periods = _periods(info)
    if args.json:
        _print_json({**info.to_dict(), "periods": periods, "history": events})
    else:
        print(_row(info))
        for name in ("fit", "val", "holdout"):
            span = (periods or {}).get(name)
            print(f"  {name + ':':8} {' .. '.join(span) if span else '-'}")
        print(f"  path:    {info.path}")
        print(f"  files:   {', '.join(info.files) or '-'}")
        print(f"  meta:    {json.dumps(dict(info.meta), sort_keys=True, default=str)}")
        for e in events:
            print(f"  {e['at']}  #{e['seq']} {e['event']}  {json.dumps(e['reason'], sort_keys=True)}")
    return 1 if info.problem else 0


def _periods(info: VersionInfo) -> dict | None:
    """The version's ``fit``, ``val`` and ``holdout`` spans ([first, last] ISO dates, or None):
    from its manifest's meta, else from its (checksummed) metrics.json."""
    periods = (info.meta or {}).get("periods")
    if periods is None and (info.path / "metrics.json").is_file():
        periods = json.loads((info.path / "metrics.json").read_text()).get("periods")
    if periods is None:
        return None
    return {k: periods.get(k) for k in ("fit", "val", "holdout")} | {"embargo_sessions": periods.get("embargo_sessions")}


def _cmd_promote(args: argparse.Namespace) -> int:
    record = ModelRegistry(args.registry).promote(args.version, _manual_reason(args.note))
    return _report_move(args, record.to_dict(), f"champion is now {record.version} "
                        f"(was {record.event.champion_before or 'none'})")


def _cmd_rollback(args: argparse.Namespace) -> int:
    record = ModelRegistry(args.registry).rollback(_manual_reason(args.note))
    return _report_move(args, record.to_dict(), f"rolled back: champion is now {record.version} "
                        f"(was {record.event.champion_before})")


def _report_move(args: argparse.Namespace, record: dict[str, Any], text: str) -> int:
    if args.json:
        _print_json(record)
    else:
        print(text)
    return 0


def _manual_reason(note: str) -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry or USER
        user = "unknown"
    return {"source": "cli", "user": user, "note": note}


def _row(info: VersionInfo) -> str:
    mark = "*" if info.is_champion else " "
    status = f"BAD: {info.problem}" if info.problem else ("verified" if info.verified else "")
    return f"{mark} {info.version}  {info.created_at or '-':20}  {status}".rstrip()


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _guarded(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One-line error and exit 2 on a registry problem: an operator needs the message, not a trace."""

    def run(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except (RegistryError, ArtifactError, OSError) as exc:
            print(f"spywatch models {args.action}: error: {exc}", file=sys.stderr)
            return 2

    return run
