"""What a benchmark ran on: recorded beside every result."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess


def machine() -> dict:
    info = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host_cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu": _cpu_model()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     check=False).stdout.strip()
    except OSError:
        pass
    if not info.get("git") and os.environ.get("SPYWATCH_GIT"):  # a copy of the tree without .git (a device run)
        info["git"] = os.environ["SPYWATCH_GIT"]
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
