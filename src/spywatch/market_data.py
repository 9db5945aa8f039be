"""Market data sources behind one interface: yfinance, a CSV file, and a synthetic market
(:mod:`spywatch.sources` builds one from a spec such as ``csv:PATH``).

Every source returns *bars*: a DataFrame indexed by naive New York session dates (``date``),
sorted, unique, with the columns of :data:`BAR_COLUMNS` (raw OHLC, Yahoo's adjusted close,
share volume). Raw OHLC is stored unadjusted; features use ratios and returns only, so a
dividend re-adjustment of ``adj_close`` never moves a feature.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from spywatch import sessions
from spywatch.text import cut, shown

log = logging.getLogger(__name__)

PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
BAR_COLUMNS = (*PRICE_COLUMNS, "volume")
CSV_COLUMNS = {"Date": "date", "Open": "open", "High": "high", "Low": "low", "Close": "close",
               "Adj Close": "adj_close", "Volume": "volume"}


class MarketDataError(RuntimeError):
    """A fetch failed or returned unusable data (empty, short, stale). Retrying may help."""


class DataFormatError(ValueError):
    """Input data is malformed (missing column, unparsable value, unsorted dates). Retrying won't help."""


class MarketDataSource(Protocol):
    """Anything that can produce daily bars for a ticker."""

    name: str
    synthetic: bool

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        """Bars for sessions in [start, end] (``start=None``: from the beginning)."""
        ...


def empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in PRICE_COLUMNS})
    frame["volume"] = pd.Series(dtype="int64")
    frame.index = pd.DatetimeIndex([], name="date")
    return frame


def _window(bars: pd.DataFrame, start: dt.date | None, end: dt.date) -> pd.DataFrame:
    lo = pd.Timestamp(start) if start is not None else bars.index.min()
    return bars.loc[(bars.index >= lo) & (bars.index <= pd.Timestamp(end))]


# ----------------------------------------------------------------------------- CSV


@dataclass
class CsvSource:
    """A CSV shaped like ``data/spy_daily.csv``: Date, Open, High, Low, Close, Adj Close, Volume."""

    path: Path
    name: str = "csv"
    synthetic: bool = False

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        return _window(read_bars_csv(self.path), start, end)


@dataclass(frozen=True)
class CsvDirSource:
    """One CSV per ticker in a folder, ``DIR/<TICKER>.csv`` (the fleet's offline source)."""

    folder: Path
    name: str = "csv-dir"
    synthetic: bool = False

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        path = self.folder / f"{ticker.upper()}.csv"
        if not path.exists():
            raise DataFormatError(f"{path}: file not found (csv-dir:{self.folder} has no {ticker.upper()}.csv)")
        return _window(read_bars_csv(path), start, end)


