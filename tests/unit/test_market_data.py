"""Market-data sources: the CSV parser's errors, the yfinance adapter on yfinance-shaped frames,
and the synthetic market's stylised facts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spywatch.market_data import (DataFormatError, MarketDataError, SyntheticSource, YFinanceSource,
                                  read_bars_csv, synthetic_bars)
from spywatch.sources import source_from_spec

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
ROWS = ["2024-01-02,472.16,473.67,470.49,472.65,466.0,123623700",
        "2024-01-03,470.43,471.19,468.17,468.79,462.2,103585900",
        "2024-01-04,468.3,470.96,467.05,467.28,460.7,84232200"]


def write(tmp_path, text: str):
    path = tmp_path / "bars.csv"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- CSV


def test_csv_reads_real_file(spy_bars):
    assert len(spy_bars) == 8038
    assert list(spy_bars.columns) == ["open", "high", "low", "close", "adj_close", "volume"]
    assert spy_bars.index.is_monotonic_increasing and spy_bars.index.is_unique
    assert spy_bars.index[0] == pd.Timestamp("1993-01-29")


def test_csv_missing_column_names_file_and_column(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Adj Close,Volume\n2024-01-02,1,2,0.5,1,10\n")
    with pytest.raises(DataFormatError, match=r"bars\.csv.*missing column.*'Close'"):
        read_bars_csv(path)


def test_csv_unparsable_number_names_column_row_and_date(tmp_path):
    rows = ROWS.copy()
    rows[1] = rows[1].replace("468.79", "46x.79")
    with pytest.raises(DataFormatError, match=r"column Close: non-numeric value at row 3 \(Date 2024-01-03\) value '46x.79'"):
        read_bars_csv(write(tmp_path, HEADER + "\n".join(rows)))


def test_csv_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"bars\.csv: file is empty"):
        read_bars_csv(write(tmp_path, ""))
    with pytest.raises(DataFormatError, match="header only"):
        read_bars_csv(write(tmp_path, HEADER))


def test_csv_unsorted_dates_named(tmp_path):
    rows = [ROWS[0], ROWS[2], ROWS[1]]
    with pytest.raises(DataFormatError, match=r"column Date: dates not strictly increasing .* row 4 \(2024-01-03 after 2024-01-04\)"):
        read_bars_csv(write(tmp_path, HEADER + "\n".join(rows)))


def test_csv_bad_date(tmp_path):
    rows = ROWS.copy()
    rows[2] = rows[2].replace("2024-01-04", "2024-13-45")
    with pytest.raises(DataFormatError, match=r"column Date: unparsable date at row 4"):
        read_bars_csv(write(tmp_path, HEADER + "\n".join(rows)))


# ----------------------------------------------------------------------------- yfinance

# What yfinance 1.7 returns for yf.download("SPY", auto_adjust=False, ...): (Price, Ticker)
# MultiIndex columns even for one ticker, a tz-aware index on some paths, the occasional NaN
# row and a duplicated last row.
YF_DATES = ["2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27", "2024-12-30", "2024-12-31"]


def yf_frame(dates=YF_DATES, multi=True, tz: str | None = None) -> pd.DataFrame:
    n = len(dates)
    close = np.linspace(594.0, 586.0, n)
    data = {"Adj Close": close * 0.99, "Close": close, "High": close + 2, "Low": close - 2,
            "Open": close + 0.5, "Volume": np.arange(n) * 1000 + 50_000_000}
    idx = pd.DatetimeIndex(pd.to_datetime(dates), name="Date")
    if tz:
        idx = idx.tz_localize("America/New_York").tz_convert(tz)
    frame = pd.DataFrame(data, index=idx)
    if multi:
        frame.columns = pd.MultiIndex.from_product([frame.columns, ["SPY"]], names=["Price", "Ticker"])
    return frame


def source(frame_or_exc, now="2025-01-02 09:00"):
    calls = []

    def download(ticker, **kwargs):
        calls.append(kwargs)
        if isinstance(frame_or_exc, Exception):
            raise frame_or_exc
        return frame_or_exc

    src = YFinanceSource(download=download, now=lambda: pd.Timestamp(now, tz="America/New_York"))
    return src, calls


def test_yfinance_multiindex_flattened_and_raw_prices_requested():
    src, calls = source(yf_frame())
    bars = src.fetch("SPY", pd.Timestamp("2024-12-23").date(), pd.Timestamp("2024-12-31").date())
    assert list(bars.columns) == ["open", "high", "low", "close", "adj_close", "volume"]
    assert len(bars) == 6 and bars["close"].iloc[-1] == pytest.approx(586.0)
    assert calls[0]["auto_adjust"] is False and calls[0]["timeout"] > 0 and calls[0]["progress"] is False


def test_yfinance_tz_aware_index_becomes_naive_new_york_dates():
    src, _ = source(yf_frame(tz="UTC", multi=False))
    bars = src.fetch("SPY", None, pd.Timestamp("2024-12-31").date())
    assert bars.index.tz is None
    assert [d.date().isoformat() for d in bars.index] == YF_DATES


def test_yfinance_nan_row_dropped_and_duplicate_last_row_keeps_last():
    frame = yf_frame(multi=False)
    frame.iloc[2, :5] = np.nan  # a volume-only / NaN-OHLC row
    dup = frame.iloc[[-1]].copy()
    dup["Close"] = 587.5
    frame = pd.concat([frame, dup])
    src, _ = source(frame)
    bars = src.fetch("SPY", None, pd.Timestamp("2024-12-31").date())
    assert pd.Timestamp("2024-12-26") not in bars.index
    assert bars.index.is_unique and bars.loc["2024-12-31", "close"] == pytest.approx(587.5)


def test_yfinance_empty_frame_is_a_failure():
    src, _ = source(pd.DataFrame())
    with pytest.raises(MarketDataError, match="empty frame for SPY"):
        src.fetch("SPY", None, pd.Timestamp("2024-12-31").date())


def test_yfinance_raised_error_is_wrapped_with_context():
    src, _ = source(ConnectionError("Too Many Requests. Rate limited."))
    with pytest.raises(MarketDataError, match="yfinance download of SPY .* ConnectionError: Too Many Requests"):
        src.fetch("SPY", None, pd.Timestamp("2024-12-31").date())


def test_yfinance_short_frame_missing_last_session_is_a_failure():
    src, _ = source(yf_frame(dates=YF_DATES[:-1]))
    with pytest.raises(MarketDataError, match="short frame.*last bar 2024-12-30, expected 2024-12-31"):
        src.fetch("SPY", None, pd.Timestamp("2024-12-31").date())


def test_yfinance_drops_todays_unsettled_bar():
    # At 11:00 on 2024-12-31 the day's bar is partial: it must not be stored.
    src, _ = source(yf_frame(), now="2024-12-31 11:00")
    bars = src.fetch("SPY", None, pd.Timestamp("2024-12-31").date())
    assert bars.index[-1] == pd.Timestamp("2024-12-30")


def test_an_unreachable_yahoo_is_one_error_that_says_so(monkeypatch, caplog):
    """yfinance answers a DNS failure with an empty frame and five log lines per attempt; the fetch
    raises one MarketDataError with its last error and the network hint, and lets none of the lines out."""
    import logging

    import yfinance

    def offline(ticker, **kwargs):
        log = logging.getLogger("yfinance")
        log.warning("Cookie/crumb fetch failed (DNSError), continuing without crumb")
        log.error("\n1 Failed download:")
        log.error("['%s']: DNSError('Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com.')",
                  ticker)
        log.error("$%s: possibly delisted; no timezone found", ticker)  # its last retry's words: not the cause
        return pd.DataFrame()

    monkeypatch.setattr(yfinance, "download", offline)
    with caplog.at_level(logging.DEBUG), pytest.raises(MarketDataError) as err:
        YFinanceSource().fetch("SPY", None, pd.Timestamp("2024-12-31").date())
    message = str(err.value)
    assert message.startswith("yfinance returned no bars for SPY (['SPY']: DNSError('Failed to perform, curl: (6) "
                              "Could not resolve host: query2.finance.yahoo.com.'))")
    assert "Yahoo is unreachable from this machine" in message and "--source csv:PATH" in message
    assert not [r for r in caplog.records if r.name == "yfinance"]

    def rate_limited(ticker, **kwargs):
        raise RuntimeError("YFRateLimitError: Too Many Requests. Rate limited. Try after a while.")

    monkeypatch.setattr(yfinance, "download", rate_limited)
    with pytest.raises(MarketDataError) as err:
        YFinanceSource().fetch("SPY", None, pd.Timestamp("2024-12-31").date())
    assert "Rate limited" in str(err.value) and "unreachable" not in str(err.value)  # not the network: no hint


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_prefix_stable():
    a = synthetic_bars("2010-12-31", seed=3)
    b = synthetic_bars("2012-06-29", seed=3)
    pd.testing.assert_frame_equal(a, b.loc[: "2010-12-31"])
    assert not synthetic_bars("2010-12-31", seed=4)["close"].equals(a["close"])


def test_synthetic_gives_each_ticker_a_market_of_its_own():
    """A synthetic fleet is one distinct market per ticker, the same on every fetch; SPY's is the seed's own."""
    src = SyntheticSource(seed=7)
    end = pd.Timestamp("2012-12-31").date()
    spy, qqq, tlt = (src.fetch(t, None, end) for t in ("SPY", "QQQ", "TLT"))
    pd.testing.assert_frame_equal(spy, synthetic_bars(end, seed=7))
    pd.testing.assert_frame_equal(qqq, src.fetch("qqq", None, end))
    assert qqq.index.equals(spy.index) and tlt.index.equals(spy.index)  # one calendar
    returns = pd.DataFrame({t: np.log(b["close"]).diff() for t, b in (("SPY", spy), ("QQQ", qqq), ("TLT", tlt))})
    assert returns.corr().abs().where(~np.eye(3, dtype=bool)).max().max() < 0.1  # independent paths


def test_synthetic_stylised_facts():
    bars = synthetic_bars("2024-12-31")
    r = np.log(bars["close"]).diff().dropna()
    absr = r.abs()
    acf = [absr.autocorr(lag) for lag in (1, 5, 10)]
    assert min(acf) > 0.1, f"volatility clustering: autocorrelation of |r| {acf}"
    assert r.kurt() + 3 > 4, f"fat tails: kurtosis {r.kurt() + 3}"
    assert bars["close"].iloc[-1] / bars["close"].iloc[:250].mean() > 10, "price level must move 10x+"
    ohlc = bars[["open", "high", "low", "close"]]
    assert (bars["high"] >= ohlc.max(axis=1) - 1e-9).all() and (bars["low"] <= ohlc.min(axis=1) + 1e-9).all()
    assert (bars["volume"] > 0).all()
    logv = np.log(bars["volume"])
    detrended = (logv - logv.rolling(60).mean()).iloc[1:]
    ok = detrended.notna()
    assert np.corrcoef(absr[ok], detrended[ok])[0, 1] > 0.2  # volume rises with |return|


def test_synthetic_source_says_it_is_synthetic():
    src = source_from_spec("synthetic")
    assert isinstance(src, SyntheticSource) and src.synthetic
    assert not source_from_spec("yfinance").synthetic
    with pytest.raises(ValueError, match="unknown source 'bloomberg'"):
        source_from_spec("bloomberg")
