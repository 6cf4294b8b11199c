"""Daily partitions: created ahead, a default for any other day, existing rows moved in place."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from collectors.storage.sink import StorageSink
from collectors.types import DataType, MarketDataPoint
from marketdata import partitions
from marketdata.models import MarketData, RawTrade
from marketdata.tasks import create_partitions
from tests.marketdata.lifecycle import NOW


def partition_of(table: str, **where) -> list[str]:
    column, value = next(iter(where.items()))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE {column} = %s", [value])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_the_task_creates_every_daily_partition_ahead(settings):
    settings.PARTITIONS_AHEAD_DAYS = 5
    create_partitions(NOW.isoformat())
    for table in partitions.DAILY_TABLES:
        days = partitions.attached_days(table)
        for ahead in range(6):
            day = NOW.date() + timedelta(days=ahead)
            assert days[day] == table.partition(day)
    assert create_partitions(NOW.isoformat()) == {"created": []}  # twice: nothing more


@pytest.mark.django_db
def test_a_row_of_a_day_without_partition_waits_in_the_default_and_moves_into_its_partition():
    far = datetime(2091, 5, 4, 3, 2, 1, tzinfo=UTC)
    trade = RawTrade.objects.create(
        exchange="okx", symbol="BTC-USDT", trade_id="1", price=1, size=1, side="buy", timestamp=far
    )
    point = MarketData.objects.create(
        exchange="okx", symbol="BTC-USDT", data_type="ticker", timestamp=far, data={}
    )
    assert partition_of("raw_trades", id=trade.id) == ["raw_trades_default"]
    assert partition_of("market_data", id=point.id) == ["market_data_ticker_default"]
    created = partitions.ensure_partitions(far, 0, {})
    assert "raw_trades_p20910504" in created
    assert partition_of("raw_trades", id=trade.id) == ["raw_trades_p20910504"]
    assert partition_of("market_data", id=point.id) == ["market_data_ticker_p20910504"]


@pytest.mark.django_db(transaction=True)
def test_rows_far_in_the_past_or_future_do_not_fail_their_batch(tmp_path):
    now = datetime.now(UTC)
    moments = [now, datetime(1999, 1, 1, tzinfo=UTC), datetime(2199, 1, 1, tzinfo=UTC), now]
    points = [
        MarketDataPoint(
            "okx",
            "BTC-USDT",
            moment,
            DataType.TRADE,
            {"trade_id": str(n), "price": Decimal(1), "size": Decimal(1), "side": "buy"},
        )
        for n, moment in enumerate(moments)
    ]
    points += [MarketDataPoint("okx", "BTC-USDT", m, DataType.ORDERBOOK, {}) for m in moments]
    sink = StorageSink(name="far", spill_dir=tmp_path)
    sink.start()
    sink.put(points)
    assert sink.flush(timeout=30)
    sink.stop()
    assert sink.stats()["rows_rejected"] == 0
    assert RawTrade.objects.count() == 4
    assert MarketData.objects.count() == 4


TRADES = """
INSERT INTO raw_trades (exchange, symbol, trade_id, price, size, side, timestamp, raw_data)
VALUES ('okx', 'BTC-USDT', '1', 42000.12345678, 0.00000001, 'buy', '2024-01-01 23:59:59.999999+00',
        '{"px": "42000.12345678"}'),
       ('okx', 'BTC-USDT', '2', 99999999999.99999999, 1, 'sell', '2024-01-02 00:00:00+00', NULL),
       ('okx', 'ETH-USDT', '2', 2500, 3, 'sell', '2024-01-02 00:00:00+00', NULL),
       ('okx', 'BTC-USDT', NULL, 1, 1, 'buy', '2024-01-05 10:00:00+00', NULL),
       ('binance', 'BTCUSDT', '1', 1, 1, 'buy', '2124-01-05 10:00:00+00', NULL)
"""
MARKET_DATA = """
INSERT INTO market_data (exchange, symbol, data_type, timestamp, data) VALUES
    ('okx', 'BTC-USDT', 'orderbook', '2024-01-01 12:00+00', '{"bids": [["1.10", "2"]]}'),
    ('okx', 'BTC-USDT', 'ticker', '2024-01-03 12:00+00', '{"last": "1.5"}'),
    ('okx', 'BTC-USDT', 'candle', '2024-01-03 12:00+00', '{"open": 1.10}'),
    ('okx', 'BTC-USDT', 'something-new', '2024-01-03 12:00+00', '{}')
"""


def every_row(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")
        return cursor.fetchall()


def migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


@pytest.mark.django_db(transaction=True)
def test_a_database_that_holds_rows_is_partitioned_in_place():
    migrate([("marketdata", "0003_backup_schedules")])  # just before partitioning
    with connection.cursor() as cursor:
        cursor.execute(TRADES)
        cursor.execute(MARKET_DATA)
    trades, points = every_row("raw_trades"), every_row("market_data")

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert every_row("raw_trades") == trades
    assert every_row("market_data") == points
    homes = {row[0]: partition_of("raw_trades", id=row[0])[0] for row in trades}
    assert homes == {
        1: "raw_trades_p20240101",
        2: "raw_trades_p20240102",
        3: "raw_trades_p20240102",
        4: "raw_trades_p20240105",
        5: "raw_trades_p21240105",
    }
    assert partition_of("market_data", id=1) == ["market_data_orderbook_p20240101"]
    assert partition_of("market_data", id=4) == ["market_data_other"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT exchange, symbol, trade_id FROM raw_trade_keys ORDER BY 1, 2, 3")
        assert cursor.fetchall() == [
            ("binance", "BTCUSDT", "1"),
            ("okx", "BTC-USDT", "1"),
            ("okx", "BTC-USDT", "2"),
            ("okx", "ETH-USDT", "2"),
        ]
    fields = {"exchange": "okx", "symbol": "BTC-USDT", "price": 1, "size": 1, "side": "buy"}
    with pytest.raises(IntegrityError), transaction.atomic():
        RawTrade.objects.create(trade_id="2", timestamp=datetime(2024, 2, 1, tzinfo=UTC), **fields)
    new = RawTrade.objects.create(
        trade_id="3", timestamp=datetime(2024, 1, 1, tzinfo=UTC), **fields
    )
    assert new.id > 5  # the identity goes on after the moved rows
