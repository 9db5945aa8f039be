"""Data validation with Great Expectations: the ``raw_bars`` and ``features`` suites.

The suites are reviewed JSON, never rebuilt in code: ``raw_bars`` lives in the repository's GX
project (``expectations/suites/raw_bars.json``); a ``features`` suite is generated from a model's
training statistics and stored in that model's folder. Rooms: ``results`` (what a validation
returns), ``gx`` (GX's context, suites and results as typed views), ``bars`` and ``features``.
"""

from spywatch.validation.bars import (DERIVED_COLUMNS, RAW_BARS_SUITE, bars_table, read_bars_for_validation,
                                      validate_bars, warm_up)
from spywatch.validation.features import (FEATURE_BAND_STD, FEATURES_SUITE, FEATURES_SUITE_FILE, SCALER_FILE,
                                          build_features_suite, load_features_suite, scaler_fingerprint,
                                          validate_features, write_features_suite)
from spywatch.validation.gx import GX_PROJECT_DIR, Suite, load_suite
from spywatch.validation.results import SHOWN, CheckFailure, ValidationFailed, ValidationResult

__all__ = ["DERIVED_COLUMNS", "FEATURES_SUITE", "FEATURES_SUITE_FILE", "FEATURE_BAND_STD", "GX_PROJECT_DIR",
           "RAW_BARS_SUITE", "SCALER_FILE", "SHOWN", "CheckFailure", "Suite", "ValidationFailed",
           "ValidationResult", "bars_table", "build_features_suite", "load_features_suite", "load_suite",
           "read_bars_for_validation", "scaler_fingerprint", "validate_bars", "validate_features", "warm_up",
           "write_features_suite"]