def read_bars_csv(path: Path | str, strict: bool = True) -> pd.DataFrame:
    """Parse a bars CSV strictly; every problem names the file, the column and the row/date.

    ``strict=False`` skips the date-order check, so that validation can name every duplicated
    or out-of-order date itself instead of stopping at the first one.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot be parsed as CSV: {cut(str(exc))}") from None
    if "Adj Close" not in raw.columns and {"Open", "High", "Low", "Close"} <= set(raw.columns):
        # An adjusted file (Date, Open, High, Low, Close, Volume: split- and dividend-adjusted prices,
        # like data/etf/): its Close is the adjusted close.
        raw["Adj Close"] = raw["Close"]
    missing = [c for c in CSV_COLUMNS if c not in raw.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; expected {list(CSV_COLUMNS)}")
    if raw.empty:
        raise DataFormatError(f"{path}: header only, no rows")
    raw = raw.rename(columns=CSV_COLUMNS)[list(CSV_COLUMNS.values())]

    dates = pd.to_datetime(raw["date"].str.strip(), errors="coerce", format="mixed")
    bad = dates.isna()
    if bad.any():
        raise DataFormatError(_bad_rows(path, "Date", raw.index[bad], raw["date"][bad], "unparsable date"))
    out = pd.DataFrame(index=pd.DatetimeIndex(dates.dt.tz_localize(None) if dates.dt.tz else dates, name="date"))
    for col in BAR_COLUMNS:
        text = raw[col].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        # An empty cell is a missing value (NaN, caught by validation); anything else must parse.
        bad = values.isna() & (text != "") & (text.str.lower() != "nan")
        if bad.any():
            header = next(k for k, v in CSV_COLUMNS.items() if v == col)
            raise DataFormatError(_bad_rows(path, header, raw.index[bad], raw["date"][bad],
                                            "non-numeric value", raw[col][bad]))
        out[col] = values.to_numpy(dtype="float64")

    if not strict:
        return out
    order = out.index.to_series()
    unsorted = order.diff().dt.days.fillna(1).to_numpy() <= 0
    if unsorted.any():
        rows = np.flatnonzero(unsorted)
        first = rows[0]
        raise DataFormatError(
            f"{path}: column Date: dates not strictly increasing at {len(rows)} row(s), first at "
            f"row {first + 2} ({order.iloc[first].date()} after {order.iloc[first - 1].date()})")
    return out


def _bad_rows(path: Path, column: str, rows: pd.Index, dates: pd.Series, what: str,
              values: pd.Series | None = None) -> str:
    listed = []
    for i, (row, date) in enumerate(zip(rows, dates, strict=True)):
        if i == 3:
            break
        value = f" value {shown(values.loc[row])}" if values is not None else ""
        listed.append(f"row {row + 2} (Date {cut(str(date))}){value}")
    more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
    return f"{path}: column {column}: {what} at {', '.join(listed)}{more}"


# ----------------------------------------------------------------------------- yfinance

YF_COLUMNS = {"Open": "open", "High": "high", "Low": "low", "Close": "close",
              "Adj Close": "adj_close", "Volume": "volume"}


@dataclass
class YFinanceSource:
    """yfinance with the production failure modes handled (see shared RELIABILITY notes).

    ``download`` defaults to ``yfinance.download``; tests inject a function returning frames
    shaped like its real output. ``now`` gives the wall clock (tz-aware) for dropping a partial
    bar of today's session.
    """

    timeout_s: float = 20.0
    download: Callable[..., pd.DataFrame] | None = None
    now: Callable[[], pd.Timestamp] | None = None
    name: str = "yfinance"
    synthetic: bool = False

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        download = self.download or _yfinance_download
        start_s = (pd.Timestamp(start) if start is not None else pd.Timestamp("1990-01-01")).strftime("%Y-%m-%d")
        end_excl = (pd.Timestamp(end) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        try:
            frame = download(ticker, start=start_s, end=end_excl, auto_adjust=False, actions=False,
                             progress=False, threads=False, multi_level_index=False,
                             timeout=self.timeout_s)
        except MarketDataError:
            raise
        except Exception as exc:  # network, rate limit (YFRateLimitError), DNS: all retryable
            what = f"{type(exc).__name__}: {exc}"
            raise MarketDataError(f"yfinance download of {ticker} {start_s}..{end} failed: {what}"
                                  + network_hint(what)) from exc
        bars = normalise_yfinance_frame(frame, ticker)
        now = self.now() if self.now is not None else None
        settled = sessions.last_closed_session(now)
        partial = bars.index > settled
        if partial.any():
            log.info("dropping %d unsettled bar(s) of %s: %s", int(partial.sum()), ticker,
                     [d.date().isoformat() for d in bars.index[partial]])
            bars = bars.loc[~partial]
        bars = _window(bars, start, end) if len(bars) else bars
        if bars.empty:
            raise MarketDataError(f"yfinance returned no settled bars for {ticker} in {start_s}..{end}")
        expected_last = min(settled, sessions.last_session_on_or_before(end))
        if bars.index[-1] < expected_last:
            raise MarketDataError(
                f"yfinance returned a short frame for {ticker}: last bar {bars.index[-1].date()}, "
                f"expected {expected_last.date()}")
        return bars


# What curl, requests and yfinance say when the machine cannot reach Yahoo at all.
UNREACHABLE = ("could not resolve host", "dnserror", "name or service not known", "temporary failure in name resolution",
               "failed to connect", "connection refused", "network is unreachable", "no route to host",
               "timed out", "timeout", "connecterror", "max retries exceeded")


def network_hint(message: str) -> str:
    """A sentence for the operator when ``message`` says the network, not the data, failed."""
    if not any(s in message.lower() for s in UNREACHABLE):
        return ""
    return (" -- Yahoo is unreachable from this machine (no DNS or no route): check its network or proxy; "
            "offline, run on a file (--source csv:PATH) or the synthetic market (--source synthetic)")


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _yfinance_download(ticker: str, **kwargs) -> pd.DataFrame:
    """``yf.download``, whose failures come back as an empty frame and a handful of log lines (DNS
    errors included, each retry again): those lines are held back, and an empty frame raises one
    :class:`MarketDataError` with yfinance's last error and, when the network failed, a hint."""
    import yfinance as yf

    logger = logging.getLogger("yfinance")
    held, propagate = _Collected(), logger.propagate
    logger.addHandler(held)
    logger.propagate = False
    try:
        frame = yf.download(ticker, **kwargs)
    finally:
        logger.removeHandler(held)
        logger.propagate = propagate
    errors = [re.sub(r"\s*See https?://\S+ first for more details\.?", "", " ".join(r.getMessage().split()))
              for r in held.records if r.levelno >= logging.ERROR]
    if frame is None or len(frame) == 0:
        # the network's error when there is one: a retry's "possibly delisted" only repeats its consequence
        said = next((e for e in errors if network_hint(e)), errors[-1] if errors else "no error logged")
        said = cut(said, 240)
        raise MarketDataError(f"yfinance returned no bars for {ticker} ({said})"
                              + network_hint(" ".join(r.getMessage() for r in held.records)))
    for record in held.records:  # the download worked: what yfinance said goes out as it would have
        logger.handle(record)
    return frame


