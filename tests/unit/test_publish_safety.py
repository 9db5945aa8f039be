"""Publishing never loses a session: one lock per root, publishing as one recoverable unit (a
SIGKILL at each step, by PID, in a real child process), failed runs beside published outputs,
stale marking, and outputs readable by every user whatever the umask."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from spywatch.layout import RootLayout
from spywatch.lock import RootLocked, read_holder, root_lock
from spywatch.publish import KILL_POINTS, Publisher


def rows(session: str, run_id: str, p: float) -> pd.DataFrame:
    return pd.DataFrame({"session": session, "horizon": ["h1", "h3", "h5"], "probability": [p] * 3,
                         "member_std": [0.01] * 3, "model_version": "v1", "data_hash": "d", "feature_hash": "f",
                         "run_id": run_id, "synthetic": True})


def publish(root: Path, session: str, run_id: str, p: float) -> Path:
    frame = rows(session, run_id, p)
    audit = json.dumps({"session": session, "run_id": run_id, "status": "published", "model_version": "v1"})
    return Publisher(root).publish_night(session, run_id, "v1", {
        "predictions.parquet": lambda path: frame.to_parquet(path, index=False), "audit.json": audit.encode(),
        "report.html": b"<html></html>"})


CHILD = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from test_publish_safety import publish
publish(Path(sys.argv[1]), sys.argv[2], sys.argv[3], 0.7)
print("finished", flush=True)
"""


def assert_consistent(root: Path) -> None:
    pub = Publisher(root)
    assert not pub.layout.journal.exists()
    table = pub.read_predictions()
    for session in pub.published_sessions():
        assert pub.consistency(session) == [], (session, pub.consistency(session))
        assert len(table[table["session"] == session]) == 3
    assert not table.duplicated(["session", "horizon"]).any()
    latest = pub.latest()
    assert latest.session == max(pub.published_sessions())
    assert not list(pub.layout.runs.glob(".*.tmp"))


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_publishing_step_is_invisible_or_repaired_by_the_next_run(tmp_path, point):
    publish(tmp_path, "2024-06-27", "r1", 0.3)
    before = (Publisher(tmp_path).session_dir("2024-06-27") / "predictions.parquet").read_bytes()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "2024-06-28", "r2", str(Path(__file__).parent)],
                          env={**os.environ, "SPYWATCH_KILL_AT": point}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])  # killed at the point
    assert "finished" not in proc.stdout
    pub = Publisher(tmp_path)
    assert pub.layout.journal.exists()  # the unit was interrupted

    # the next run of any session (here: the night after) recovers first
    publish(tmp_path, "2024-07-01", "r3", 0.5)
    assert_consistent(tmp_path)
    assert pub.published_sessions() == ["2024-06-27", "2024-06-28", "2024-07-01"] if point != "journal_written" \
        else pub.published_sessions() == ["2024-06-27", "2024-07-01"]  # killed before anything was visible
    assert (pub.session_dir("2024-06-27") / "predictions.parquet").read_bytes() == before
    if point != "journal_written":
        mine = pub.read_predictions().query("session == '2024-06-28'")
        assert set(mine["run_id"]) == {"r2"} and mine["probability"].eq(0.7).all()


def test_recover_alone_rolls_a_committed_publication_forward(tmp_path):
    publish(tmp_path, "2024-06-27", "r1", 0.3)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "2024-06-28", "r2", str(Path(__file__).parent)],
                          env={**os.environ, "SPYWATCH_KILL_AT": "link_swapped"}, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    pub = Publisher(tmp_path)
    assert pub.consistency("2024-06-28")  # the folder is out, the table and latest.json are not
    done = pub.recover()
    assert any("finished the publication of 2024-06-28" in line for line in done), done
    assert_consistent(tmp_path)
    assert pub.latest().session == "2024-06-28" and pub.latest().run_id == "r2"


def test_a_failed_attempt_goes_beside_the_published_outputs_which_stay_byte_for_byte(tmp_path):
    publish(tmp_path, "2024-06-28", "r1", 0.3)
    pub = Publisher(tmp_path)
    folder = pub.session_dir("2024-06-28")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    attempt = pub.publish_attempt("2024-06-28", "r2", {"audit.json": b'{"status": "failed"}'})
    assert attempt == folder / "attempts" / "r2"
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert json.loads((attempt / "audit.json").read_text())["status"] == "failed"
    # a later good re-run of the session keeps the attempts' record
    publish(tmp_path, "2024-06-28", "r3", 0.4)
    assert (pub.session_dir("2024-06-28") / "attempts" / "r2" / "audit.json").exists()
    assert_consistent(tmp_path)


def test_stale_says_why_and_since_when_and_a_past_failure_leaves_the_latest_current(tmp_path):
    publish(tmp_path, "2024-06-27", "r1", 0.3)
    pub = Publisher(tmp_path)
    first = pub.mark_stale("2024-06-28", "raw_bars validation failed", "r2")
    assert first.stale and first.stale_since == "2024-06-28" and first.last_good_session == "2024-06-27"
    assert first.stale_at and first.failed_run == "r2"
    again = pub.mark_stale("2024-07-01", "market data: timeout", "r3")  # still stale since the first failure
    assert again.stale_since == "2024-06-28" and again.stale_at == first.stale_at
    assert pub.latest().reason == "market data: timeout" and pub.latest().stale
    publish(tmp_path, "2024-07-02", "r4", 0.5)
    assert not pub.latest().stale
    past = pub.mark_stale("2024-06-20", "features validation failed", "r5")  # a re-run of the past failed
    assert past.stale is False and not pub.latest().stale and pub.latest().session == "2024-07-02"


