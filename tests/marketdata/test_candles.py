"""Candles as plain values: boundaries, trade order, folding, VWAP, derivation, gaps, live."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collectors.types import DataType, MarketDataPoint
from marketdata.candles import (
    CandleValue,
    LiveCandleAggregator,
    Trade,
    bucket_end,
    ceil_boundary,
    derive_candles,
    fill_gaps,
    floor_boundary,
    fold_trades,
    timeframe_seconds,
    trade_from_point,
    trade_order_key,
    vwap_of,
)

D = Decimal
NOON = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)


def at(seconds: float, base: datetime = NOON) -> datetime:
    return base + timedelta(microseconds=round(seconds * 1_000_000))


def trade(seconds, price, size="1", trade_id=None, seq=0) -> Trade:
    return Trade(at(seconds), D(price), D(size), trade_id, seq)


def point(seconds, price, size="1", trade_id="1", symbol="BTC-USDT") -> MarketDataPoint:
    """A TRADE point `seconds` after NOON, or at `seconds` when it is a datetime."""
    timestamp = seconds if isinstance(seconds, datetime) else at(seconds)
    data = {"trade_id": trade_id, "price": D(price), "size": D(size), "side": "buy"}
    return MarketDataPoint("okx", symbol, timestamp, DataType.TRADE, data)


# boundaries ----------------------------------------------------------------------------


def test_a_trade_exactly_at_a_boundary_lands_in_the_candle_that_starts_there():
    assert bucket_end(NOON, "1m") == NOON + timedelta(minutes=1)
    assert bucket_end(NOON - timedelta(microseconds=1), "1m") == NOON


def test_days_end_at_midnight_utc_and_four_hours_align_to_midnight():
    late_evening = datetime(2024, 3, 9, 23, 59, 59, 999999, tzinfo=UTC)
    assert bucket_end(late_evening, "1d") == datetime(2024, 3, 10, tzinfo=UTC)
    assert bucket_end(datetime(2024, 3, 9, 1, tzinfo=UTC), "4h") == datetime(
        2024, 3, 9, 4, tzinfo=UTC
    )
    assert bucket_end(datetime(2024, 3, 9, 20, tzinfo=UTC), "4h") == datetime(
        2024, 3, 10, tzinfo=UTC
    )


def test_boundaries_are_the_same_whatever_the_time_zone_of_the_timestamp():
    from zoneinfo import ZoneInfo

    local = datetime(2024, 3, 9, 21, 30, tzinfo=ZoneInfo("Asia/Hong_Kong"))
    assert bucket_end(local, "1d") == datetime(2024, 3, 10, tzinfo=UTC)
    assert floor_boundary(local, "1h") == datetime(2024, 3, 9, 13, tzinfo=UTC)
    assert ceil_boundary(datetime(2024, 3, 9, 13, tzinfo=UTC), "1h") == datetime(
        2024, 3, 9, 13, tzinfo=UTC
    )


def test_unknown_timeframes_and_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        timeframe_seconds("2m")
    with pytest.raises(ValueError, match="naive"):
        bucket_end(datetime(2024, 1, 1), "1m")


# order of trades -----------------------------------------------------------------------


def test_trades_at_the_same_time_are_ordered_by_numeric_id_then_text_id_then_arrival():
    same = [
        trade(0, "1", trade_id=None, seq=1),
        trade(0, "2", trade_id="b", seq=2),
        trade(0, "3", trade_id="10", seq=3),
        trade(0, "4", trade_id="9", seq=4),
        trade(0, "5", trade_id="a", seq=5),
        trade(0, "6", trade_id=None, seq=0),
    ]
    ordered = sorted(same, key=trade_order_key)
    assert [t.price for t in ordered] == [D(4), D(3), D(5), D(2), D(6), D(1)]


def test_an_earlier_timestamp_comes_first_whatever_the_id():
    assert trade_order_key(trade(0, "1", trade_id="99")) < trade_order_key(
        trade(0.000001, "1", trade_id="1")
    )


# folding ------------------------------------------------------------------------------


def test_trades_fold_into_right_aligned_candles_with_exact_sums():
    trades = [
        trade(59.999999, "101", "0.5", "3"),  # last of the 12:01 candle
        trade(0, "100", "1", "1"),  # first of 12:01
        trade(30, "103", "0.25", "2"),
        trade(60, "99", "2", "4"),  # exactly at 12:01: the 12:02 candle
    ]
    candles = fold_trades(trades, "okx", "BTC-USDT", "1m")
    assert candles == [
        CandleValue(
            "okx", "BTC-USDT", "1m", at(60), D(100), D(103), D(100), D(101),
            D("1.75"), D("176.25"), D("100.71428571"), 3,
        ),
        CandleValue(
            "okx", "BTC-USDT", "1m", at(120), D(99), D(99), D(99), D(99),
            D(2), D(198), D(99), 1,
        ),
    ]  # fmt: skip


def test_empty_intervals_have_no_candle():
    candles = fold_trades([trade(0, "1"), trade(180, "2")], "okx", "BTC-USDT", "1m")
    assert [c.timestamp for c in candles] == [at(60), at(240)]


def test_vwap_rounds_half_to_even_at_eight_places():
    assert vwap_of(D("0.000000025"), D(1), D(1)) == D("0.00000002")
    assert vwap_of(D("0.000000035"), D(1), D(1)) == D("0.00000004")
    assert vwap_of(D("0.0000000250000001"), D(1), D(1)) == D("0.00000003")
    assert vwap_of(D(10), D(3), D(1)) == D("3.33333333")
    assert vwap_of(D(20), D(3), D(1)) == D("6.66666667")


def test_vwap_is_the_close_when_every_size_rounded_to_zero():
    assert vwap_of(D(0), D(0), D("42.5")) == D("42.5")


def test_sums_of_large_values_are_exact():
    trades = [trade(i, "999999999999.99999999", "999999999999.99999999") for i in range(3)]
    (candle,) = fold_trades(trades, "okx", "BTC-USDT", "1m")
    assert candle.volume == D("2999999999999.99999997")
    # 3 x (10**12 - 10**-8)**2, which the default 28-digit context would round
    assert candle.quote_volume == D("2999999999999999999940000.0000000000000003")
    assert candle.vwap == D("999999999999.99999999")


def test_a_trade_point_is_rounded_as_the_raw_trades_columns_store_it():
    stored = trade_from_point(point(0, "100.123456785", "0.000000005"))
    assert stored.price == D("100.12345679")  # half away from zero, as PostgreSQL rounds
    assert stored.size == D("0.00000001")
    assert stored.timestamp.tzinfo is UTC


# derivation and gaps -------------------------------------------------------------------


def test_larger_candles_derived_from_smaller_ones_equal_the_direct_fold():
    trades = [trade(i * 37.3, str(100 + i % 7), f"0.{i + 1}", str(i)) for i in range(40)]
    one_minute = fold_trades(trades, "okx", "BTC-USDT", "1m")
    assert derive_candles(one_minute, "5m") == fold_trades(trades, "okx", "BTC-USDT", "5m")
    assert derive_candles(one_minute, "1h") == fold_trades(trades, "okx", "BTC-USDT", "1h")


def test_candles_cannot_be_derived_from_a_timeframe_that_does_not_divide_them():
    candles = fold_trades([trade(0, "1")], "okx", "BTC-USDT", "1h")
    with pytest.raises(ValueError, match="5m candles cannot be built from 1h"):
        derive_candles(candles, "5m")


def test_fill_gaps_carries_the_previous_close_with_zero_volume():
    candles = fold_trades([trade(60, "10"), trade(61, "12"), trade(240, "11")], "okx", "X", "1m")
    series = fill_gaps(candles, at(0), at(300), "1m")
    assert [c.timestamp for c in series] == [at(120), at(180), at(240), at(300)]
    for flat in series[1:3]:
        assert (flat.open, flat.high, flat.low, flat.close, flat.vwap) == (D(12),) * 5
        assert (flat.volume, flat.quote_volume, flat.trade_count) == (0, 0, 0)
    assert series[0] == candles[0] and series[3] == candles[1]


def test_fill_gaps_leaves_out_empty_intervals_before_the_first_candle():
    candles = fold_trades([trade(150, "10")], "okx", "X", "1m")
    assert [c.timestamp for c in fill_gaps(candles, at(0), at(299), "1m")] == [at(180), at(240)]


# live aggregation ----------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.batches: list[list[CandleValue]] = []

    def __call__(self, candles):
        self.batches.append(candles)

    @property
    def candles(self):
        return [c for batch in self.batches for c in batch]


def live(timeframes=("1m",), grace=2.0, since=NOON):
    recorder = Recorder()
    aggregator = LiveCandleAggregator("okx", "BTC-USDT", timeframes, recorder, grace, since=since)
    return aggregator, recorder


def test_a_candle_is_emitted_only_once_a_trade_passes_its_end_plus_the_grace():
    aggregator, recorder = live()
    aggregator.add_trade(point(10, "100", trade_id="1"))
    aggregator.add_trade(point(60, "101", trade_id="2"))  # at T: not yet, within the grace
    aggregator.add_trade(point(61.9, "102", trade_id="3"))
    assert recorder.candles == []
    aggregator.add_trade(point(62, "103", trade_id="4"))
    assert recorder.candles == fold_trades([trade(10, "100", "1", "1")], "okx", "BTC-USDT", "1m")


def test_the_wall_clock_closes_a_candle_when_no_trade_comes():
    aggregator, recorder = live()
    aggregator.add_trade(point(10, "100"))
    aggregator.tick(at(61.999999))
    assert recorder.candles == []
    aggregator.tick(at(62))
    assert [c.timestamp for c in recorder.candles] == [at(60)]
    aggregator.tick(at(1000))
    assert len(recorder.candles) == 1


def test_a_trade_slightly_out_of_order_within_the_grace_is_still_counted():
    aggregator, recorder = live()
    aggregator.add_trade(point(61, "101", trade_id="2"))
    aggregator.add_trade(point(59, "100", trade_id="1"))
    aggregator.tick(at(200))
    assert [(c.timestamp, c.trade_count) for c in recorder.candles] == [
        (at(60), 1),
        (at(120), 1),
    ]


def test_a_late_trade_is_counted_and_never_changes_an_emitted_candle():
    aggregator, recorder = live()
    aggregator.add_trade(point(10, "100", trade_id="1"))
    aggregator.add_trade(point(70, "100", trade_id="2"))
    emitted = list(recorder.candles)
    aggregator.add_trade(point(20, "500", trade_id="3"))
    aggregator.tick(at(300))
    assert recorder.candles[0] == emitted[0]
    assert aggregator.counts["late"] == 1
    assert [c.trade_count for c in recorder.candles] == [1, 1]


def test_a_repeated_trade_id_counts_once():
    aggregator, recorder = live()
    aggregator.add_trade(point(10, "100", trade_id="7"))
    aggregator.add_trade(point(10, "100", trade_id="7"))
    aggregator.tick(at(100))
    assert recorder.candles[0].trade_count == 1
    assert aggregator.counts["duplicates"] == 1


def test_intervals_that_began_before_since_are_left_to_the_rollup():
    aggregator, recorder = live(("1m", "5m"), since=NOON + timedelta(seconds=30))
    aggregator.add_trade(point(40, "100", trade_id="1"))  # its minute began before `since`
    aggregator.add_trade(point(70, "101", trade_id="2"))
    aggregator.tick(at(1000))
    assert [(c.timeframe, c.timestamp) for c in recorder.candles] == [("1m", at(120))]
    assert aggregator.counts["before_since"] == 1


def test_by_default_since_is_the_wall_clock_at_construction():
    aggregator, recorder = live(since=None)
    assert aggregator.since > datetime.now(UTC)
    aggregator.add_trade(point(0, "100"))
    aggregator.tick(at(10_000))
    assert recorder.candles == []


def test_larger_timeframes_close_with_the_smaller_and_equal_the_direct_fold():
    aggregator, recorder = live(("1s", "1m", "5m"))
    points = [point(i * 7.1, str(100 + i % 5), "0.3", str(i)) for i in range(60)]
    for p in points:
        aggregator.add_trade(p)
    aggregator.tick(at(602))
    trades = [trade_from_point(p) for p in points]
    for timeframe in ("1s", "1m", "5m"):
        emitted = [c for c in recorder.candles if c.timeframe == timeframe]
        assert emitted == fold_trades(trades, "okx", "BTC-USDT", timeframe)


def test_open_candles_show_the_intervals_still_open_as_not_final():
    aggregator, recorder = live(("1m", "5m"))
    aggregator.add_trade(point(10, "100", trade_id="1"))
    aggregator.add_trade(point(70, "101", trade_id="2"))
    aggregator.add_trade(point(100, "99", trade_id="3"))
    assert [(c.timeframe, c.timestamp) for c in recorder.candles] == [("1m", at(60))]
    current = aggregator.open_candles()
    assert [(c.timeframe, c.timestamp, c.trade_count, c.is_final) for c in current] == [
        ("1m", at(120), 2, False),
        ("5m", at(300), 3, False),
    ]
    assert current[1].open == D(100) and current[1].close == D(99)


def test_flush_emits_what_has_closed_and_forgets_what_is_open():
    recent = floor_boundary(datetime.now(UTC), "1m") - timedelta(minutes=2)
    aggregator, recorder = live(since=recent)
    aggregator.add_trade(point(recent + timedelta(seconds=1), "100", trade_id="1"))
    aggregator.add_trade(point(datetime.now(UTC), "101", trade_id="2"))
    aggregator.flush()
    assert [c.timestamp for c in recorder.candles] == [recent + timedelta(minutes=1)]
    assert aggregator.open_candles() == []
    assert aggregator.since > datetime.now(UTC)


def test_a_trade_of_another_market_is_refused():
    aggregator, _ = live()
    with pytest.raises(ValueError, match="ETH-USDT"):
        aggregator.add_trade(point(0, "1", symbol="ETH-USDT"))


def test_an_aggregator_needs_known_timeframes():
    with pytest.raises(ValueError, match="at least one timeframe"):
        LiveCandleAggregator("okx", "BTC-USDT", [], print)
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        LiveCandleAggregator("okx", "BTC-USDT", ["1m", "2m"], print)


def test_adding_and_ticking_from_two_threads_emits_every_candle_once():
    aggregator, recorder = live(("1s", "1m"), grace=0)
    done = threading.Event()

    def ticker():
        second = 0
        while not done.is_set():
            second += 0.5
            aggregator.tick(at(min(second, 300)))

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        for i in range(3000):
            aggregator.add_trade(point(i * 0.1, "100", trade_id=str(i)))
    finally:
        done.set()
        thread.join()
    aggregator.tick(at(1000))
    keys = [(c.timeframe, c.timestamp) for c in recorder.candles]
    assert len(keys) == len(set(keys))
    emitted_trades = sum(c.trade_count for c in recorder.candles if c.timeframe == "1s")
    assert emitted_trades + aggregator.counts["late"] == 3000
