"""What a careless or hostile caller can hand an entry point, refused before any work: sessions
that have not settled, names that would leave the root, a root that is a file, a bad fleet file;
a full disk said in one line; and one rule for modes whatever the umask."""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest

from spywatch import names, sessions
from spywatch.cli import main
from spywatch.night import PipelineConfig, run_night
from spywatch.store import ParquetStore

# A Friday in New York: the session settles at 16:30 local time.
FRIDAY = "2024-06-28"
BEFORE_SETTLE = pd.Timestamp(f"{FRIDAY} 16:29", tz=sessions.NEW_YORK)
AFTER_SETTLE = pd.Timestamp(f"{FRIDAY} 16:31", tz=sessions.NEW_YORK)


# ----------------------------------------------------------------------------- the settled-session rule


def test_a_session_is_settled_after_its_close_plus_the_delay_and_never_before():
    assert sessions.settled_session(FRIDAY, AFTER_SETTLE) == pd.Timestamp(FRIDAY)
    assert sessions.settled_session(None, BEFORE_SETTLE) == pd.Timestamp("2024-06-27")
    with pytest.raises(sessions.UnsettledSession, match="today's session, which settles at 16:30"):
        sessions.settled_session(FRIDAY, BEFORE_SETTLE)
    with pytest.raises(sessions.UnsettledSession, match="is in the future"):
        sessions.settled_session("2024-07-01", AFTER_SETTLE)
    # Saturday and Sunday resolve to the settled Friday
    assert sessions.settled_session("2024-06-30", pd.Timestamp("2024-06-30 09:00", tz=sessions.NEW_YORK)) \
        == pd.Timestamp(FRIDAY)
    # any time zone for "now": 22:00 UTC is 18:00 in New York
    assert sessions.settled_session(FRIDAY, pd.Timestamp(f"{FRIDAY} 22:00", tz="UTC")) == pd.Timestamp(FRIDAY)


def _tomorrow() -> str:
    return (pd.Timestamp.now(tz=sessions.NEW_YORK).normalize() + pd.Timedelta(days=1)).date().isoformat()


@pytest.mark.parametrize("source", ["synthetic", "synthetic:3", "csv:data/spy_daily.csv"])
def test_a_later_as_of_is_a_usage_error_for_every_source_and_nothing_is_written(source, tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["run", "--no-prefect", "--source", source, "--as-of", _tomorrow(), "--root", str(root)]) == 2
    assert "is in the future" in capsys.readouterr().err
    assert not root.exists()
    with pytest.raises(sessions.UnsettledSession):  # the flows and the backfill go through run_night
        run_night(PipelineConfig(source=source, root=root, as_of="2031-01-02"), force=True)
    assert not root.exists()


def test_a_backfill_that_ends_after_the_last_settled_session_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "bf.json"
    argv = ["backfill", "--source", "synthetic", "--start", "2024-01-02", "--end", _tomorrow(), "--out", str(out),
            "--root", str(tmp_path / "root")]
    assert main(argv) == 2
    assert "is in the future" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "root").exists()


def test_the_nightly_flows_as_of_parameter_is_held_to_the_rule_before_anything_is_written(tmp_path):
    import datetime as dt

    from flows.nightly import nightly

    root = tmp_path / "root"
    with pytest.raises(sessions.UnsettledSession, match="is in the future"):
        nightly.fn(root=str(root), as_of=dt.date.fromisoformat(_tomorrow()), source="synthetic", retrain_mode="never")
    with pytest.raises(names.BadName):
        nightly.fn(root=str(root), as_of=dt.date.fromisoformat(FRIDAY), source="synthetic", ticker="../x")
    assert not root.exists()


def test_the_flows_name_a_refused_run_after_the_date_asked_for():
    from tasks.night import session_label

    assert session_label("2031-01-02") == "2031-01-02"
    assert session_label(FRIDAY) == FRIDAY


# ----------------------------------------------------------------------------- names that become paths


