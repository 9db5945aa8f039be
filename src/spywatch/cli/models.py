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
from typing import TYPE_CHECKING, Any

from spywatch.cli.arguments import root_dir
from spywatch.layout import RootLayout

if TYPE_CHECKING:  # imported by the commands: `spywatch --help` does not pay for the registry
    from spywatch.audit_schema import BaselineVerdict, NightAudit
    from spywatch.registry import ModelRegistry, VersionInfo

DEFAULT_REGISTRY = Path("workspace/models")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its actions to the top-level parser."""
    models = subparsers.add_parser("models", help="list, inspect, promote and roll back model versions")
    actions = models.add_subparsers(dest="action", required=True)

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--root", type=root_dir, default=None,
                       help="a spywatch root (the --root of spywatch run): its registry is ROOT/models")
    where.add_argument("--registry", type=Path, default=None,
                       help=f"the registry folder itself (default: {DEFAULT_REGISTRY}, relative to the current directory)")
    common.add_argument("--json", action="store_true", help="print JSON (for machines) instead of text")

    p = actions.add_parser("list", parents=[common], help="all versions, oldest first; * marks the champion")
    p.add_argument("--verify", action="store_true", help="recompute every checksum (reads every file)")
    p.set_defaults(func=_guarded(_cmd_list))

    p = actions.add_parser("show", parents=[common], help="one version, checksums verified (default: the champion)")
    p.add_argument("version", nargs="?", default="champion", help="a version id, or 'champion' (the default)")
    p.set_defaults(func=_guarded(_cmd_show))

    p = actions.add_parser("promote", parents=[common], help="make VERSION the champion (no metric gate)")
    p.add_argument("version")
    p.add_argument("--note", default="manual promotion", help="why, recorded in the history")
    p.set_defaults(func=_guarded(_cmd_promote))

    p = actions.add_parser("rollback", parents=[common], help="move the champion back to the previous one")
    p.add_argument("--note", default="manual rollback", help="why, recorded in the history")
    p.set_defaults(func=_guarded(_cmd_rollback))


def _registry(args: argparse.Namespace) -> ModelRegistry:
    """The registry named by --root or --registry; a folder that is not one is a usage error with a hint."""
    from spywatch.registry import ModelRegistry, RegistryError

    path = RootLayout(args.root).models if args.root is not None else args.registry or DEFAULT_REGISTRY
    if not path.is_dir():
        raise RegistryError(f"no model registry at {path}: a spywatch root keeps its models in <root>/models "
                            f"(--root DIR, or --registry DIR/models); `spywatch run --root DIR` creates it")
    return ModelRegistry(path)


def _last_night(registry: ModelRegistry) -> NightAudit | None:
    """The audit of the latest published night of the root the registry belongs to (the session,
    the model that predicted, that model's baseline verdict); None when nothing is published."""
    from spywatch.publish import Publisher

    root = registry.root.parent
    try:
        publisher = Publisher(root)
        latest = publisher.latest()
        if latest is None or not latest.session:
            return None
        return publisher.read_audit(latest.session)
    except (OSError, ValueError):
        return None


def _verdict_for(info: VersionInfo, night: NightAudit | None) -> BaselineVerdict | None:
    """The last night's baseline verdict, when ``info``'s version made that night's predictions."""
    return night.vs_baseline if night is not None and night.model_version == info.version else None


def _vs_baseline(info: VersionInfo, night: NightAudit | None) -> dict[str, Any] | None:
    """That verdict as ``--json`` prints it: ``{"session", **verdict}``."""
    vs = _verdict_for(info, night)
    return None if vs is None else {"session": night.session, **vs.model_dump(mode="json", exclude_unset=True)}


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    infos = registry.list(verify=args.verify)
    night = _last_night(registry)
    rows = [(info, {**_summary(info, _metrics(info)), "vs_baseline": _vs_baseline(info, night)}) for info in infos]
    if args.json:
        _print_json([{**i.to_dict(), **summary} for i, summary in rows])
    elif not infos:
        print(f"no versions in {registry.root} (a spywatch root keeps its models in <root>/models)")
    else:
        print(f"  {'version':27} {'session':10}  {'fit span':24}  {'holdout mean AUC (h1 / h3 / h5)':34} "
              f"{'training':20} {'vs RF (last night)':24} status")
        for info, summary in rows:
            print(_row(info, summary, _verdict_for(info, night)))
        print("* the champion; vs RF: the baseline verdict of the last published night, for the model that predicted it")
    return 1 if any(i.problem for i in infos) else 0


def _cmd_show(args: argparse.Namespace) -> int:
    from spywatch.audit_schema import Training
    from spywatch.registry import RegistryError
    from spywatch.training_audit import finding_line, member_lines
    from spywatch.vs_baseline import phrase

    registry = _registry(args)
    version = args.version
    if version == "champion":
        version = registry.champion
        if version is None:
            raise RegistryError(f"no champion in {registry.root} yet: `spywatch models list` shows the versions")
    info = registry.show(version)
    events = [e.to_dict() for e in registry.history() if e.version == version]
    metrics = _metrics(info)
    night = _last_night(registry)
    summary = {**_summary(info, metrics), "vs_baseline": _vs_baseline(info, night)}
    if args.json:
        _print_json({**info.to_dict(), **summary, "history": events})
        return 1 if info.problem else 0
    periods = summary["periods"] or {}
    print(f"version   {info.version}" + ("   (the champion)" if info.is_champion else ""))
    print(f"status    {'BAD: ' + info.problem if info.problem else 'checksums verified' if info.verified else '-'}")
    print(f"created   {info.created_at or '-'}")
    print(f"trained   for session {summary['session'] or '-'}, {len(metrics.get('members') or []) or '?'} member(s) on "
          f"{metrics.get('device') or '?'} in {_num(metrics.get('train_seconds'), 1)} s")
    for name in ("fit", "val", "holdout"):
        span = periods.get(name)
        print(f"{name:9} {' .. '.join(span) if span else '-'}")
    if periods.get("embargo_sessions") is not None:
        print(f"embargo   {periods['embargo_sessions']} sessions between fit and holdout")
    holdout = metrics.get("holdout") or {}
    if holdout:
        print("scores    " + "   ".join(f"{h}: AUC {_num(m.get('auc'))} Brier {_num(m.get('brier'))} (n {m.get('n')})"
                                        for h, m in holdout.items()) + "  (on the holdout)")
    training = Training.of_metrics(metrics)
    if training is not None:
        refused = training.verdict != "healthy"
        print(f"training  {training.verdict}" + (" (refused by the gate before scoring)" if refused else ""))
        for f in training.findings:
            print(f"  {finding_line(f)}")
        for line in member_lines(training):
            print(f"  {line}")
    else:
        print("training  not audited (a version from before the training audit)")
    vs = _verdict_for(info, night)
    if vs is not None:
        print(f"baseline  {phrase(vs)} (the night of {night.session}; sessions {' .. '.join(vs.span or [])})")
    print(f"files     {', '.join(info.files) or '-'}")
    print(f"path      {info.path}")
    if events:
        print("history")
        for e in events:
            print(f"  {e['at']}  #{e['seq']} {e['event']}: {_brief(e['reason'])}")
    return 1 if info.problem else 0


def _summary(info: VersionInfo, metrics: dict[str, Any]) -> dict[str, Any]:
    """What a person asks of a version: the session it was trained for, its spans, its holdout AUC
    (``metrics``: the version's metrics.json, read once by the caller)."""
    from spywatch.audit_schema import Training
    from spywatch.training_audit import finding_line

    holdout = metrics.get("holdout") or {}
    aucs = {h: m.get("auc") for h, m in holdout.items() if isinstance(m, dict)}
    known = [v for v in aucs.values() if isinstance(v, (int, float)) and v == v]
    training = Training.of_metrics(metrics)
    return {"session": (info.meta or {}).get("session") or (metrics.get("data") or {}).get("trained_session"),
            "periods": _periods(info, metrics),
            "training": {"verdict": training.verdict, "findings": [finding_line(f) for f in training.findings]}
            if training is not None else None,
            "holdout_auc": {**{h: _round(v) for h, v in aucs.items()},
                            "mean": _round(sum(known) / len(known)) if known else None} if aucs else None}


def _metrics(info: VersionInfo) -> dict[str, Any]:
    path = info.path / "metrics.json"
    if info.problem or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _row(info: VersionInfo, summary: dict[str, Any], vs: BaselineVerdict | None) -> str:
    mark = "*" if info.is_champion else " "
    fit = " .. ".join((summary["periods"] or {}).get("fit") or []) or "-"
    auc = summary["holdout_auc"]
    auc_text = (f"{_num(auc['mean'])} ({' / '.join(_num(v) for h, v in auc.items() if h != 'mean')})"
                if auc else "-")
    status = f"BAD: {info.problem}" if info.problem else ("verified" if info.verified else "manifest read (--verify checks)")
    training = summary["training"]["verdict"] if summary["training"] else "-"
    vs_text = "-" if vs is None else vs.verdict if vs.difference is None else f"{vs.verdict} {vs.difference:+.3f}"
    return (f"{mark} {info.version:27} {summary['session'] or '-':10}  {fit:24}  {auc_text:34} {training:20} "
            f"{vs_text:24} {status}").rstrip()


def _round(x: Any, digits: int = 4) -> Any:
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _round(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v, digits) for v in x]
    return x


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and x == x else "-"


