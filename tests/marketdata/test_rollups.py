"""Candles rebuilt from raw_trades in PostgreSQL, stored, fetched and rolled up."""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from marketdata import rollups
from marketdata.candles import CandleValue, fetch_candles, store_candles
from marketdata.models import Candle, RawTrade
from marketdata.rollups import (
    derive_stored_candles,
    fold_stored_trades,
    rebuild_candles,
    rollup_recent_candles,
)
from marketdata.tasks import rollup_candles

pytestmark = pytest.mark.django_db
D = Decimal
NOON = datetime(2024, 3, 9, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=2)


def at(seconds: float) -> datetime:
    return NOON + timedelta(microseconds=round(seconds * 1_000_000))


def add_trades(*trades, exchange="okx", symbol="BTC-USDT"):
    """(seconds after noon, price, size, trade id) in arrival order."""
    RawTrade.objects.bulk_create(
        RawTrade(
            exchange=exchange,
            symbol=symbol,
            trade_id=trade_id,
            price=D(price),
            size=D(size),
            side="buy",
            timestamp=at(seconds),
        )
        for seconds, price, size, trade_id in trades
    )


def candle(timeframe, end, o, h, low, c, volume, quote, vwap, count, symbol="BTC-USDT"):
    return CandleValue(
        "okx", symbol, timeframe, end, D(o), D(h), D(low), D(c), D(volume), D(quote), D(vwap),
        count,
    )  # fmt: skip


def stored(timeframe="1m", symbol="BTC-USDT", final_only=True):
    return fetch_candles(
        "okx", symbol, timeframe, NOON - timedelta(days=1), NOON + timedelta(days=2),
        final_only=final_only,
    )  # fmt: skip


def test_the_rebuild_writes_right_aligned_candles_with_ties_broken_by_trade_id():
    add_trades(
        (0, "100", "1", "10"),  # same time as "9", which comes first by number
        (0, "200", "1", "9"),
        (30, "150", "0.5", "x"),
        (59.999999, "120", "1", None),  # last of the first minute: after ids at equal times
        (59.999999, "130", "1", "11"),
        (60, "90", "2", "12"),  # exactly at 12:01: the next candle
    )
    written = rebuild_candles("1m", NOON, at(120), exchange="okx", symbol="BTC-USDT")
    assert written == 2
    assert stored() == [
        candle("1m", at(60), 200, 200, 100, 120, "4.5", "625", "138.88888889", 5),
        candle("1m", at(120), 90, 90, 90, 90, 2, 180, 90, 1),
    ]
    row = Candle.objects.get(timestamp=at(60))
    assert row.is_final and row.created_at is not None and row.updated_at is not None


def test_a_second_rebuild_changes_nothing():
    add_trades((1, "100", "1", "1"), (61, "101", "1", "2"))
    assert rebuild_candles("1m", NOON, at(120)) == 2
    assert rebuild_candles("1m", NOON, at(120)) == 0
    assert Candle.objects.count() == 2


def test_the_rebuild_covers_whole_intervals_around_the_range_it_is_given():
    add_trades((1, "100", "1", "1"), (50, "101", "1", "2"), (70, "102", "1", "3"))
    rebuild_candles("1m", at(30), at(31))
    assert [(c.timestamp, c.trade_count) for c in stored()] == [(at(60), 2)]


def test_an_interval_is_written_only_once_it_has_closed_plus_the_grace():
    add_trades((1, "100", "1", "1"), (61, "101", "1", "2"))
    assert rebuild_candles("1m", NOON, at(600), now=at(61.9), grace=GRACE) == 0
    assert rebuild_candles("1m", NOON, at(600), now=at(62), grace=GRACE) == 1
    assert [c.timestamp for c in stored()] == [at(60)]


def test_a_rebuild_of_every_market_at_once_keeps_them_apart():
    add_trades((1, "100", "1", "1"))
    add_trades((2, "5", "3", "1"), symbol="ETH-USDT")
    assert rebuild_candles("1m", NOON, at(60)) == 2
    assert stored()[0].close == D(100)
    assert stored(symbol="ETH-USDT")[0].volume == D(3)


def test_the_rebuild_wants_both_exchange_and_symbol_or_neither():
    with pytest.raises(ValueError, match="both exchange and symbol"):
        rebuild_candles("1m", NOON, at(60), exchange="okx")


def test_larger_candles_derived_from_stored_1m_candles_equal_their_rebuild():
    add_trades(*[(i * 41.7, str(100 + i % 9), f"0.{i + 1}", str(i)) for i in range(80)])
    rebuild_candles("1m", NOON, at(3600))
    derive_stored_candles("15m", "1m", NOON, at(3600))
    derived = stored("15m")
    assert len(derived) == 4
    assert rebuild_candles("15m", NOON, at(3600)) == 0
    assert stored("15m") == derived


def test_the_portable_fold_equals_the_sql_rebuild():
    add_trades(*[(i * 13.1, str(100 + i % 5), "0.3", str(i) if i % 6 else None) for i in range(90)])
    rebuild_candles("5m", NOON, at(1200))
    assert fold_stored_trades("5m", NOON, at(1200)) == stored("5m")


