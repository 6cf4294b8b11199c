"""Values no market makes are refused, and counted, before anything stores or aggregates them."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from collectors.bounds import (
    MAX_PRICE,
    STEP,
    Bounds,
    OutOfBounds,
    interval_ms,
    price,
    size_or_zero,
    volume,
)
from collectors.exchanges.base import Handled
from collectors.exchanges.booksync import BookMessage, BookSync
from collectors.exchanges.orderbook import OrderBook
from collectors.types import DataType, MarketDataPoint
from marketdata.candles import LiveCandleAggregator
from tests.collectors.exchanges import okx_frames as okx
from tests.collectors.exchanges.test_binance import push as binance_push
from tests.collectors.exchanges.test_binance import session as binance_session

HUNDRED_YEARS_MS = 100 * 365 * 86_400_000
THIRTY_DIGITS = "123456789012345678901234567890"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# the window around the receive time ----------------------------------------------------


def test_an_exchange_time_must_lie_within_the_window_around_the_receive_time():
    bounds = Bounds(max_past_ms=60_000, max_future_ms=5_000)
    received = 1_800_000_000_000
    for ts in (received, received - 60_000, received + 5_000):
        assert bounds.exchange_time(ts, received) == ts
    for ts in (received - 60_001, received + 5_001, -1, 0, received + HUNDRED_YEARS_MS):
        with pytest.raises(OutOfBounds, match=r"outside -60s\.\.\+5s"):
            bounds.exchange_time(ts, received)


def test_a_candle_may_start_its_intervals_width_earlier():
    bounds = Bounds(max_past_ms=60_000, max_future_ms=5_000)
    received = 1_800_000_000_000
    month_ago = received - 30 * 86_400_000
    assert bounds.exchange_time(month_ago, received, span=interval_ms("1M")) == month_ago
    with pytest.raises(OutOfBounds):
        bounds.exchange_time(month_ago, received, span=interval_ms("1W"))


def test_interval_widths_read_okx_and_binance_names():
    assert interval_ms("1s") == 1_000
    assert interval_ms("1m") == 60_000
    assert interval_ms("4H") == interval_ms("4h") == 4 * 3_600_000
    assert interval_ms("3M") == 93 * 86_400_000
    with pytest.raises(ValueError, match="unknown interval"):
        interval_ms("1x")


def test_the_bounds_come_from_the_settings(settings):
    settings.COLLECTOR_MAX_CLOCK_SKEW_PAST = 120.0
    settings.COLLECTOR_MAX_CLOCK_SKEW_FUTURE = 2.5
    settings.COLLECTOR_MAX_BOOK_LEVELS = 300
    settings.COLLECTOR_MAX_RAW_BYTES = 4096
    assert Bounds.from_settings() == Bounds(120_000, 2_500, 300, 4096)
    assert Bounds.from_settings().max_future == timedelta(seconds=2.5)


# prices, sizes and volumes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1e-30", "below 0.00000001"),
        ("0.000000001", "below 0.00000001"),
        ("0.000000004", "below 0.00000001"),
        ("0", "not positive"),
        ("-1", "not positive"),
        ("NaN", "not finite"),
        ("Infinity", "not finite"),
        ("sNaN", "not finite"),
        ("1e309", "too large"),
        (THIRTY_DIGITS, "too large"),
        ("999999999999.999999995", "too large"),
    ],
)
def test_a_price_or_size_decimal_20_8_cannot_hold_is_refused(text, problem):
    with pytest.raises(OutOfBounds, match=problem):
        price(Decimal(text), "px")


def test_the_extremes_decimal_20_8_holds_are_accepted():
    assert price(STEP, "px") == STEP
    assert price(Decimal("999999999999.99999999"), "px") < MAX_PRICE
    assert size_or_zero(Decimal(0), "sz") == 0
    with pytest.raises(OutOfBounds):
        size_or_zero(Decimal("1e-9"), "sz")
    for text in ("sNaN", "NaN", "-0.5"):
        with pytest.raises(OutOfBounds):
            size_or_zero(Decimal(text), "sz")


def test_a_volume_may_be_zero_or_as_large_as_the_candle_volume_column_holds():
    assert volume(Decimal(0), "vol") == 0
    assert volume(Decimal("52000000000000"), "vol")  # a day of SHIB-USDT, in SHIB
    for text in ("1e22", "1e-9", "-1", "NaN", "sNaN"):
        with pytest.raises(OutOfBounds):
            volume(Decimal(text), "vol")


# book levels and raw data -------------------------------------------------------------------


def test_a_book_side_over_its_channels_depth_or_the_level_bound_is_refused():
    bounds = Bounds(max_book_levels=100)
    assert len(bounds.levels([["1", "1"]] * 5, "bids", 5)) == 5
    with pytest.raises(OutOfBounds, match="bids: 6 levels, more than 5"):
        bounds.levels([["1", "1"]] * 6, "bids", 5)
    with pytest.raises(OutOfBounds, match="asks: 101 levels, more than 100"):
        bounds.levels([["1", "1"]] * 101, "asks")


def test_a_kept_book_drops_its_deepest_levels_beyond_the_bound_with_a_counted_warning():
    emitted = []
    sync = BookSync("books", lambda action, message, book: emitted.append(book), max_levels=30)
    handled = Handled()
    bids = [[str(1000 - i), "1"] for i in range(20)]
    asks = [[str(2000 + i), "1"] for i in range(20)]
    sync.snapshot(BookMessage(bids, asks, ts=1, seq=1, prev_seq=0), handled)
    assert handled.warnings == []
    deeper = [[str(900 - i), "1"] for i in range(15)]
    sync.update(BookMessage(deeper, [], ts=2, seq=2, prev_seq=1), handled)
    assert handled.warnings == ["books book deeper than 30 levels a side: 5 deepest dropped"]
    book = sync.book
    assert isinstance(book, OrderBook) and len(book.bids) == 30 and len(book.asks) == 20
    assert book.top(30)[0][-1] == ["891", "1"]  # the best 30 kept
    assert handled.errors == []


def test_a_raw_item_over_the_bound_is_refused_and_a_small_frame_is_not_measured():
    bounds = Bounds(max_raw_bytes=1024)
    item = {"px": "1", "pad": "x" * 2000}
    assert bounds.raw(item, 100) is item  # a frame of 100 bytes cannot hold it: not measured
    with pytest.raises(OutOfBounds, match="more than 1024 for raw_data"):
        bounds.raw(item, len(orjson.dumps(item)))


# the OKX and Binance parsers refuse what is out of bounds, item by item --------------------


def okx_trade(trade_id: str, ts: int, **fields) -> dict:
    return okx.trade(tradeId=trade_id, ts=str(ts), **fields)


def test_okx_trades_stamped_far_ahead_or_at_the_epoch_are_refused_and_the_rest_kept():
    parser = okx.session(DataType.TRADE)
    now = now_ms()
    items = [
        okx_trade("1", now),
        okx_trade("2", now + HUNDRED_YEARS_MS),
        okx_trade("3", -1),
        okx_trade("4", 0),
        okx_trade("5", now),
    ]
    handled = parser.handle(okx.push("trades", items))
    assert [p.data["trade_id"] for p in handled.points] == ["1", "5"]
    assert len(handled.errors) == 3
    assert all(e.startswith("trades item skipped: ts ") for e in handled.errors)
    assert "outside -604800s..+30s" in handled.errors[0]


@pytest.mark.parametrize(
    "fields",
    [
        {"px": "1e-30"},
        {"px": "0.000000000000000000000000000001"},
        {"sz": "0.000000001"},
        {"px": THIRTY_DIGITS},
        {"px": "1e309"},
        {"px": "NaN"},
        {"sz": "Infinity"},
        {"px": "sNaN"},
        {"pad": "x" * 70_000},
    ],
)
def test_okx_trades_with_values_no_column_holds_are_refused(fields):
    parser = okx.session(DataType.TRADE)
    handled = parser.handle(okx.push("trades", [okx_trade("1", now_ms(), **fields)]))
    assert handled.points == []
    [error] = handled.errors
    assert error.startswith("trades item skipped: ")


def test_an_okx_books5_push_with_more_than_five_levels_a_side_is_refused():
    parser = okx.session(DataType.ORDERBOOK)
    levels = [[str(100 - i), "1", "0", "1"] for i in range(6)]
    item = {"asks": [["101", "1", "0", "1"]], "bids": levels, "ts": str(now_ms())}
    handled = parser.handle(okx.push("books5", [item]))
    assert handled.points == []
    assert handled.errors == ["books5 item skipped: bids: 6 levels, more than 5"]
    handled = parser.handle(okx.push("books5", [{**item, "bids": levels[:5]}]))
    assert len(handled.points) == 1 and handled.errors == []


def test_an_okx_ticker_with_a_thirty_digit_price_is_refused():
    parser = okx.session(DataType.TICKER)
    good = {"instId": "BTC-USDT", "last": "100", "bidPx": "99", "ts": str(now_ms())}
    handled = parser.handle(okx.push("tickers", [{**good, "last": THIRTY_DIGITS}, good]))
    assert [p.data["last"] for p in handled.points] == [Decimal(100)]
    [error] = handled.errors
    assert error.startswith("tickers item skipped: last 123456789012345678901234567890")


def test_an_okx_candle_may_start_up_to_its_width_ago():
    parser = okx.session(DataType.CANDLE, endpoint="business", channels={"candle": "candle1M"})
    start = now_ms() - 20 * 86_400_000
    row = [str(start), "1", "2", "0.5", "1.5", "10", "15", "15", "0"]
    handled = parser.handle(okx.push("candle1M", [row]))
    assert len(handled.points) == 1 and handled.errors == []
    parser = okx.session(DataType.CANDLE, endpoint="business", channels={"candle": "candle1m"})
    handled = parser.handle(okx.push("candle1m", [row]))
    assert handled.points == [] and "ts " in handled.errors[0]


def binance_trade(trade_id: int, ts: int, **fields) -> dict:
    data = {"e": "aggTrade", "E": ts, "s": "BTCUSDT", "a": trade_id, "p": "1", "q": "2"}
    return {**data, "f": 1, "l": 1, "T": ts, "m": False, "M": True, **fields}


def test_binance_trades_out_of_bounds_are_refused():
    parser = binance_session()
    now = now_ms()
    assert len(parser.handle(binance_push("btcusdt@aggTrade", binance_trade(1, now))).points) == 1
    for bad in (
        binance_trade(2, now + HUNDRED_YEARS_MS),
        binance_trade(3, 0),
        binance_trade(4, now, p="1e-30"),
        binance_trade(5, now, q=THIRTY_DIGITS),
        binance_trade(6, now, pad="x" * 70_000),
    ):
        handled = parser.handle(binance_push("btcusdt@aggTrade", bad))
        assert handled.points == []
        [error] = handled.errors
        assert error.startswith("aggTrade item skipped: ")


def test_a_binance_partial_depth_push_deeper_than_its_stream_is_refused():
    parser = binance_session(data_types=(DataType.ORDERBOOK,), channels={"orderbook": "depth5"})
    levels = [[str(100 - i), "1"] for i in range(6)]
    data = {"lastUpdateId": 1, "bids": levels, "asks": [["101", "1"]]}
    handled = parser.handle(binance_push("btcusdt@depth5", data))
    assert handled.points == [] and handled.errors == [
        "depth5 item skipped: bids: 6 levels, more than 5"
    ]


# the live aggregator's clock -----------------------------------------------------------------

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def trade_point(at: datetime, trade_id: str, px: str = "100") -> MarketDataPoint:
    data = {"trade_id": trade_id, "price": Decimal(px), "size": Decimal(1), "side": "buy"}
    return MarketDataPoint("okx", "BTC-USDT", at, DataType.TRADE, data)


def aggregator_at(now: datetime) -> tuple[LiveCandleAggregator, list]:
    emitted: list = []
    aggregator = LiveCandleAggregator(
        "okx",
        "BTC-USDT",
        ["1s", "1m"],
        emitted.extend,
        grace=timedelta(seconds=1),
        since=now - timedelta(hours=1),
        max_future=timedelta(seconds=30),
        clock=lambda: now,
    )
    return aggregator, emitted


def test_a_trade_stamped_far_ahead_is_refused_by_the_aggregator_and_moves_nothing():
    aggregator, emitted = aggregator_at(NOW)
    aggregator.add_trade(trade_point(NOW - timedelta(seconds=5), "1"))
    aggregator.add_trade(trade_point(NOW + timedelta(days=36500), "2"))
    aggregator.add_trade(trade_point(NOW - timedelta(seconds=3), "3"))
    assert aggregator.counts["future"] == 1 and aggregator.counts["late"] == 0
    assert all(c.timestamp <= NOW for c in emitted + aggregator.open_candles())
    assert (
        sum(c.trade_count for c in emitted + aggregator.open_candles() if c.timeframe == "1s") == 2
    )


def test_a_trade_a_little_ahead_moves_the_clock_no_further_than_its_receive_time():
    aggregator, emitted = aggregator_at(NOW)
    aggregator.add_trade(trade_point(NOW + timedelta(seconds=20), "1"))  # within max_future
    # the clock is at NOW, not NOW + 20 s: a trade of half a second ago is not late
    aggregator.add_trade(trade_point(NOW - timedelta(milliseconds=500), "2"))
    assert aggregator.counts["late"] == 0 and emitted == []
    aggregator.tick(NOW + timedelta(seconds=30))
    assert [(c.timestamp, c.trade_count) for c in emitted if c.timeframe == "1s"] == [
        (NOW, 1),
        (NOW + timedelta(seconds=21), 1),
    ]


def test_a_trade_with_a_price_no_column_holds_is_counted_not_raised():
    aggregator, _ = aggregator_at(NOW)
    aggregator.add_trade(trade_point(NOW - timedelta(seconds=5), "1", px="1e309"))
    aggregator.add_trade(trade_point(NOW - timedelta(seconds=5), "2", px="NaN"))
    aggregator.add_trade(trade_point(NOW - timedelta(seconds=5), "3", px="-1"))
    assert aggregator.counts["out_of_bounds"] == 3 and aggregator.counts["trades"] == 0
    assert aggregator.open_candles() == []