def _brief(reason: Any, most: int = 300) -> str:
    """A history reason on one line: the gate's sentences where it has them, else its plain fields."""
    if not isinstance(reason, dict):
        return str(reason)
    gate = reason.get("gate") if isinstance(reason.get("gate"), dict) else reason
    parts = [str(r) for r in gate.get("reasons") or []]
    parts += [f"{k} {_round(v)}" for k, v in reason.items()
              if k not in ("gate", "reasons") and isinstance(v, (str, int, float, bool)) and v is not None]
    parts += [f"{k} {' .. '.join(map(str, v))}" for k, v in reason.items()
              if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)]
    text = "; ".join(parts) or "-"
    return text if len(text) <= most else text[:most - 1] + "…"


def _periods(info: VersionInfo, metrics: dict[str, Any]) -> dict | None:
    """The version's ``fit``, ``val`` and ``holdout`` spans ([first, last] ISO dates, or None):
    from its manifest's meta, else from its (checksummed) metrics.json."""
    periods = (info.meta or {}).get("periods")
    if periods is None:
        periods = metrics.get("periods")
    if periods is None:
        return None
    return {k: periods.get(k) for k in ("fit", "val", "holdout")} | {"embargo_sessions": periods.get("embargo_sessions")}


def _cmd_promote(args: argparse.Namespace) -> int:
    record = _registry(args).promote(args.version, _manual_reason(args.note))
    return _report_move(args, record.to_dict(), f"champion is now {record.version} "
                        f"(was {record.event.champion_before or 'none'})")


def _cmd_rollback(args: argparse.Namespace) -> int:
    record = _registry(args).rollback(_manual_reason(args.note))
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


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _guarded(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One-line error and exit 2 on a registry problem: an operator needs the message, not a trace."""

    def run(args: argparse.Namespace) -> int:
        from spywatch.artifact import ArtifactError
        from spywatch.registry import RegistryError

        try:
            return cmd(args)
        except (RegistryError, ArtifactError, OSError) as exc:
            print(f"spywatch models {args.action}: error: {exc}", file=sys.stderr)
            return 2

    return run
