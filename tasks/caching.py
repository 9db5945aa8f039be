"""Cache keys for the few tasks whose results may be re-used: built from what determines the
result (ticker, session date, code version, data and model inputs), never from DataFrames."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.context import TaskRunContext


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the ``spywatch`` sources: any code change invalidates every cached result."""
    import spywatch

    package = Path(spywatch.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json", ".j2"):
            digest.update(path.relative_to(package).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def challenger_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Key of a challenger training for one session.

    Re-use is safe only when everything the training and the gate see is identical: ticker,
    session, the data hash (a revised bar changes it), the champion it is gated against, the
    training settings, the code and the registry root. Then training is deterministic (seeded)
    and the registered version is still there, so a repeated request (a retried nightly, a
    re-run of the session) gets the recorded outcome instead of a second identical model.
    """
    night = parameters["night"]
    cfg = night.cfg
    if not night.data_info.get("data_hash"):
        return None  # no data identity: never re-use
    key = {"ticker": cfg.ticker, "session": night.sid, "data": night.data_info["data_hash"],
           "champion": night.champion.version if night.champion else None, "code": code_version(),
           "model": cfg.model, "max_epochs": cfg.max_epochs, "policy": cfg.policy, "fit": cfg.fit.to_dict(),
           "promotion": cfg.promotion.to_dict(),
           "root": str(Path(cfg.root).resolve())}
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return f"challenger-{cfg.ticker}-{night.sid}-{hashlib.sha256(blob).hexdigest()[:16]}"