@pytest.mark.parametrize("bad", ["../../1", "..", "a/b", "/etc", "SPY\x00", "", "1ABC", "X" * 11, "S P Y", "Ö"])
def test_a_ticker_that_is_not_a_symbol_is_refused_everywhere(bad, tmp_path, capsys):
    with pytest.raises(names.BadName):
        names.ticker(bad)
    with pytest.raises(names.BadName):
        PipelineConfig(root=tmp_path, ticker=bad)
    with pytest.raises(names.BadName):
        ParquetStore(tmp_path).path(bad)
    if "\x00" not in bad:  # argv cannot carry a NUL
        with pytest.raises(SystemExit) as exit_:
            main(["run", "--no-prefect", "--ticker", bad, "--root", str(tmp_path / "r"), "--as-of", FRIDAY])
        assert exit_.value.code == 2 and "is not a symbol" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_good_tickers_pass_and_are_upper_cased():
    assert [names.ticker(t) for t in ("SPY", "spy", "BRK.B", "BF-B", "QQQ")] == ["SPY", "SPY", "BRK.B", "BF-B", "QQQ"]


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "x" * 65])
def test_a_run_id_that_would_leave_its_folder_is_refused(bad, tmp_path):
    with pytest.raises(names.BadName):
        PipelineConfig(root=tmp_path, run_id=bad)


def test_a_fleet_ticker_is_held_to_the_same_rule(tmp_path):
    from spywatch.fleet import FleetError, fleet_of
    from spywatch.layout import RootLayout

    with pytest.raises(FleetError, match="upper-case symbol"):
        fleet_of(["SPY", "../x"], "synthetic")
    with pytest.raises(names.BadName):
        RootLayout(tmp_path).ticker("../x")


# ----------------------------------------------------------------------------- usage errors before any work


def test_a_root_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["run", "--no-prefect"], ["models", "list"], ["fleet", "status"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--root", str(afile)])
        assert exit_.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "x"


def test_a_bad_fleet_file_is_refused_before_prefect_starts(tmp_path, capsys):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("tickers: [SPY, '../x']\n")
    root = tmp_path / "root"
    t0 = time.perf_counter()
    assert main(["run", "--fleet", str(fleet), "--root", str(root), "--as-of", FRIDAY]) == 2
    assert time.perf_counter() - t0 < 5  # no Prefect server was started
    assert "upper-case symbol" in capsys.readouterr().err
    assert not root.exists()


def test_a_full_disk_while_taking_the_lock_is_one_line_and_releases_it(tmp_path, monkeypatch, capsys):
    from spywatch import lock

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "root" / "state" / "lock.json"))

    monkeypatch.setattr(lock, "_write_holder", full)
    assert main(["run", "--no-prefect", "--source", "synthetic", "--as-of", FRIDAY, "--root", str(tmp_path / "root"),
                 "--lock-timeout", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spywatch run: error: No space left on device:") and "Traceback" not in err
    monkeypatch.undo()
    with lock.root_lock(tmp_path / "root", "test", timeout_s=0):  # released: it can be taken again at once
        pass


# ----------------------------------------------------------------------------- modes


def _modes(root: Path) -> tuple[set[int], set[int]]:
    dirs, files = set(), set()
    for base, ds, fs in os.walk(root):
        if Path(base).name == "prefect":
            continue
        dirs |= {stat.S_IMODE(os.stat(os.path.join(base, d)).st_mode) for d in ds}
        files |= {stat.S_IMODE(os.lstat(os.path.join(base, f)).st_mode) for f in fs
                  if not os.path.islink(os.path.join(base, f))}
    return dirs, files


@pytest.mark.slow
def test_folders_are_0755_and_files_0644_whatever_the_umask(tmp_path):
    root = tmp_path / "root"
    old = os.umask(0o077)
    try:
        night = run_night(PipelineConfig(source="synthetic:5", root=root, as_of="2024-05-31", max_epochs=1,
                                         model={"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16,
                                                "head_hidden": 16}), force=True)
    finally:
        os.umask(old)
    # whatever the night's verdict (a 1-epoch challenger may be refused), it wrote every kind of output
    assert night.status in ("published", "failed"), night.summary()
    written = ["published/latest.json", "bars/SPY.parquet", "models/history.json", "state/last_run.json"]
    assert all((root / w).exists() for w in written[:3]), [w for w in written if not (root / w).exists()]
    assert list((root / "models" / "versions").iterdir()) and list((root / "published" / "sessions").iterdir())
    dirs, files = _modes(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert dirs == {0o755} and files == {0o644}, (sorted(map(oct, dirs)), sorted(map(oct, files)))
    for sub in ("published", "published/.runs", "published/sessions", "bars", "models"):
        assert stat.S_IMODE((root / sub).stat().st_mode) == 0o755, sub
