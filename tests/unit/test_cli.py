"""CLI conventions: ``python -m spywatch`` is the ``spywatch`` command and ``--version`` says which
one is installed; dates are ISO only; the session used is echoed; exit codes 0 / 1 (a finding) /
2 (usage) / 3 (locked); outputs under the workspace; a help page for users."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from spywatch.cli import build_parser, main


def test_python_dash_m_spywatch_runs_the_command_and_reports_its_version():
    out = subprocess.run([sys.executable, "-m", "spywatch", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"spywatch {version('spywatch')}"
    usage = subprocess.run([sys.executable, "-m", "spywatch"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: spywatch" in usage.stderr  # a usage error is exit 2


# ----------------------------------------------------------------------------- conventions

DATE_OPTIONS = [
    ["run", "--as-of"],
    ["validate", "--data", "x.csv", "--as-of"],
    ["drift", "--data", "x.csv", "--reference-end", "2016-12-31", "--current-start"],
    ["backfill", "--source", "synthetic", "--end", "2024-12-31", "--out", "x.json", "--start"],
    ["evaluate", "--data", "x.csv", "--test-start", "2022-01-03", "--train-end"],
    ["features", "--data", "x.csv", "--test-start", "2022-01-03", "--train-end"],
]


@pytest.mark.parametrize("argv", DATE_OPTIONS, ids=[a[0] for a in DATE_OPTIONS])
@pytest.mark.parametrize("loose", ["31/12/2024", "03/04/2024", "20241231", "2024-12-32", "Dec 31 2024"])
def test_dates_are_iso_only_and_a_loose_one_is_a_usage_error(argv, loose, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, loose])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-1]}" in err and repr(loose) in err


def test_an_iso_date_is_taken_as_written():
    args = build_parser().parse_args(["run", "--as-of", "2024-12-31"])
    assert args.as_of == "2024-12-31"


def test_the_top_level_help_is_for_users_and_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "spywatch run " in text and "spywatch serve" in text and "ISO (YYYY-MM-DD)" in text
    for code in ("0  done", "1  a finding", "2  a usage or input error", "3  spywatch run: another run holds"):
        assert code in text
    assert "heavy imports" not in text  # not the module's developer notes


def test_run_echoes_the_session_it_resolves():
    from spywatch.cli.run import _session_line

    assert _session_line("2024-12-31") == "2024-12-31"
    assert _session_line("2024-12-28") == "2024-12-27 (the last NYSE session on or before --as-of 2024-12-28)"
    assert _session_line(None).endswith("(the last settled NYSE session)")


def test_the_prefect_command_is_the_script_beside_the_interpreter_else_python_dash_m(tmp_path, monkeypatch):
    from spywatch.orchestration.server import prefect_cli

    beside = prefect_cli()
    assert len(beside) == 1 and beside[0].endswith("/prefect")  # .venv/bin/prefect
    bare = tmp_path / "bin" / "python3"  # an interpreter whose Prefect came as wheels (pip --target)
    bare.parent.mkdir()
    monkeypatch.setattr(sys, "executable", str(bare))
    assert prefect_cli() == [str(bare), "-m", "prefect"]
    (tmp_path / "bin" / "prefect").write_text("")
    assert prefect_cli() == [str(tmp_path / "bin" / "prefect")]


def test_validate_echoes_its_as_of_and_suggests_as_of_for_an_old_csv(tmp_path, capsys):
    csv = tmp_path / "bars.csv"
    rows = ["Date,Open,High,Low,Close,Adj Close,Volume", "2024-12-26,10,11,9,10,10,100", "2024-12-27,10,11,9,10,10,100"]
    csv.write_text("\n".join(rows) + "\n")
    assert main(["validate", "--data", str(csv), "--as-of", "2024-12-31"]) == 1
    out = capsys.readouterr().out
    assert "last bar 2024-12-27 on or before as-of 2024-12-31" in out and "--as-of 2024-12-27" in out
    assert out.rstrip().endswith("as of 2024-12-31 (--as-of)")
    main(["validate", "--data", str(csv), "--as-of", "2024-12-27"])  # fails other checks (two rows); echoes its date
    assert "as of 2024-12-27 (--as-of)" in capsys.readouterr().out


def test_drift_writes_under_the_workspace_by_default():
    args = build_parser().parse_args(["drift", "--data", "x.csv", "--reference-end", "2016-12-31",
                                      "--current-start", "2020-02-01"])
    assert args.out.parts[:2] == ("workspace", "reports")


def test_a_one_pass_retrain_is_for_a_fleet_and_refused_for_one_ticker(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["run", "--retrain", "one-pass", "--root", str(root), "--no-prefect", "--as-of", "2024-12-31"]) == 2
    assert "--retrain one-pass fits a fleet's challengers together: give --tickers or --fleet" in capsys.readouterr().err
    assert not root.exists()  # refused before anything is written


def test_a_one_pass_backfill_is_for_a_fleet(tmp_path, capsys):
    out = tmp_path / "record.json"
    assert main(["backfill", "--source", "synthetic", "--start", "2004-01-01", "--end", "2004-02-29", "--one-pass",
                 "--out", str(out)]) == 2
    assert "--one-pass fits a fleet's challengers together: give --tickers or --fleet" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "record-root").exists()