def test_the_rebuild_reads_one_market_through_the_raw_trades_index():
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO raw_trades (exchange, symbol, trade_id, price, size, side, timestamp)
            SELECT 'okx', 'C' || (n %% 100) || '-USDT', n::text,
                   100 + n %% 7, 1, 'buy', %s + n * interval '5 seconds'
            FROM generate_series(1, 100000) AS n
            """,
            [NOON - timedelta(days=5)],
        )
        cursor.execute("ANALYZE raw_trades")
        sql = rollups.FROM_TRADES_SQL.format(market=rollups.MARKET_SQL)
        cursor.execute(
            "EXPLAIN " + sql,
            {
                "timeframe": "1m",
                "width": timedelta(minutes=1),
                "start": NOON - timedelta(hours=1),
                "end": NOON,
                "exchange": "okx",
                "symbol": "C3-USDT",
            },
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # raw_trades is partitioned: the scan uses a partition's copy of the index.
    scans = plan.split("CTE buckets")[0]
    assert re.search(r"Index Scan using \w*exchange_symbol_timestamp_idx", scans), plan


# storing and fetching ------------------------------------------------------------------


def test_storing_a_live_candle_twice_keeps_one_row():
    live = candle("1m", at(60), 1, 2, 1, 2, 1, 1, 1, 1)
    store_candles([live])
    store_candles([live])
    assert stored() == [live]


def test_a_live_candle_never_overwrites_a_stored_final_candle():
    add_trades((1, "100", "1", "1"), (2, "300", "1", "2"))
    rebuild_candles("1m", NOON, at(60))
    rebuilt = stored()
    store_candles([candle("1m", at(60), 100, 100, 100, 100, 1, 100, 100, 1)])
    assert stored() == rebuilt
    store_candles([candle("1m", at(60), 1, 1, 1, 1, 1, 1, 1, 1)], replace=True)
    assert stored()[0].close == D(1)


def test_a_stored_open_candle_is_replaced_by_its_final_candle():
    store_candles([replace(candle("1m", at(60), 1, 1, 1, 1, 1, 1, 1, 1), is_final=False)])
    assert stored() == []
    assert stored(final_only=False)[0].is_final is False
    final = candle("1m", at(60), 1, 3, 1, 3, 2, 4, 2, 2)
    store_candles([final])
    assert stored() == [final]


def test_the_rebuild_finalizes_a_stored_open_candle():
    add_trades((1, "100", "1", "1"))
    store_candles([replace(candle("1m", at(60), 5, 5, 5, 5, 1, 5, 5, 1), is_final=False)])
    rebuild_candles("1m", NOON, at(60))
    assert stored() == [candle("1m", at(60), 100, 100, 100, 100, 1, 100, 100, 1)]


# the rollup -----------------------------------------------------------------------------


def test_the_rollup_folds_in_a_late_trade_stored_after_the_candle():
    add_trades((10, "100", "1", "1"), (70, "101", "1", "2"))
    now = at(65)
    assert rollup_recent_candles(now=now, timeframes=["1m"])["1m"] == 1
    add_trades((20, "500", "1", "0"))  # late: stored after its candle was written
    assert rollup_recent_candles(now=now + timedelta(seconds=5), timeframes=["1m"]) == {"1m": 1}
    (first,) = stored()
    assert (first.high, first.trade_count) == (D(500), 2)


def test_the_rollup_writes_every_timeframe_of_every_market_for_the_closed_window_only():
    add_trades((-30, "100", "1", "1"), (10, "101", "1", "2"), (3590, "102", "1", "3"))
    add_trades((-20, "7", "1", "1"), symbol="ETH-USDT")
    written = rollup_recent_candles(now=at(3605), lookback=timedelta(minutes=10))
    # Only BTC traded in the last ten minutes; the 4h and 1d intervals are still open.
    assert written == {"1m": 1, "5m": 1, "15m": 1, "1h": 1, "4h": 0, "1d": 0}
    assert [c.timestamp for c in stored("1h")] == [at(3600)]
    written = rollup_recent_candles(now=at(3605), lookback=timedelta(hours=2))
    assert written["1m"] == 3 and written["1h"] == 2  # what had been written is unchanged
    assert stored("1h", symbol="ETH-USDT")[0].close == D(7)


def test_the_rollup_task_is_safe_to_run_twice():
    add_trades((10, "100", "1", "1"))
    first = rollup_candles(now=at(100).isoformat(), lookback_seconds=600)
    second = rollup_candles(now=at(100).isoformat(), lookback_seconds=600)
    assert first["written"]["1m"] == 1
    assert second["written"] == dict.fromkeys(first["written"], 0)
    assert stored() == [candle("1m", at(60), 100, 100, 100, 100, 1, 100, 100, 1)]


@pytest.mark.django_db(transaction=True)
def test_the_rollup_task_runs_on_a_real_worker(celery_worker_process):
    add_trades((10, "100", "1", "1"))
    result = rollup_candles.delay(now=at(100).isoformat(), lookback_seconds=600)
    answer = result.get(timeout=30)
    assert answer["written"]["1m"] == 1
    assert stored()[0].close == D(100)
