"""``spywatch drift``: test a window of features against the training reference, write HTML + JSON.

    spywatch drift --data data/spy_daily.csv --reference-end 2016-12-31 \
        --current-start 2020-02-01 --current-end 2020-04-30

The current window is the last ``--window`` (default: the calibrated 60) complete sessions in
[--current-start, --current-end]; the reference is every complete feature row in
[--reference-start, --reference-end]. When the thresholds file has a regime rule, the window is also
tested against the sessions just before it (``drift_regime.html``); ``--no-regime`` skips that.
Exit status 1 when drift is detected (a finding, like a failed check), 0 when quiet, 2 on a usage
or input error. Reports go to ``workspace/reports/drift`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spywatch.cli.arguments import iso_date


def _cmd_drift(args: argparse.Namespace) -> int:
    import pandas as pd

    from spywatch.drift import current_window, recent_rows, reference_rows, run_drift_report, save_drift_report
    from spywatch.drift_config import DriftConfig
    from spywatch.features import compute_features
    from spywatch.market_data import read_bars_csv

    config = DriftConfig.load(args.thresholds, window=args.window)
    features = compute_features(read_bars_csv(args.data))
    if pd.Timestamp(args.current_start) <= pd.Timestamp(args.reference_end):
        raise ValueError(f"--current-start {args.current_start} must come after --reference-end {args.reference_end}")
    reference = reference_rows(features, config.features, args.reference_start, args.reference_end)
    current = current_window(features, config.features, config.window, args.current_start, args.current_end)
    recent = (recent_rows(features, config.features, current, config.recent_sessions)
              if config.recent_sessions and not args.no_regime else None)
    report = run_drift_report(reference, current, config, recent=recent)
    files = save_drift_report(report, args.out)
    if args.json:
        print(json.dumps(report.result.to_dict(), indent=2))
    else:
        print(report.result.summary())
        print(f"wrote {', '.join(str(f) for f in (files.html, files.regime_html, files.json) if f)}")
    return 1 if report.result.dataset_drift else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``drift`` subcommand (called by ``spywatch.cli``)."""
    p = subparsers.add_parser("drift", help="feature drift of a window against the training reference (Evidently)")
    p.add_argument("--data", required=True, type=Path, help="bars CSV (Date, Open, High, Low, Close, Adj Close, Volume)")
    p.add_argument("--reference-end", required=True, type=iso_date, help="last date of the training reference")
    p.add_argument("--reference-start", default=None, type=iso_date, help="first date of the reference (default: first complete row)")
    p.add_argument("--current-start", required=True, type=iso_date, help="earliest date of the current window")
    p.add_argument("--current-end", default=None, type=iso_date, help="last date of the current window (default: last row)")
    p.add_argument("--window", type=int, default=None,
                   help="sessions in the current window (default: the calibrated window of the thresholds file)")
    p.add_argument("--thresholds", type=Path, default=None,
                   help="drift thresholds JSON (default: the calibrated one shipped with spywatch)")
    p.add_argument("--out", type=Path, default=Path("workspace/reports/drift"),
                   help="folder for drift.html and drift.json (default: %(default)s)")
    p.add_argument("--no-regime", action="store_true",
                   help="test against the training reference only (skip the window vs the sessions before it)")
    p.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    p.set_defaults(func=_cmd_drift)
