"""Wall time of one nightly drift report with its HTML (target: under 3 s, imports excluded).

Reference: SPY features 1994-2016 (about 5,800 rows x 21 features); current: 60 sessions of 2020.
Times ``run_drift_report`` + ``save_drift_report`` (Evidently runs, self-contained HTMLs, JSON summary):
features against the training reference only; plus the regime check (the window against the 250
sessions before it, a second Evidently report and HTML); plus prediction drift for three horizons
(what the nightly pipeline runs). One warm-up run first; evidently is imported before the clock
starts, and its import time is recorded separately.

    .venv/bin/python bench/drift_timing.py [--repeats 5]
writes bench/results/drift_timing.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine  # noqa: E402

from spywatch.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from spywatch.drift import (  # noqa: E402
    current_window,
    recent_rows,
    reference_rows,
    run_drift_report,
    save_drift_report,
)
from spywatch.drift_config import DriftConfig  # noqa: E402
from spywatch.features import compute_features  # noqa: E402
from spywatch.market_data import read_bars_csv  # noqa: E402

DATA = HERE.parent / "data" / "spy_daily.csv"
RESULTS = HERE / "results" / "drift_timing"
BUDGET_S = 3.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    import evidently  # noqa: F401

    import_s = time.perf_counter() - t0
    config = DriftConfig.load()
    features = compute_features(read_bars_csv(DATA))
    reference = reference_rows(features, config.features, "1994-01-01", "2016-12-31")
    current = current_window(features, config.features, config.window, start="2020-02-01", end="2020-04-30")
    recent = recent_rows(features, config.features, current, config.recent_sessions)
    rng = np.random.default_rng(0)
    val_preds = pd.DataFrame({h: rng.beta(2, 5, 750) for h in ("h1", "h3", "h5")})
    cur_preds = pd.DataFrame({h: rng.beta(2, 5, len(current)) for h in ("h1", "h3", "h5")})
    kinds = {"features vs training reference only": (None, None, None),
             "features + prediction drift (3 horizons), no regime check (the pipeline before it)": (None, val_preds,
                                                                                                    cur_preds),
             f"features + regime check (vs the {len(recent)} sessions before)": (recent, None, None),
             "features + regime check + prediction drift (3 horizons): the nightly pipeline": (recent, val_preds,
                                                                                               cur_preds)}
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        save_drift_report(run_drift_report(reference, current, config, recent=recent), Path(tmp))
        first_s = time.perf_counter() - t1
        for _ in range(args.repeats):
            for kind, (rec, ref_p, cur_p) in kinds.items():
                t = time.perf_counter()
                report = run_drift_report(reference, current, config, recent=rec, reference_predictions=ref_p,
                                          current_predictions=cur_p)
                files = save_drift_report(report, Path(tmp))
                runs[kind].append(time.perf_counter() - t)
        html_bytes = files.html.stat().st_size
    doc = {"machine": machine(), "command": "python bench/drift_timing.py " + " ".join(sys.argv[1:]),
           "evidently_import_s": import_s, "first_report_s": first_s, "reference_rows": len(reference),
           "current_rows": len(current), "recent_rows": len(recent), "features": len(config.features),
           "regime_features": len(config.regime.features) if config.regime else 0, "html_bytes": html_bytes,
           "budget_s": BUDGET_S, "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
           "runs": {k: {"median_s": statistics.median(v), "max_s": max(v), "all_s": v} for k, v in runs.items()}}
    lines = ["# Drift report timing (one report + its HTML, imports excluded)\n",
             f"- ran: `{doc['command']}`, {doc['machine']['date']}",
             f"- machine: {doc['machine']['cpu']}, {doc['machine']['host_cores']} cores, CPU only (shared with other work: "
             f"1-minute load average {doc['load_average_1m']['before']:.1f} before, {doc['load_average_1m']['after']:.1f} "
             "after)",
             f"- reference {len(reference)} rows x {len(config.features)} features (SPY 1994-2016) vs current "
             f"{len(current)} sessions ({current.index[0].date()}..{current.index[-1].date()}); HTML "
             f"{html_bytes / 1e6:.1f} MB, self-contained; regime check: {doc['regime_features']} features vs the "
             f"{len(recent)} sessions before the window ({recent.index[0].date()}..{recent.index[-1].date()})",
             f"- `import evidently`: {import_s:.1f} s (excluded); first report after import (warm-up, excluded): "
             f"{first_s:.2f} s", "",
             f"| report | median of {args.repeats} | max | under {BUDGET_S:g} s |", "|---|---|---|---|"]
    for kind, v in doc["runs"].items():
        lines.append(f"| {kind} | {v['median_s']:.2f} s | {v['max_s']:.2f} s | {'yes' if v['max_s'] < BUDGET_S else 'NO'} |")
    atomic_write_json(args.out.with_suffix(".json"), doc)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