def normalise_yfinance_frame(frame: pd.DataFrame | None, ticker: str) -> pd.DataFrame:
    """Flatten, rename, localise and clean a ``yf.download`` frame into canonical bars."""
    if frame is None or len(frame) == 0:
        raise MarketDataError(f"yfinance returned an empty frame for {ticker}")
    frame = frame.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        # yfinance >= 0.2.51 returns (Price, Ticker) columns even for one ticker
        level = next((i for i, lvl in enumerate(frame.columns.levels) if "Close" in set(lvl)), 0)
        frame.columns = frame.columns.get_level_values(level)
    missing = [c for c in YF_COLUMNS if c not in frame.columns]
    if missing:
        raise MarketDataError(f"yfinance frame for {ticker} lacks column(s) {missing} "
                              f"(got {list(frame.columns)}); was auto_adjust=False passed?")
    frame = frame.loc[:, list(YF_COLUMNS)].rename(columns=YF_COLUMNS)
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_convert(sessions.NEW_YORK).tz_localize(None)
    frame.index = index.normalize().rename("date")
    frame = frame.apply(pd.to_numeric, errors="coerce")
    nan_ohlc = frame[["open", "high", "low", "close"]].isna().any(axis=1)
    if nan_ohlc.any():
        log.info("dropping %d yfinance row(s) with NaN OHLC: %s", int(nan_ohlc.sum()),
                 [d.date().isoformat() for d in frame.index[nan_ohlc]])
        frame = frame.loc[~nan_ohlc]
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    if frame.empty:
        raise MarketDataError(f"yfinance returned only NaN rows for {ticker}")
    frame["volume"] = frame["volume"].fillna(0)
    return frame.astype({c: "float64" for c in BAR_COLUMNS})


# ----------------------------------------------------------------------------- synthetic

SYNTHETIC_ORIGIN = "1993-01-29"


