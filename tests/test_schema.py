"""The migrated PostgreSQL schema is the spec's: columns, types, nullability, defaults, keys."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from marketdata.models import RawTrade

pytestmark = pytest.mark.django_db


def columns(table: str) -> dict[str, tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT column_name, data_type, character_maximum_length, numeric_precision,
                   numeric_scale, is_nullable, column_default
            FROM information_schema.columns WHERE table_name = %s
            """,
            [table],
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


def index_columns(table: str) -> set[tuple[str, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i
            JOIN pg_class t ON t.oid = i.indrelid
            CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname = %s AND NOT i.indisprimary
            GROUP BY i.indexrelid
            """,
            [table],
        )
        return {tuple(row[0]) for row in cursor.fetchall()}


def unique_constraints(table: str) -> set[tuple[str, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT array_agg(a.attname ORDER BY k.ord)
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.conrelid
            CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname = %s AND c.contype = 'u'
            GROUP BY c.oid
            """,
            [table],
        )
        return {tuple(row[0]) for row in cursor.fetchall()}


def test_market_data_has_the_spec_columns():
    cols = columns("market_data")
    assert set(cols) == {"id", "exchange", "symbol", "data_type", "timestamp", "data", "created_at"}
    assert cols["exchange"][:2] == ("character varying", 50)
    assert cols["symbol"][:2] == ("character varying", 50)
    assert cols["data_type"][:2] == ("character varying", 20)
    assert cols["timestamp"][0] == "timestamp with time zone"
    assert cols["data"][0] == "jsonb"
    assert cols["created_at"][0] == "timestamp with time zone"
    assert cols["created_at"][5] == "now()"
    not_null = {name for name, col in cols.items() if col[4] == "NO"}
    assert not_null == {"id", "exchange", "symbol", "data_type", "timestamp", "data"}
    assert cols["id"][0] == "bigint"


def test_market_data_has_the_spec_indexes():
    assert index_columns("market_data") == {
        ("exchange", "symbol", "timestamp"),
        ("data_type", "timestamp"),
        ("timestamp",),  # the admin's newest-first list (docs/data-model.md)
    }


def test_raw_trades_has_the_spec_columns():
    cols = columns("raw_trades")
    assert set(cols) == {
        "id",
        "exchange",
        "symbol",
        "trade_id",
        "price",
        "size",
        "side",
        "timestamp",
        "raw_data",
        "created_at",
    }
    assert cols["trade_id"][:2] == ("character varying", 100)
    assert cols["side"][:2] == ("character varying", 10)
    for name in ("price", "size"):
        assert cols[name][0] == "numeric"
        assert cols[name][2:4] == (20, 8)
    assert cols["raw_data"][0] == "jsonb"
    assert cols["created_at"][5] == "now()"
    not_null = {name for name, col in cols.items() if col[4] == "NO"}
    assert not_null == {"id", "exchange", "symbol", "price", "size", "side", "timestamp"}


def test_raw_trades_has_the_spec_unique_key_and_indexes():
    # Partitioned by day: the unique key is kept in raw_trade_keys (docs/data-model.md).
    assert unique_constraints("raw_trade_keys") == {("exchange", "symbol", "trade_id")}
    assert index_columns("raw_trades") == {
        ("exchange", "symbol", "timestamp"),
        ("timestamp",),
    }


def test_raw_trades_and_market_data_are_partitioned_with_their_primary_keys():
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, pg_get_partkeydef(c.oid), pg_get_constraintdef(k.oid)
            FROM pg_class c JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'p'
            WHERE c.relname IN ('raw_trades', 'market_data', 'market_data_orderbook')
            ORDER BY 1
            """
        )
        found = cursor.fetchall()
    market_key = 'PRIMARY KEY (id, data_type, "timestamp")'
    assert found == [
        ("market_data", "LIST (data_type)", market_key),
        ("market_data_orderbook", 'RANGE ("timestamp")', market_key),
        ("raw_trades", 'RANGE ("timestamp")', 'PRIMARY KEY (id, "timestamp")'),
    ]


def test_candles_are_unique_per_exchange_symbol_timeframe_and_end():
    cols = columns("candles")
    assert {"open", "high", "low", "close", "volume", "trade_count", "is_final"} <= set(cols)
    assert unique_constraints("candles") == {("exchange", "symbol", "timeframe", "timestamp")}


def test_collector_status_table_has_the_spec_name():
    assert "status" in columns("collector_status")


def test_the_database_rejects_a_duplicate_trade():
    trade = {
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "trade_id": "42",
        "price": "50000.5",
        "size": "0.001",
        "side": "buy",
        "timestamp": timezone.now(),
    }
    RawTrade.objects.create(**trade)
    with pytest.raises(IntegrityError), transaction.atomic():
        RawTrade.objects.create(**trade)
    RawTrade.objects.create(**{**trade, "symbol": "ETH-USDT"})
    assert RawTrade.objects.count() == 2


def test_created_at_is_filled_by_the_database():
    trade = RawTrade.objects.create(
        exchange="okx",
        symbol="BTC-USDT",
        trade_id="7",
        price="1",
        size="1",
        side="sell",
        timestamp=timezone.now(),
    )
    trade.refresh_from_db()
    assert trade.created_at is not None
    assert abs((timezone.now() - trade.created_at).total_seconds()) < 60
