"""Bounded echoes: a value that came from outside (a CSV field, an argument, a request, an
exception's message) is shown cut to ``LIMIT`` characters with its full length, wherever it is
echoed: an error, the audit, ``latest.json``, the report, the log, an alert. A 60 MB field stays
a 60 MB field in the input and becomes a line of ~250 characters everywhere else.
"""

from __future__ import annotations

LIMIT = 200


def cut(text: str, limit: int = LIMIT) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` and its length."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text):,} characters, cut to {limit}]"


def shown(value: object, limit: int = LIMIT) -> str:
    """``repr(value)``, cut: how an input value is quoted in a message."""
    if isinstance(value, (str, bytes)) and len(value) > limit:  # not the repr of a huge string
        return f"{value[:limit]!r}... [{len(value):,} characters, cut to {limit}]"
    return cut(repr(value), limit)


def bounded(obj: object, limit: int = 4 * LIMIT) -> object:
    """``obj`` (JSON-like: dicts, lists, strings, numbers) with every string cut to ``limit``: the
    last guard before a record is written (audit.json, latest.json), for whatever reached it."""
    if isinstance(obj, str):
        return cut(obj, limit)
    if isinstance(obj, dict):
        return {k: bounded(v, limit) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [bounded(v, limit) for v in obj]
    return obj
