"""restore_archive loads archived rows back exactly, Decimal for Decimal, and idempotently."""

from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from marketdata.models import ArchiveFile, Candle, RawTrade
from marketdata.retention import apply_retention
from tests.marketdata.lifecycle import NOW, WINDOWS, days_ago, with_partitions

pytestmark = pytest.mark.django_db

PRICES = ["0.00000001", "42000.12345678", "99999999999.99999999", "1.10000000", "7"]


@pytest.fixture
def archived(settings, archive_dir):
    """Trades, order books and candles of a day 40 days ago, archived and removed."""
    settings.RETENTION_DAYS = {**WINDOWS, "candles": 30}
    day = days_ago(40)
    with_partitions(day.date())
    for n, price in enumerate(PRICES):
        for symbol in ("BTC-USDT", "ETH-USDT"):
            RawTrade.objects.create(
                exchange="okx",
                symbol=symbol,
                trade_id=str(n),
                price=Decimal(price),
                size=Decimal(PRICES[-1 - n]),
                side="buy",
                timestamp=day + timedelta(seconds=n, microseconds=n),
                raw_data={"px": price, "big": 12345678901234567890123, "f": 0.1},
            )
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO market_data (exchange, symbol, data_type, timestamp, data)
            VALUES ('okx', 'BTC-USDT', 'orderbook', %s, '{"bids": [["1.10", "2"]], "n": 1.10}'),
                   ('okx', 'BTC-USDT', 'orderbook', %s, '{"asks": [], "n": 1e-9}')""",
            [day, day + timedelta(minutes=1)],
        )
    Candle.objects.create(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="1h",
        timestamp=day,
        open=Decimal("1.5"),
        high=Decimal("99999999999.99999999"),
        low=Decimal("0.00000001"),
        close=Decimal("2"),
        volume=Decimal("1234567890123456789012.12345678"),
        quote_volume=Decimal("1234567890123456789012.1234567890123456"),
        vwap=Decimal("1.23456789"),
        trade_count=7,
        is_final=True,
    )
    before = snapshot()
    assert apply_retention(NOW).ok
    assert snapshot() == {"raw_trades": [], "market_data": [], "candles": []}
    return before


def snapshot() -> dict[str, list[str]]:
    """Every row as text: a Decimal's scale and a JSON number's digits count too."""
    rows = {}
    with connection.cursor() as cursor:
        for table in ("raw_trades", "market_data", "candles"):
            cursor.execute(f"SELECT t::text FROM {table} t ORDER BY id")
            rows[table] = [row[0] for row in cursor.fetchall()]
    return rows


def restore(kind: str, symbol: str = "BTC-USDT", start=None, end=None) -> None:
    start = start or days_ago(41)
    end = end or days_ago(39)
    call_command(
        "restore_archive",
        "--exchange=okx",
        f"--symbol={symbol}",
        f"--data-type={kind}",
        f"--start={start.isoformat()}",
        f"--end={end.isoformat()}",
    )


def test_archived_prices_are_exact_decimals(archived, archive_dir):
    record = ArchiveFile.objects.get(kind="trade")
    table = pq.read_table(archive_dir / record.path)
    assert str(table.schema.field("price").type) == "decimal128(20, 8)"
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert sorted(table.column("price").to_pylist()) == sorted(Decimal(p) for p in PRICES * 2)


def test_restore_round_trips_every_row_exactly_and_twice_changes_nothing(archived, capsys):
    for symbol in ("BTC-USDT", "ETH-USDT"):
        restore("trade", symbol)
    restore("orderbook")
    restore("candles", end=days_ago(40) + timedelta(seconds=1))
    assert snapshot() == archived
    assert "restored 1 of 1 archived rows" in capsys.readouterr().out
    restore("trade")
    assert "restored 0 of 5 archived rows (5 were already in the database)" in (
        capsys.readouterr().out
    )
    assert snapshot() == archived


def test_restore_takes_only_the_market_and_range_asked_for(archived):
    day = days_ago(40)
    restore("trade", start=day + timedelta(seconds=1), end=day + timedelta(seconds=3))
    restored = RawTrade.objects.order_by("trade_id")
    assert [(t.symbol, t.trade_id) for t in restored] == [("BTC-USDT", "1"), ("BTC-USDT", "2")]


def test_restore_refuses_a_file_that_does_not_match_its_checksum(archived, archive_dir):
    record = ArchiveFile.objects.get(kind="trade")
    with (archive_dir / record.path).open("ab") as file:
        file.write(b"\0")
    with pytest.raises(CommandError, match="does not match its checksum"):
        restore("trade")
    assert not RawTrade.objects.exists()
