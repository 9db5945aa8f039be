"""A root on object storage, against a real S3 endpoint (moto's server, ``s3_server``): a night
pulls a working copy, runs as on a local root and pushes it back, pointers last; a second night
finds the champion there; a failed night publishes its failure and keeps the last predictions; a
kill in the middle of a push leaves readers on the last complete session and the next night
repairs it; two writers contend for the root's lease and the CLI answers exit 3 naming the holder."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from spywatch.market_data import synthetic_bars
from tests.bars import write_csv
from spywatch.night import PipelineConfig, run_night
from spywatch.objectroot import ObjectRoot, Snapshot, companion, is_object_root, join, working_root
from spywatch.publish import KILL_POINTS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16, "head_hidden": 16}
FIRST, SECOND = "2024-05-31", "2024-06-03"


def night(url: str, session: str, source: str, **kw):
    """One plain night on the object root ``url``, as ``spywatch run --no-prefect`` does it."""
    with working_root(url, "test", sessions=(session,), timeout_s=5) as work:
        cfg = PipelineConfig(source=source, root=work.local, as_of=session, model=TINY, max_epochs=6, **kw)
        return run_night(cfg), work.local


def objects(remote: ObjectRoot) -> dict[str, int]:
    return {rel: int(info.get("size") or 0) for rel, info in remote.listing().items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("bars") / "bars.csv", synthetic_bars("2024-06-28", seed=11))


@pytest.fixture(scope="module")
def first_night(s3_server, data):
    """A fresh bucket's first night: no champion, so it trains, promotes and publishes."""
    url = f"s3://{s3_server.bucket()}/spy"
    result, local = night(url, FIRST, f"csv:{data}")
    return url, result, local


def test_names():
    assert is_object_root("s3://b/p") and not is_object_root("/tmp/x") and not is_object_root(Path("s3:/b"))
    assert join("s3://b/p/", "tickers", "QQQ") == "s3://b/p/tickers/QQQ"
    assert companion("/tmp/root") == Path("/tmp/root")
    assert companion("s3://b/p").parts[-3:] == ("spywatch", "b", "p")


def test_a_night_on_object_storage_publishes_there_and_leaves_no_working_copy(first_night):
    url, result, local = first_night
    assert result.status == "published", result.summary()
    assert not local.exists()  # the working copy is gone once pushed
    remote = ObjectRoot(url)
    keys = objects(remote)
    session = f"published/sessions/{FIRST}/"
    assert {session + f for f in ("audit.json", "report.html", "predictions.parquet", "drift.html")} <= set(keys)
    assert {"published/latest.json", "published/predictions.parquet", "bars/SPY.parquet", "models/champion.json",
            "state/last_run.json"} <= set(keys)
    champion = remote.read_json("models/champion.json")["version"]
    assert any(k.startswith(f"models/versions/{champion}/") for k in keys)
    assert not any(k.startswith(("published/.runs/", "prefect/")) or k.endswith((".lock", ".lock.json"))
                   for k in keys), sorted(keys)
    latest = remote.read_json("published/latest.json")
    assert latest["session"] == FIRST and not latest["stale"] and latest["model_version"] == champion
    # latest.json's paths resolve in the bucket: a poller follows them to a complete session
    assert remote.fs.exists(remote.key("published/" + latest["report"]))
    assert remote.read_json(f"published/sessions/{FIRST}/audit.json")["run_id"] == latest["run_id"]
    assert not remote.fs.exists(remote.key(".lease.json"))  # released


def test_the_next_night_pulls_the_champion_and_appends_its_predictions(first_night, data):
    url, first, _ = first_night
    result, _ = night(url, SECOND, f"csv:{data}")
    assert result.status == "published", result.summary()
    assert result.audit.model_version == first.audit.model_version  # the pulled champion, no retrain
    assert result.audit.data.new_sessions == 1  # the bar store came back from the bucket
    remote = ObjectRoot(url)
    table = pd.read_parquet(io.BytesIO(remote.fs.cat_file(remote.key("published/predictions.parquet"))))
    assert sorted(set(table["session"])) == [FIRST, SECOND]
    assert remote.read_json("published/latest.json")["session"] == SECOND
    assert remote.fs.exists(remote.key(f"published/sessions/{FIRST}/report.html"))  # the past stays


def test_a_failed_night_publishes_its_failure_and_keeps_the_last_predictions(first_night, data, tmp_path):
    url, _, _ = first_night
    remote = ObjectRoot(url)
    table_before = remote.fs.cat_file(remote.key("published/predictions.parquet"))
    lines = data.read_text().splitlines()
    date, open_, high, low, close, adj, volume = lines[-1].split(",")
    lines[-1] = ",".join([date, open_, str(float(low) - 1), str(float(high) + 1), close, adj, volume])  # High < Low
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result, _ = night(url, "2024-06-28", f"csv:{bad}")
    assert result.status == "validation_failed" and result.failure.kind.value == "raw_bars_invalid"
    latest = remote.read_json("published/latest.json")
    assert latest["stale"] and latest["failed_session"] == "2024-06-28" and latest["session"] in (FIRST, SECOND)
    assert "high_ge_low" in latest["reason"]
    assert remote.fs.cat_file(remote.key("published/predictions.parquet")) == table_before
    assert remote.read_json("published/sessions/2024-06-28/audit.json")["status"] == "validation_failed"


