"""Time the validation stage on 30 years of real SPY: ``raw_bars`` plus the ``features`` suite.

The goal is under 2 s for both suites together, once GX is warm. The one-off costs (importing
GX, building its context, loading the NYSE calendar) are measured and reported separately, as is
the pandas part of ``raw_bars`` (derived columns), so a regression can be placed.

    .venv/bin/python bench/validation_timing.py [--repeats 5] [--out bench/results/validation_timing.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent / "data" / "spy_daily.csv"
AS_OF = "2024-12-31"
TRAIN_END = "2016-12-30"
GOAL_S = 2.0


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def band_evidence(features, scaler) -> list[str]:
    """Why FEATURE_BAND_STD: the worst real |z| against the median |z| of a x100 unit error."""
    from spywatch.features import FEATURE_BOUNDS
    from spywatch.validation import FEATURE_BAND_STD

    real = features.dropna()
    unseen = real.loc[real.index > TRAIN_END]
    lines = ["| feature | max abs z, 2017-2024 (unseen) | max abs z, 1994-2024 | median abs z, x100 |",
             "| --- | ---: | ---: | ---: |"]
    for name, s in scaler.stats.items():
        if None not in FEATURE_BOUNDS[name]:
            continue  # bounded both sides: natural bounds, no band
        z = lambda x: ((x - s.mean) / s.std).abs()  # noqa: E731
        lines.append(f"| {name} | {z(unseen[name]).max():.1f} | {z(real[name]).max():.1f} | "
                     f"{z(unseen[name] * 100).median():.1f} |")
    return [f"## Feature band: training mean +- {FEATURE_BAND_STD:g} std (scaler fitted ..{TRAIN_END})", "",
            *lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "validation_timing.md")
    args = ap.parse_args()

    # One-off costs, each reported on its own line.
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    start = time.perf_counter()
    import great_expectations  # noqa: F401

    import_s = time.perf_counter() - start
    from spywatch import validation
    from spywatch.dataset import build_table
    from spywatch.features import FeatureScaler
    from spywatch.market_data import read_bars_csv

    warm_s = validation.warm_up()

    # Inputs (not timed): the real file, its features and a model folder fitted on 1994-2016.
    bars = read_bars_csv(DATA)
    features = build_table(bars).features
    scaler = FeatureScaler.fit(features.loc[:TRAIN_END])
    model_dir = Path(tempfile.mkdtemp(prefix="validation-bench-"))
    scaler.save(model_dir / "scaler.json")
    validation.write_features_suite(scaler, model_dir)

    bars_result = validation.validate_bars(bars, AS_OF)
    features_result = validation.validate_features(features, model_dir)
    if not (bars_result.success and features_result.success):
        raise SystemExit(f"real data should pass:\n{bars_result.format()}\n{features_result.format()}")

    table_s = _timed(lambda: validation.bars_table(bars), args.repeats)
    bars_s = _timed(lambda: validation.validate_bars(bars, AS_OF), args.repeats)
    feat_s = _timed(lambda: validation.validate_features(features, model_dir), args.repeats)
    total = statistics.median(bars_s) + statistics.median(feat_s)

    from machine import machine

    info = machine()
    rows = [
        ("import great_expectations (excluded)", [import_s]),
        ("warm-up: GX context + NYSE calendar + a 3-bar validation (excluded)", [warm_s]),
        (f"raw_bars: {bars_result.n_rows} bars, {bars_result.n_checks} checks", bars_s),
        ("raw_bars, pandas part only: derived columns (bars_table)", table_s),
        (f"features: {features_result.n_rows} rows x {len(scaler.stats)} features, "
         f"{features_result.n_checks} checks", feat_s),
    ]
    lines = [
        "# Validation timing",
        "",
        f"Machine: {info['cpu']}, {info['host_cores']} cores (shared with other work), "
        f"Python {info['python']}, {info['platform']}; git {info.get('git', '?')}; {info['date']}.",
        f"Data: data/spy_daily.csv (1993-01-29..2024-12-31), as-of {AS_OF}; "
        f"features scaler fitted on ..{TRAIN_END}. {args.repeats} repeats, seconds.",
        "",
        "| step | median | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, values in rows:
        lines.append(f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    verdict = "meets" if total < GOAL_S else "MISSES"
    lines += ["", f"**Total, both suites warm (median): {total:.2f} s: {verdict} the {GOAL_S:g} s goal.** "
              f"Load average during the run: {os.getloadavg()[0]:.1f} on {info['host_cores']} cores.", "",
              *band_evidence(features, scaler)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        from spywatch.atomic import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
