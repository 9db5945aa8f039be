"""The fleet file, the csv-dir source, adjusted CSVs and the fleet page (no Prefect here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from spywatch import fleet
from spywatch.fleet import FleetError, FleetRow, load_fleet, parse_fleet
from spywatch.market_data import CsvDirSource, read_bars_csv
from spywatch.sources import source_from_spec

REPO = Path(__file__).resolve().parents[2]
ETF = REPO / "data" / "etf"


def test_the_fleet_file_in_the_repo_loads():
    f = load_fleet(REPO / "fleet.yaml")
    assert f.names[0] == "SPY" and len(f.names) == 13 and all(t.policy == "default" for t in f.tickers)


def test_per_ticker_overrides_and_defaults():
    f = parse_fleet({"source": "synthetic", "tickers": ["QQQ", {"ticker": "TLT", "source": "yfinance",
                                                                "policy": "never"}]})
    assert [(t.ticker, t.source, t.policy) for t in f.tickers] == [("QQQ", "synthetic", "default"),
                                                                   ("TLT", "yfinance", "never")]


@pytest.mark.parametrize(("doc", "message"), [
    ({"tickers": []}, "'tickers' must be a non-empty list"),
    ({"tickers": ["QQQ"], "sources": "x"}, "unknown key(s) ['sources']"),
    ({"tickers": ["qqq"]}, "ticker 'qqq': key 'ticker' must be an upper-case symbol"),
    ({"tickers": [{"ticker": "TLT", "sorce": "yfinance"}]}, "ticker 'TLT': unknown key(s) ['sorce']"),
    ({"tickers": [{"ticker": "TLT", "policy": "sometimes"}]}, "ticker 'TLT': key 'policy': 'sometimes' is not one of"),
    ({"tickers": [{"ticker": "GLD", "source": "ftp:x"}]}, "ticker 'GLD': key 'source': unknown source 'ftp:x'"),
    ({"tickers": ["QQQ", "QQQ"]}, "ticker 'QQQ': listed twice"),
    (["QQQ"], "expected a mapping with 'tickers'"),
])
def test_a_bad_fleet_file_names_the_ticker_and_the_key(doc, message):
    with pytest.raises(FleetError) as err:
        parse_fleet(doc, "fleet.yaml")
    assert message in str(err.value) and str(err.value).startswith("fleet.yaml")


def test_an_adjusted_csv_without_adj_close_reads_with_close_as_the_adjusted_close(tmp_path):
    csv = tmp_path / "X.csv"
    csv.write_text("Date,Open,High,Low,Close,Volume\n2024-12-30,10,11,9,10.5,100\n2024-12-31,10.5,12,10,11,200\n")
    bars = read_bars_csv(csv)
    assert list(bars["adj_close"]) == list(bars["close"]) == [10.5, 11.0]


def test_csv_dir_reads_one_file_per_ticker_and_names_a_missing_one(tmp_path):
    (tmp_path / "QQQ.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-12-31,1,2,0.5,1.5,10\n")
    source = source_from_spec(f"csv-dir:{tmp_path}")
    assert isinstance(source, CsvDirSource) and source.name == "csv-dir"
    assert len(source.fetch("QQQ", None, dt.date(2024, 12, 31))) == 1
    with pytest.raises(Exception, match="has no TLT.csv"):
        source.fetch("TLT", None, dt.date(2024, 12, 31))
    with pytest.raises(ValueError, match="csv-dir:DIR"):
        source_from_spec("csv-dir:")


def test_every_etf_of_the_fleet_data_reads():
    for path in sorted(ETF.glob("*.csv")):
        bars = read_bars_csv(path)
        assert bars.index.is_monotonic_increasing and bars.index[-1].date().isoformat() == "2024-12-31", path


def test_the_fleet_page_escapes_and_links_relative_to_the_root():
    rows = [FleetRow("QQQ", "2024-12-31", "published", data="1999..2024", validation="passed", drift="quiet",
                     health="healthy", decision="keep champion", probabilities={"h1": 0.19},
                     report="tickers/QQQ/r.html"),
            FleetRow("TLT", "2024-12-31", "validation_failed", failure="raw_bars_invalid",
                     failure_reason="raw_bars validation failed (1 check(s)): high < low on 2024-12-31", stale=True,
                     validation="<failed>")]
    page = fleet.render_page(rows)
    assert "1 of 2 tickers published; failed: TLT" in page and "&lt;failed&gt;" in page
    assert '<a href="tickers/QQQ/r.html">audit</a>' in page and "h1 0.190" in page
    assert page.count('class="ok"') == 1 and page.count('class="bad"') == 1
    summary = fleet.summary_markdown(rows)
    assert summary.startswith("# Fleet: 1 of 2 tickers published, **1 failed**: TLT")
    # why a ticker failed, wherever it is listed
    why = "raw_bars validation failed (1 check(s)): high &lt; low on 2024-12-31"
    assert f'<div class="why">{why}</div>' in page
    assert summary.rstrip().endswith("- **TLT** `raw_bars_invalid`: raw_bars validation failed (1 check(s)): high < low "
                                     "on 2024-12-31")


def test_no_champion_says_why_the_gate_refused_with_its_numbers():
    import copy
    import json

    from spywatch.audit_schema import check_audit
    from spywatch.night.run import no_champion_reason

    example = json.loads((Path(__file__).parents[1] / "data" / "audit_example.json").read_text())
    assert no_champion_reason(check_audit({**example, "retrain": None})) == "no champion model to predict with"
    refused = copy.deepcopy(example)
    gate = refused["retrain"]["gate"]
    gate["reasons"][1] = "challenger mean AUC 0.4750 < floor 0.5200"  # as promotion.gate words a floor refusal
    gate.update(promote=False, rule="refused")
    reason = no_champion_reason(check_audit(refused))
    assert reason.startswith(f"no champion model to predict with: challenger {refused['retrain']['challenger']} "
                             "refused by the gate (refused): challenger mean AUC 0.4750 < floor 0.5200; ")
