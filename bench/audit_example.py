"""Produce the report's example audit from a real run: ``tests/data/audit_example.json``.

Two real nights of the plain pipeline (``night.run_night``: the same stages as the flow) on the
deterministic synthetic market, with the default PatchTST: the first (2023-12-29) trains and
promotes the first champion; the second (2024-06-28) predicts and audits it against its
baselines on the matured labels since, measures drift, and retrains, because the policy here
retires a champion after 90 days (the default policy's other settings), so the audit carries a
real promotion gate. A third night (2024-07-31) gets bars whose last session has its High below
its Low and publishes only its failure audit (``tests/data/audit_validation_failure.json``). The
second night's published ``audit.json`` is copied, byte for byte, to the
fixture; ``docs/audit_report.png`` is then rendered from it by
``SPYWATCH_UPDATE_DOCS_SCREENSHOT=1 pytest tests/unit/test_report.py -k update_docs``.

    python bench/audit_example.py [--work DIR]      # about 3-5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "audit_example.json"
FAILURE_FIXTURE = REPO / "tests" / "data" / "audit_validation_failure.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "audit_example")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    from spywatch.night import PipelineConfig, run_night
    from spywatch.publish import Publisher

    if args.work.exists():
        shutil.rmtree(args.work)
    t0 = time.perf_counter()
    base = PipelineConfig.for_policy("default", source="synthetic", root=args.work.resolve())
    cfg = replace(base, retrain_policy=replace(base.retrain_policy, max_age_days=90.0))
    first = run_night(replace(cfg, as_of="2023-12-29"), force=True)
    if not first.ok:
        print(first.summary(), file=sys.stderr)
        return 1
    night = run_night(replace(cfg, as_of="2024-06-28"), force=True)
    print(night.summary())
    if not night.ok:
        return 1
    audit = Publisher(args.work).session_dir("2024-06-28") / "audit.json"
    shutil.copyfile(audit, FIXTURE)
    bad = run_night(replace(cfg, as_of="2024-07-31", source="corrupt:bad-ohlc:synthetic"), force=True)
    print(bad.summary())
    if bad.status != "validation_failed":
        return 1
    shutil.copyfile(Publisher(args.work).session_dir("2024-07-31") / "audit.json", FAILURE_FIXTURE)
    a = json.loads(FIXTURE.read_text())
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes) from {audit} in {time.perf_counter() - t0:.0f} s: "
          f"status {a['status']}, decision {[r['code'] for r in a['decision']['reasons']]}, "
          f"collapse {a['collapse']['verdict']}, promoted {(a.get('retrain') or {}).get('promoted')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
