"""One definition of the night: the plain path (``pipeline.run_night``) and the Prefect ``nightly``
flow, run on copies of one root for the same session, publish the same ``audit.json`` (run ids,
times and timings aside) and end the same way, for a good night and for each kind of failure."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from tests.flows.support import MAX_EPOCHS, TINY_MODEL

pytestmark = pytest.mark.integration

VOLATILE = {"run_id", "started_at", "finished_at", "timings", "seconds", "stale_at", "failed_run"}


def normalised(value, root: Path):  # noqa: ANN001, ANN201
    """The audit without what differs between two runs of one night: ids, clocks, the root's path."""
    if isinstance(value, dict):
        return {k: normalised(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalised(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(str(root), "<root>")
    return value


def tamper(root: Path) -> None:
    from spywatch.registry import ModelRegistry

    registry = ModelRegistry(root / "models")
    weights = registry.versions_dir / registry.champion / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])


def _boom(*_args, **_kwargs):
    raise RuntimeError("injected failure")


# name -> (session, source, policy, prepare(root), (module attribute, replacement) or None, status, failure kind)
CASES = {
    "published": ("2023-07-31", "synthetic", "default", None, None, "published", None),
    "raw_bars_invalid": ("2023-07-31", "corrupt:bad-ohlc:synthetic", "default", None, None, "validation_failed",
                         "raw_bars_invalid"),
    "fetch_failed": ("2023-07-31", "faulty:always:synthetic", "default", None, None, "failed", "fetch_failed"),
    "champion_refused": ("2023-07-31", "synthetic", "default", tamper, None, "failed", "champion_refused"),
    "stage_error": ("2023-07-31", "synthetic", "default", None, ("measure_drift", _boom), "failed", "stage_error"),
    "retrain_failed": ("2023-10-31", "synthetic", "calendar", None, ("train_challenger", _boom), "published",
                       "retrain_failed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_plain_path_and_the_flow_run_one_night(prefect_server, fresh_root, tmp_path, monkeypatch, case):
    from flows.nightly import nightly
    from spywatch.night import retrain as night_retrain
    from spywatch.night import run as pipeline
    from spywatch.night.config import PipelineConfig
    from spywatch.publish import Publisher

    session, source, policy, prepare, patch, status, kind = CASES[case]
    plain_root = tmp_path / "plain"
    shutil.copytree(fresh_root, plain_root, symlinks=True)
    for root in (fresh_root, plain_root):
        if prepare is not None:
            prepare(root)
    if patch is not None:  # the retrain is one function for the plain path and the retrain flow
        monkeypatch.setattr(night_retrain if patch[0] == "train_challenger" else pipeline, *patch)

    cfg = PipelineConfig.for_policy(policy, source=source, root=plain_root, as_of=session, model=TINY_MODEL,
                                    max_epochs=MAX_EPOCHS)
    retrain = case == "retrain_failed"  # elsewhere only the decision is recorded (training is slow)
    plain = pipeline.run_night(cfg, runner=pipeline.PlainRunner(fetch_backoff_s=0.01),
                               retrain=pipeline.train_here if retrain else None)
    state = nightly(root=str(fresh_root), as_of=dt.date.fromisoformat(session), source=source,
                    retrain_mode="inline" if retrain else "never",
                    model=TINY_MODEL, max_epochs=MAX_EPOCHS, fetch_backoff_s=0.01, policy=policy, return_state=True)

    # the same outcome: status, failure, how the run ends
    assert plain.status == status and (plain.failure.kind if plain.failure else None) == kind, plain.summary()
    assert plain.ok == (kind is None) and state.is_completed() == (kind is None), state.message
    flow_audit = json.loads((Publisher(fresh_root).session_dir(session) / "audit.json").read_text())
    plain_audit = json.loads((Publisher(plain_root).session_dir(session) / "audit.json").read_text())
    assert flow_audit["run_id"] == str(state.state_details.flow_run_id)
    if kind is not None:
        assert kind in state.message
    # the same audit, field by field
    a, b = normalised(plain_audit, plain_root), normalised(flow_audit, fresh_root)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], (key, a[key], b[key])
    # and the same latest.json (stale or not, with the same reason)
    la = normalised(Publisher(plain_root).latest().to_json_dict(), plain_root)
    lb = normalised(Publisher(fresh_root).latest().to_json_dict(), fresh_root)
    assert la == lb