@pytest.mark.parametrize("point", ["push_content", *KILL_POINTS])
def test_a_kill_at_any_point_leaves_readers_on_the_last_complete_session(s3_server, first_night, data, point):
    """A night killed while it publishes into its working copy (the publisher's kill points: nothing
    was pushed) or in the middle of its push (content up, no pointer moved): latest.json and the
    table still name the last complete session; the next night takes the dead holder's lease over
    once it expires and publishes, consistent."""
    url, _, _ = first_night
    fresh = f"s3://{s3_server.bucket()}/spy"
    src, dst = ObjectRoot(url), ObjectRoot(fresh)
    for rel in src.listing():  # the same root, in a bucket of its own
        if not rel.startswith("published/sessions/2024-06-28/"):
            dst.fs.pipe_file(dst.key(rel), src.fs.cat_file(src.key(rel)))
    before = dst.read_json("published/latest.json")
    table = dst.fs.cat_file(dst.key("published/predictions.parquet"))
    session = "2024-06-04"
    code = (f"from spywatch.objectroot import working_root\n"
            f"from spywatch.night import PipelineConfig, run_night\n"
            f"with working_root({fresh!r}, 'test', sessions=({session!r},), timeout_s=5, lease_ttl_s=3) as w:\n"
            f"    run_night(PipelineConfig(source='csv:{data}', root=w.local, as_of={session!r}, model={TINY!r},"
            f" max_epochs=6, retrain='never'))\n")
    env = {**os.environ, "SPYWATCH_KILL_AT": point, "GX_ANALYTICS_ENABLED": "False"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    keys = objects(dst)
    assert dst.read_json("published/latest.json") == before  # readers: the last complete session
    assert dst.fs.cat_file(dst.key("published/predictions.parquet")) == table
    assert not any(k.startswith(f"published/sessions/{session}/") for k in keys)  # sessions go up after content
    lease = dst.read_json(".lease.json")  # the killed holder's lease, left to expire
    assert lease is not None and lease["purpose"] == "test"

    from spywatch.lease import root_lease  # the next night waits for the expiry, takes over, repairs

    with root_lease(fresh, "takeover", timeout_s=30) as info:
        assert info is not None and info.took_over["pid"] == lease["pid"]
    result, _ = night(fresh, session, f"csv:{data}", retrain="never")
    assert result.status == "published", result.summary()
    latest = dst.read_json("published/latest.json")
    assert latest["session"] == session and not latest["stale"]
    assert dst.read_json(f"published/sessions/{session}/audit.json")["run_id"] == latest["run_id"]


def test_push_order_content_then_sessions_then_pointers(tmp_path, s3_server):
    """The order readers rely on, observed on the store itself: every object's upload recorded."""
    remote = ObjectRoot(f"s3://{s3_server.bucket()}/r")
    local = tmp_path / "w"
    (local / "published" / "sessions").mkdir(parents=True)
    before = Snapshot.of(local)
    run = local / "published" / ".runs" / "2024-06-03.r1"
    run.mkdir(parents=True)
    for name in ("audit.json", "report.html"):
        (run / name).write_text(name)
    os.symlink("../.runs/2024-06-03.r1", local / "published" / "sessions" / "2024-06-03")
    for rel in ("bars/SPY.parquet", "models/champion.json", "published/latest.json", "published/predictions.parquet",
                "state/last_run.json", "state/drift_history.json", ".lock.json", "prefect/x.db"):
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_text(rel)
    report = remote.push(local, before)
    order = report.uploaded
    assert order.index("published/sessions/2024-06-03/report.html") < order.index("models/champion.json")
    assert order.index("bars/SPY.parquet") < order.index("published/sessions/2024-06-03/audit.json")
    assert order[-2:] == ["published/latest.json", "state/last_run.json"]
    assert ".lock.json" not in order and "prefect/x.db" not in order

    def lease_lost() -> None:
        raise RuntimeError("lease lost")

    pushed = Snapshot.of(local)
    (local / "published" / "latest.json").write_text("newer pointer")
    (local / "bars" / "SPY.parquet").write_text("newer bars")
    with pytest.raises(RuntimeError, match="lease lost"):  # a lease lost mid-night: content goes, no pointer moves
        remote.push(local, pushed, still_held=lease_lost)
    assert remote.fs.cat_file(remote.key("bars/SPY.parquet")) == b"newer bars"
    assert remote.fs.cat_file(remote.key("published/latest.json")) == b"published/latest.json"


def test_cli_run_on_a_leased_object_root_exits_3_naming_the_holder(s3_server, tmp_path):
    from spywatch.lease import root_lease

    url = f"s3://{s3_server.bucket()}/spy"
    with root_lease(url, "backfill"):
        proc = subprocess.run([str(Path(sys.executable).with_name("spywatch")), "run", "--root", url, "--no-prefect",
                               "--as-of", FIRST, "--lock-timeout", "0"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"PID {os.getpid()}" in proc.stderr and "backfill" in proc.stderr