@dataclass
class SyntheticSource:
    """A deterministic, seeded SPY-like market on the NYSE calendar.

    GARCH(1,1) returns with Student-t innovations (volatility clustering, fat tails), a drift
    that grows the price about 15x over three decades (the level shift that broke the original
    models), and log-volume that trends up and rises with |return|. The path is generated from
    a fixed origin, so any window of it is the same whatever range is asked for.

    ``vol_multiplier_from``: from this date on, volatility is multiplied by ``vol_multiplier``
    (a regime change, for drift tests).

    Every ticker but SPY gets a market of its own (the seed mixed with the ticker's name), so a
    synthetic fleet (``spywatch run --tickers QQQ,TLT --source synthetic``) runs one distinct,
    deterministic market per ticker, offline; SPY's is the seed's own.
    """

    seed: int = 7
    vol_multiplier_from: dt.date | None = None
    vol_multiplier: float = 2.0
    name: str = "synthetic"
    synthetic: bool = True

    def fetch(self, ticker: str, start: dt.date | None, end: dt.date) -> pd.DataFrame:
        seed = self.seed if ticker.upper() == "SPY" else (self.seed, zlib.crc32(ticker.upper().encode()))
        return _window(synthetic_bars(end, seed, self.vol_multiplier_from, self.vol_multiplier), start, end)


def synthetic_bars(end: dt.date | str, seed: int | tuple[int, ...] = 7, vol_multiplier_from: dt.date | None = None,
                   vol_multiplier: float = 2.0) -> pd.DataFrame:
    dates = sessions.nyse_sessions(SYNTHETIC_ORIGIN, end)
    n = len(dates)
    # One generator per stream, each drawn in date order, so a longer path extends a shorter one.
    g_shock, g_gap, g_high, g_low, g_vol = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
    nu = 5.0
    shocks = g_shock.standard_t(nu, size=n) / np.sqrt(nu / (nu - 2))  # unit variance, fat tails
    omega, alpha, beta = 1.5e-6, 0.09, 0.89  # long-run daily vol ~ 0.87%
    var = np.empty(n)
    ret = np.empty(n)
    var[0] = omega / (1 - alpha - beta)
    mu = 0.00040  # ~10%/yr drift: 1993 -> 2024 about 15x
    regime = np.ones(n)
    if vol_multiplier_from is not None:
        regime[dates >= pd.Timestamp(vol_multiplier_from)] = vol_multiplier
    for t in range(n):
        if t:
            var[t] = omega + alpha * ret[t - 1] ** 2 + beta * var[t - 1]
        ret[t] = np.sqrt(var[t]) * shocks[t]
    ret = ret * regime + mu - 0.5 * (np.sqrt(var) * regime) ** 2
    close = 44.0 * np.exp(np.cumsum(ret))
    sigma = np.sqrt(var) * regime
    gap = sigma * 0.35 * g_gap.standard_normal(n)
    prev_close = np.concatenate([[close[0] / np.exp(ret[0])], close[:-1]])
    open_ = prev_close * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(np.abs(g_high.standard_normal(n)) * sigma * 0.6)
    low = np.minimum(open_, close) * np.exp(-np.abs(g_low.standard_normal(n)) * sigma * 0.6)
    years = np.arange(n) / 252.0
    log_volume = (np.log(2e5) + 5.5 * (1 - np.exp(-years / 8.0)) + 25.0 * np.abs(ret - mu)
                  + 0.25 * _ar1(g_vol.standard_normal(n), 0.7))
    volume = np.round(np.exp(log_volume))
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "adj_close": close, "volume": volume}, index=dates)
    return bars.round({"open": 4, "high": 4, "low": 4, "close": 4, "adj_close": 4})


def _ar1(noise: np.ndarray, phi: float) -> np.ndarray:
    out = np.empty_like(noise)
    acc = 0.0
    for i, e in enumerate(noise):
        acc = phi * acc + e
        out[i] = acc
    return out