def test_a_root_whose_first_night_failed_publishes_the_next_good_night_as_latest(tmp_path):
    pub = Publisher(tmp_path)
    failed = pub.mark_stale("2024-06-27", "raw_bars validation failed", "r1")  # nothing was published before
    assert failed.stale and failed.last_good_session is None and pub.latest().session is None
    publish(tmp_path, "2024-06-28", "r2", 0.4)
    latest = pub.latest()
    assert latest.session == "2024-06-28" and not latest.stale and latest.run_id == "r2"
    assert pub.consistency("2024-06-28") == []
    assert_consistent(tmp_path)


def test_published_and_model_folders_are_readable_by_everyone_whatever_the_umask(tmp_path):
    from spywatch.artifact import write_artifact

    old = os.umask(0o077)  # the test sets a strict umask; the code must not depend on (or touch) it
    try:
        link = publish(tmp_path, "2024-06-28", "r1", 0.3)
        Publisher(tmp_path).publish_attempt("2024-06-28", "r2", {"audit.json": b"{}"})
        model = write_artifact(tmp_path / "models" / "v1", {"weights.pt": b"w", "config.json": b"{}"}, meta={})
        assert os.umask(0o077) == 0o077  # unchanged by the code
    finally:
        os.umask(old)
    base = Publisher(tmp_path).layout.published
    for path in [link.resolve(), model, *link.resolve().rglob("*"), *model.rglob("*"), base / "latest.json",
                 base / "predictions.parquet"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


# ----------------------------------------------------------------------------- the root's lock


HOLDER = r"""
import sys, time
from pathlib import Path
from spywatch.lock import root_lock
with root_lock(Path(sys.argv[1]), "test holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_naming_the_first_and_takes_over_when_it_dies(tmp_path):
    proc = hold(tmp_path)
    try:
        t0 = time.monotonic()
        with pytest.raises(RootLocked) as refused:
            with root_lock(tmp_path, "second", timeout_s=1.0, poll_s=0.1):
                pass
        assert 1.0 <= time.monotonic() - t0 < 10
        message = str(refused.value)
        assert f"PID {proc.pid}" in message and "test holder" in message and "since" in message, message
        assert refused.value.holder["pid"] == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # dies holding the lock
        proc.wait()
    assert read_holder(tmp_path)["held"] is True  # its record still says it holds
    with root_lock(tmp_path, "third", timeout_s=5.0) as info:
        assert info.took_over is not None and info.took_over["pid"] == proc.pid
        assert read_holder(tmp_path)["pid"] == os.getpid()
    assert read_holder(tmp_path)["held"] is False


def test_a_waiting_run_gets_the_lock_when_the_holder_finishes(tmp_path):
    proc = hold(tmp_path)

    def release_soon() -> None:
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGTERM)

    import threading

    threading.Thread(target=release_soon, daemon=True).start()
    t0 = time.monotonic()
    with root_lock(tmp_path, "waiter", timeout_s=30, poll_s=0.1) as info:
        assert info is not None and 0.5 < time.monotonic() - t0 < 30
    proc.wait()


def test_the_lock_is_reentrant_in_one_process(tmp_path):
    with root_lock(tmp_path, "outer", timeout_s=0) as outer:
        assert outer is not None
        with root_lock(tmp_path, "inner", timeout_s=0) as inner:
            assert inner is None  # re-entered: the flow inside the CLI, a backfill's nights
        assert read_holder(tmp_path)["held"] is True
        other = subprocess.run([sys.executable, "-c", "import sys\nfrom pathlib import Path\nfrom spywatch.lock import root_lock\n"
                                "with root_lock(Path(sys.argv[1]), 'other', timeout_s=0): pass", str(tmp_path)],
                               capture_output=True, text=True, timeout=60)
        assert other.returncode != 0 and "RootLocked" in other.stderr and f"PID {os.getpid()}" in other.stderr
    assert json.loads(RootLayout(tmp_path).lock_holder.read_text())["held"] is False


def test_latest_json_is_the_pollers_contract_small_and_relative(tmp_path):
    frame = rows("2024-06-28", "r1", 0.25).assign(ticker_unused=0)
    frame.loc[frame["horizon"] == "h5", "probability"] = 0.5
    audit = json.dumps({"session": "2024-06-28", "run_id": "r1", "status": "published", "model_version": "v1",
                        "ticker": "QQQ"})
    Publisher(tmp_path).publish_night("2024-06-28", "r1", "v1", {
        "predictions.parquet": lambda path: frame.to_parquet(path, index=False), "audit.json": audit.encode(),
        "report.html": b"<html></html>"})
    pub = Publisher(tmp_path)
    latest = pub.latest()
    contract = {"format": 1, "ticker": "QQQ", "session": "2024-06-28",
                "probabilities": {"h1": 0.25, "h3": 0.25, "h5": 0.5},
                "member_std": {"h1": 0.01, "h3": 0.01, "h5": 0.01}, "synthetic": True, "stale": False,
                "model_version": "v1", "run_id": "r1", "path": "sessions/2024-06-28",
                "report": "sessions/2024-06-28/report.html"}
    assert json.loads(pub.latest_path.read_text()) == latest.to_json_dict() == contract
    assert (pub.layout.published / latest.report).is_file() and pub.latest_path.stat().st_size < 1_000
    stale = pub.mark_stale("2024-07-01", "raw_bars validation failed (1 check(s))", "r2")
    assert stale.stale and pub.latest().probabilities == latest.probabilities  # the last good ones, marked
    assert pub.latest().reason.startswith("raw_bars") and pub.latest().stale_since == "2024-07-01"
