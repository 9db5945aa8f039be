"""Child process for the registry kill tests: registers, promotes and rolls back until killed.

Usage: ``python registry_kill_child.py ROOT SEED [--markers]``

With ``--markers`` every rename (the commit points of artifacts, the alias and the history) prints
``step <op> <target>`` before and after it and pauses briefly, so the parent can SIGKILL the child
exactly between two steps. Without it the parent kills at a random time. The child prints
``ready`` once it starts working. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from spywatch.promotion import ModelScore, PromotionPolicy
from spywatch.registry import ModelRegistry


def _install_markers(rng: random.Random) -> None:
    """Wrap the renames so each announces itself and pauses: a kill can land between steps."""
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def wrapped(src, dst, *a, _real=real, _name=name, **kw):  # type: ignore[no-untyped-def]
            print(f"step before-{_name} {Path(dst).name}", flush=True)
            time.sleep(rng.uniform(0.0, 0.01))
            _real(src, dst, *a, **kw)
            print(f"step after-{_name} {Path(dst).name}", flush=True)
            time.sleep(rng.uniform(0.0, 0.01))

        setattr(os, name, wrapped)


def main() -> None:
    root, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    if "--markers" in sys.argv:
        _install_markers(rng)
    registry = ModelRegistry(root)
    policy = PromotionPolicy(rule="margin", min_improvement=0.0, auc_floor=0.5)
    print("ready", flush=True)
    for i in range(10_000):
        # ~256 KiB of weights widens the window in which a kill lands mid-write
        blob = rng.randbytes(rng.randint(1, 256) * 1024)
        version = registry.register(lambda d, b=blob: (d / "weights.pt").write_bytes(b),
                                    meta={"i": i, "seed": seed}, version=f"child-{seed}-{i:05d}")
        if i % 3 == 2:
            registry.rollback({"i": i})
        else:
            better = 0.6 + rng.uniform(0, 0.1)
            registry.promote_if_better(
                version,
                ModelScore({"h1": better}, collapsed=False, window="w"),
                ModelScore({"h1": 0.55}, collapsed=False, window="w"),
                policy,
            )


if __name__ == "__main__":
    main()
