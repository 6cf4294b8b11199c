"""Properties over random trade streams: live == SQL rebuild == a naive reference, no leakage.

Streams carry repeated trades, equal timestamps, numeric, text and missing trade ids,
prices and sizes with more places than the columns keep, trades exactly on boundaries,
and arrive out of order, some of them late.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.types import DataType, MarketDataPoint
from marketdata.candles import (
    TIMEFRAMES,
    CandleValue,
    LiveCandleAggregator,
    derive_candles,
    fetch_candles,
    fold_trades,
    store_candles,
    trade_from_point,
)
from marketdata.models import Candle, RawTrade
from marketdata.rollups import derive_stored_candles, rebuild_candles

EXCHANGE, SYMBOL = "okx", "BTC-USDT"
# Two minutes before midnight: streams cross every boundary from 1s to 1d.
BASE = datetime(2024, 3, 9, 23, 58, tzinfo=UTC)
DAY_START = datetime(2024, 3, 9, tzinfo=UTC)  # live `since`: every interval seen whole
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=2)
SPAN = timedelta(hours=5)
ALL = tuple(TIMEFRAMES)
DB_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# the naive reference --------------------------------------------------------------------


def reference_candles(trades: list[dict], timeframe: str) -> list[CandleValue]:
    """Straight from the rule, written independently of marketdata.candles: group by the
    end of the interval, sort, take first, last, extremes and exact sums."""
    width = TIMEFRAMES[timeframe]
    groups: dict[datetime, list[dict]] = {}
    for trade in trades:
        elapsed = trade["ts"] - EPOCH
        whole_seconds = elapsed.days * 86400 + elapsed.seconds
        end = EPOCH + timedelta(seconds=(whole_seconds // width + 1) * width)
        groups.setdefault(end, []).append(trade)
    candles = []
    for end in sorted(groups):
        ordered = sorted(groups[end], key=reference_order)
        prices = [stored(t["price"]) for t in ordered]
        sizes = [stored(t["size"]) for t in ordered]
        volume = sum(map(Fraction, sizes), Fraction(0))
        quote = sum(
            (Fraction(p) * Fraction(s) for p, s in zip(prices, sizes, strict=True)), Fraction(0)
        )
        vwap = prices[-1] if volume == 0 else fraction_decimal(round(quote / volume, 8))
        candles.append(
            CandleValue(
                EXCHANGE, SYMBOL, timeframe, end, prices[0], max(prices), min(prices), prices[-1],
                fraction_decimal(volume), fraction_decimal(quote), vwap, len(ordered),
            )
        )  # fmt: skip
    return candles


def reference_order(trade: dict) -> tuple:
    trade_id = trade["id"]
    if trade_id is None:
        rank = (2, 0, "")
    elif trade_id.isascii() and trade_id.isdigit():
        rank = (0, int(trade_id), trade_id)
    else:
        rank = (1, 0, trade_id)
    return (trade["ts"], *rank, trade["arrival"])


def stored(value: Decimal) -> Decimal:
    """What DECIMAL(20, 8) keeps: half away from zero at the 9th place."""
    scaled = Fraction(value) * 10**8
    whole = int(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    return Decimal(whole).scaleb(-8)


def fraction_decimal(value: Fraction) -> Decimal:
    with localcontext() as context:
        context.prec = 200
        return Decimal(value.numerator) / Decimal(value.denominator)


def first_arrivals(trades: list[dict]) -> list[dict]:
    """What raw_trades keeps: the first arrival of each trade id (never deduplicated: None)."""
    seen, kept = set(), []
    for trade in sorted(trades, key=lambda t: t["arrival"]):
        if trade["id"] is not None:
            if trade["id"] in seen:
                continue
            seen.add(trade["id"])
        kept.append(trade)
    return kept


# streams --------------------------------------------------------------------------------

boundary_offsets = st.builds(
    lambda minutes, nudge: timedelta(minutes=minutes, microseconds=nudge),
    st.integers(0, 300),
    st.sampled_from([0, 0, 1, -1]),
)
offsets = st.one_of(
    st.integers(0, 5 * 60 * 10**6).map(lambda us: timedelta(microseconds=us)),
    st.integers(0, int(SPAN.total_seconds()) * 10**6).map(lambda us: timedelta(microseconds=us)),
    boundary_offsets,
)
prices = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(1, 10**12),
    st.integers(4, 10),
)
# Equal sizes make VWAP ties (a 5 in the 9th place) common, which half-even must settle.
sizes = st.one_of(
    st.sampled_from([Decimal(1), Decimal("0.5"), Decimal(2), Decimal("0.00000001")]),
    st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places),
        st.integers(1, 10**10),
        st.integers(6, 10),
    ),
)


@st.composite
def trade_streams(draw, with_missing_ids: bool = False):
    """Trades in arrival order, with repeats; `arrival` numbers them as they arrive."""
    count = draw(st.integers(1, 40))
    trades = []
    for number in range(count):
        kind = draw(st.sampled_from(["numeric", "numeric", "numeric", "text", "missing"]))
        if kind == "missing" and not with_missing_ids:
            kind = "numeric"
        if kind == "numeric":  # unique: the last three digits are the number
            zeros = draw(st.sampled_from(["", "", "0", "00"]))
            trade_id = f"{zeros}{draw(st.integers(0, 10**6))}{number:03d}"
        elif kind == "text":
            trade_id = draw(st.sampled_from(["a", "b", "Z", "é", "x1", "10a"])) + str(number)
        else:
            trade_id = None
        if trades and draw(st.integers(0, 3)) == 0:  # the same time as an earlier trade
            timestamp = draw(st.sampled_from(trades))["ts"]
        else:
            timestamp = BASE + draw(offsets)
        trades.append({"ts": timestamp, "price": draw(prices), "size": draw(sizes), "id": trade_id})
    repeats = draw(st.lists(st.sampled_from(range(count)), max_size=5))
    trades += [dict(trades[i]) for i in repeats if trades[i]["id"] is not None]
    trades = draw(st.permutations(trades))
    for arrival, trade in enumerate(trades):
        trade["arrival"] = arrival
    return trades


def as_point(trade: dict) -> MarketDataPoint:
    data = {"trade_id": trade["id"], "price": trade["price"], "size": trade["size"], "side": "buy"}
    return MarketDataPoint(EXCHANGE, SYMBOL, trade["ts"], DataType.TRADE, data)


def nearly_in_order(trades: list[dict], jitters: list[int]) -> list[dict]:
    """Arrival by timestamp plus a delay under the grace: out of order, never late."""
    delayed = sorted(
        zip(trades, jitters, strict=False),
        key=lambda pair: pair[0]["ts"] + timedelta(microseconds=pair[1]),
    )
    return [{**trade, "arrival": arrival} for arrival, (trade, _) in enumerate(delayed)]


def run_live(trades: list[dict], timeframes, on_close=None):
    emitted: list[CandleValue] = []
    aggregator = LiveCandleAggregator(
        EXCHANGE, SYMBOL, timeframes, on_close or emitted.extend, GRACE, since=DAY_START
    )
    for trade in sorted(trades, key=lambda t: t["arrival"]):
        aggregator.add_trade(as_point(trade))
    aggregator.tick(BASE + SPAN + timedelta(days=2))
    return emitted, aggregator


def by_timeframe(candles, timeframe):
    return sorted((c for c in candles if c.timeframe == timeframe), key=lambda c: c.timestamp)


def python_fold(trades: list[dict], timeframe: str) -> list[CandleValue]:
    points = [trade_from_point(as_point(t), t["arrival"]) for t in trades]
    return fold_trades(points, EXCHANGE, SYMBOL, timeframe)


# pure properties ------------------------------------------------------------------------

timeframe_sets = st.sets(st.sampled_from(ALL), min_size=1).map(sorted)


@settings(max_examples=150, deadline=None)
@given(trade_streams(), st.lists(st.integers(0, 1_999_999), min_size=50, max_size=50))
def test_live_aggregation_of_a_stream_out_of_order_within_the_grace_equals_the_reference(
    trades, jitters
):
    kept = first_arrivals(trades)
    emitted, aggregator = run_live(nearly_in_order(trades, jitters), ALL)
    for timeframe in ALL:
        assert by_timeframe(emitted, timeframe) == reference_candles(kept, timeframe)
    assert aggregator.counts["late"] == 0
    assert aggregator.counts["duplicates"] == len(trades) - len(kept)


@settings(max_examples=150, deadline=None)
@given(trade_streams(with_missing_ids=True))
def test_folding_equals_the_reference_for_every_timeframe(trades):
    for timeframe in ALL:
        assert python_fold(trades, timeframe) == reference_candles(trades, timeframe)


@settings(max_examples=80, deadline=None)
@given(trade_streams(with_missing_ids=True), timeframe_sets)
def test_every_timeframe_equals_its_derivation_from_smaller_candles(trades, timeframes):
    for source in ALL:
        smaller = python_fold(trades, source)
        for timeframe in ALL:
            if TIMEFRAMES[timeframe] > TIMEFRAMES[source]:
                assert derive_candles(smaller, timeframe) == python_fold(trades, timeframe)


@settings(max_examples=150, deadline=None)
@given(trade_streams(), timeframe_sets, st.lists(st.sampled_from(["trade", "tick"]), max_size=60))
def test_no_candle_is_emitted_before_its_interval_plus_the_grace_has_passed(
    trades, timeframes, events
):
    clock = {"now": datetime.min.replace(tzinfo=UTC)}
    seen: set[tuple[str, datetime]] = set()

    def on_close(candles):
        for candle in candles:
            assert candle.timestamp + GRACE <= clock["now"]
            assert (candle.timeframe, candle.timestamp) not in seen
            seen.add((candle.timeframe, candle.timestamp))

    aggregator = LiveCandleAggregator(
        EXCHANGE, SYMBOL, timeframes, on_close, GRACE, since=DAY_START
    )
    ordered = sorted(trades, key=lambda t: t["arrival"])
    for index, trade in enumerate(ordered):
        clock["now"] = max(clock["now"], trade["ts"])
        aggregator.add_trade(as_point(trade))
        if index < len(events) and events[index] == "tick":
            tick = trade["ts"] + timedelta(seconds=index)
            clock["now"] = max(clock["now"], tick)
            aggregator.tick(tick)


@settings(max_examples=150, deadline=None)
@given(trade_streams(), st.sampled_from(ALL), st.integers(0, 300))
def test_no_candle_depends_on_a_trade_at_or_after_its_end(trades, timeframe, cut_minutes):
    cut = BASE + timedelta(minutes=cut_minutes)
    before = [t for t in trades if t["ts"] < cut]
    earlier = [c for c in python_fold(trades, timeframe) if c.timestamp <= cut]
    assert earlier == [c for c in python_fold(before, timeframe) if c.timestamp <= cut]


@settings(max_examples=150, deadline=None)
@given(trade_streams())
def test_every_trade_lands_in_the_candle_whose_interval_holds_it(trades):
    for timeframe, width in TIMEFRAMES.items():
        for candle in python_fold(trades, timeframe):
            members = [
                t
                for t in trades
                if candle.timestamp - timedelta(seconds=width) <= t["ts"] < candle.timestamp
            ]
            assert candle.trade_count == len(members)


# against PostgreSQL ---------------------------------------------------------------------


def store_trades(trades: list[dict]) -> None:
    """Store what raw_trades keeps of the stream. (A repeated trade id is refused, not
    ignored, by ON CONFLICT DO NOTHING: the key is in raw_trade_keys, docs/data-model.md.)"""
    RawTrade.objects.all().delete()
    Candle.objects.all().delete()
    RawTrade.objects.bulk_create(
        [
            RawTrade(
                exchange=EXCHANGE,
                symbol=SYMBOL,
                trade_id=t["id"],
                price=t["price"],
                size=t["size"],
                side="buy",
                timestamp=t["ts"],
            )
            for t in first_arrivals(trades)
        ]
    )


def stored_candles(timeframe: str) -> list[CandleValue]:
    return fetch_candles(EXCHANGE, SYMBOL, timeframe, BASE - timedelta(days=2), BASE + SPAN * 9)


def rebuild(timeframe: str) -> int:
    start = BASE - timedelta(days=1)
    end = BASE + SPAN + timedelta(days=1)
    return rebuild_candles(timeframe, start, end, exchange=EXCHANGE, symbol=SYMBOL)


@pytest.mark.django_db
@DB_SETTINGS
@given(trade_streams(with_missing_ids=True))
def test_the_sql_rebuild_equals_the_reference_for_every_timeframe(trades):
    store_trades(trades)
    kept = first_arrivals(trades)
    for timeframe in ALL:
        rebuild(timeframe)
        assert stored_candles(timeframe) == reference_candles(kept, timeframe)
        assert rebuild(timeframe) == 0  # a second run changes nothing


@pytest.mark.django_db
@DB_SETTINGS
@given(trade_streams(with_missing_ids=True))
def test_every_timeframe_derived_in_sql_from_1m_equals_its_rebuild_from_trades(trades):
    store_trades(trades)
    rebuild("1m")
    for timeframe in ALL[2:]:
        start, end = BASE - timedelta(days=1), BASE + SPAN + timedelta(days=1)
        derive_stored_candles(timeframe, "1m", start, end, exchange=EXCHANGE, symbol=SYMBOL)
        derived = stored_candles(timeframe)
        rebuild(timeframe)
        assert derived == stored_candles(timeframe)


@pytest.mark.django_db
@DB_SETTINGS
@given(trade_streams(), timeframe_sets)
def test_live_candles_stored_then_rolled_up_equal_the_rebuild_even_with_late_trades(
    trades, timeframes
):
    store_trades(trades)
    run_live(trades, timeframes, on_close=store_candles)
    kept = first_arrivals(trades)
    for timeframe in timeframes:
        rebuild(timeframe)
        assert stored_candles(timeframe) == reference_candles(kept, timeframe)


@pytest.mark.django_db
@DB_SETTINGS
@given(trade_streams(), st.lists(st.integers(0, 1_999_999), min_size=50, max_size=50))
def test_live_candles_stored_equal_the_sql_rebuild_when_nothing_is_late(trades, jitters):
    store_trades(trades)
    run_live(nearly_in_order(trades, jitters), ALL, on_close=store_candles)
    live = {timeframe: stored_candles(timeframe) for timeframe in ALL}
    for timeframe in ALL:
        assert rebuild(timeframe) == 0
        assert stored_candles(timeframe) == live[timeframe]
