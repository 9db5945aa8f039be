"""This checkout's Prefect flows: ``spywatch`` is installed from ``src/``, the flows and tasks live
beside it in ``flows/`` and ``tasks/``, and this is the one place that makes them importable."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect import Flow


def project_root() -> Path:
    """The checkout holding ``flows/`` and ``prefect.yaml`` (``spywatch`` is installed from ``src/``)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "flows" / "nightly.py").exists() and (parent / "prefect.yaml").exists():
            return parent
    raise FileNotFoundError(f"no flows/nightly.py above {here}: run from a checkout, or use --no-prefect")


def checkout_flows() -> Path:
    """Put this checkout on ``sys.path``, so that ``flows`` and ``tasks`` import; returns the checkout."""
    repo = project_root()
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return repo


def load_flow(module: str, name: str) -> Flow:
    """The flow ``name`` of ``flows/<module>.py`` in this checkout, e.g. ``load_flow("fleet", "nightly_fleet")``."""
    checkout_flows()
    return getattr(importlib.import_module(f"flows.{module}"), name)
