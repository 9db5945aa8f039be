"""CLI conventions: ``python -m spywatch`` is the ``spywatch`` command, and ``--version`` says
which one is installed."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_python_dash_m_spywatch_runs_the_command_and_reports_its_version():
    out = subprocess.run([sys.executable, "-m", "spywatch", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"spywatch {version('spywatch')}"
    usage = subprocess.run([sys.executable, "-m", "spywatch"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: spywatch" in usage.stderr  # a usage error is exit 2
