"""The nightly pipeline as plain Python: fetch -> validate -> features -> champion -> predict +
audit -> drift -> decide -> (retrain) -> publish -> alerts, assembled into one typed audit.

Rooms: ``config`` (the night's settings), ``champion`` (the model in force, its age and decay
window), ``monitor`` (the stages that look at data and predictions), ``decide`` (signals into a
decision), ``retrain`` (train a challenger, gate it), ``failures`` (what each failure does),
``alerts`` and ``story`` (events and log lines from the typed audit), ``run`` (the night itself).
"""

from spywatch.night.config import PipelineConfig
from spywatch.night.run import NightlyResult, PlainRunner, run_night

__all__ = ["NightlyResult", "PipelineConfig", "PlainRunner", "run_night"]
