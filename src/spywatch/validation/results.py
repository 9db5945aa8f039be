"""What a validation returns: failed checks, the suite's result, its JSON record, and their text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spywatch.atomic import atomic_write_json
from spywatch.text import cut

SHOWN = 3  # offending dates/values shown per failure before "and N more"


@dataclass(frozen=True)
class CheckFailure:
    """One failed check: which suite and expectation, on which original column, and why.

    ``dates`` holds the first few offending dates (ISO); ``count`` how many rows offend in all
    (0 for table-level checks such as the column list).
    """

    suite: str
    expectation: str
    column: str
    detail: str
    dates: tuple[str, ...] = ()
    count: int = 0

    def line(self) -> str:
        return f"{self.suite}: {self.expectation} [{self.column}]: {self.detail}"


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one suite on one frame; ``results_path`` is the JSON record, if one was kept."""

    suite: str
    success: bool
    failures: tuple[CheckFailure, ...]
    n_rows: int
    n_checks: int
    seconds: float
    results_path: Path | None = None

    @property
    def failed_checks(self) -> frozenset[str]:
        return frozenset(f.expectation for f in self.failures)

    def lines(self) -> list[str]:
        """One line per failed check: suite, expectation, column, offending dates or values."""
        return [f.line() for f in self.failures]

    def summary(self) -> str:
        state = "passed" if self.success else f"FAILED {len(self.failures)} check(s)"
        return (f"{self.suite}: {state} ({self.n_checks} checks, {self.n_rows} rows, "
                f"{self.seconds:.2f} s)")

    def reason(self) -> str:
        """One line for a failure's reason: the first failed check with its column and dates, and how many more."""
        if self.success:
            return f"{self.suite}: passed"
        first, more = self.failures[0], len(self.failures) - 1
        tail = f" (and {more} more check(s))" if more else ""
        return f"{self.suite} validation failed: {first.line().removeprefix(self.suite + ': ')}{tail}"

    def format(self) -> str:
        return "\n".join([*self.lines(), self.summary()])

    def raise_if_failed(self) -> ValidationResult:
        if not self.success:
            raise ValidationFailed(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "success": self.success, "n_rows": self.n_rows,
                "n_checks": self.n_checks, "seconds": self.seconds,
                "failures": [dataclasses.asdict(f) for f in self.failures]}


class ValidationFailed(Exception):
    """Raised by callers that stop on bad data; carries the full :class:`ValidationResult`."""

    def __init__(self, result: ValidationResult):
        super().__init__(result.format())
        self.result = result


# ----------------------------------------------------------------------------- text and record


def listing(items: tuple[str, ...] | list[str], total: int) -> str:
    """The shown items, then "and N more" up to ``total``."""
    more = f" and {total - len(items)} more" if total > len(items) else ""
    return ", ".join(items) + more


def day_text(value: Any) -> str:
    """A date as ISO day; "NaT" for none."""
    return "NaT" if value is None else str(value)[:10]


def num_text(value: Any) -> str:
    """A value for a failure line: 6 significant digits, "missing" for null."""
    if value is None:
        return "missing"  # GX writes NaN as JSON null
    if isinstance(value, (float, np.floating)) and not math.isnan(value):
        return f"{value:.6g}"
    return cut(str(value))


def finish(suite: str, failures: list[CheckFailure], n_rows: int, n_checks: int, start: float,
           results_dir: Path | None, record: dict) -> ValidationResult:
    """The suite's result, timed from ``start``; with ``results_dir``, its JSON record written there too."""
    result = ValidationResult(suite=suite, success=not failures, failures=tuple(failures),
                              n_rows=n_rows, n_checks=n_checks, seconds=time.perf_counter() - start)
    if results_dir is None:
        return result
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = atomic_write_json(results_dir / f"{suite}-{stamp}.json", {**result.to_dict(), **record})
    return dataclasses.replace(result, results_path=path)
