"""Settings of the drift calibration (bench/drift_calibration.py): the reference period, the window, the
fault grids and the grids searched on the selection split.

Shared by bench/drift_calibration.py (scoring, calibration, main) and bench/drift_calibration_report.py (the
markdown report), so neither imports the other at module level.
"""

from __future__ import annotations

REF_START, REF_END = "1994-01-01", "2016-12-31"
WINDOW = 60
STRIDE = 10
HISTORY = 320  # bars before a window used to rebuild its features (>= 252 warm-up + EWM settling)
SHIFTS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # training std, the whole window
# A change that has only begun: the last 15 or 30 sessions of the window shifted. A nightly monitor
# sees every change this way first; a method that needs the whole window to move detects late.
ONSET_SESSIONS = (15, 30)
ONSET_SHIFTS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # training std
VOL_FAULTS = {"vol_x1.5_at_start": (1.5, 0), "vol_x2_at_start": (2.0, 0), "vol_x3_at_start": (3.0, 0),
              "vol_x2_settled": (2.0, 252)}  # name -> (multiplier, sessions before the window it starts)
METHODS = ("wasserstein", "ks", "t_test")
ALPHAS = (0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05)  # per-feature false-flag rates tried (<= the baseline's 5%)
MAX_SELECTION_ALARMS = 0.03  # dataset alarms allowed on selection windows (target 5% on report)
MIN_X100 = 0.99  # a method must flag the x100 fault this often on selection windows to be eligible
BASELINE_QUANTILE = 0.95  # the baseline: normed Wasserstein at the 95th pct of in-reference windows
REPLAY_START, REPLAY_END = "2005-01-01", "2024-12-31"
PERSISTENCE_K = 3
PREDICTION = {"method": "wasserstein", "threshold": 0.5}
# The regime check: the window against the sessions just before it.
RECENT_CHOICES = (60, 120, 250)  # sessions of recent past tried
RECENT_MAX = max(RECENT_CHOICES)
REGIME_FEATURES = ("vol_5", "vol_20", "vol_60", "atr_14_pct", "range_pct", "ret_1", "gap")
REGIME_METHODS = ("mannw", "t_test", "wasserstein", "ks")
# ret_1 and gap: a volatility change moves their spread, not their location, so only the two
# whole-distribution tests; mannw (one-sided: current larger) and t_test test location.
REGIME_ALLOWED = {f: (("wasserstein", "ks") if f in ("ret_1", "gap") else REGIME_METHODS) for f in REGIME_FEATURES}
REGIME_FAMILIES = {"range_pct": ("range_pct",),
                   "volatility": ("vol_5", "vol_20", "vol_60", "atr_14_pct", "range_pct"),
                   "volatility+returns": REGIME_FEATURES}
REGIME_ALPHAS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05)  # per-test false-flag rates tried for the regime tests
