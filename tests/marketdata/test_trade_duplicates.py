"""One row per (exchange, symbol, trade_id) in the partitioned raw_trades, whatever the day."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from collectors.storage.sink import StorageSink
from collectors.types import DataType, MarketDataPoint
from marketdata.models import RawTrade
from tests.marketdata.lifecycle import with_partitions

MIDNIGHT = datetime(2024, 1, 2, tzinfo=UTC)
MONTH_START = datetime(2024, 2, 1, tzinfo=UTC)


def trade(trade_id: str, moment: datetime, price: str = "42000.5") -> MarketDataPoint:
    data = {"trade_id": trade_id, "price": Decimal(price), "size": Decimal("0.1"), "side": "buy"}
    return MarketDataPoint("okx", "BTC-USDT", moment, DataType.TRADE, data)


@pytest.fixture
def store(tmp_path):
    sink = StorageSink(name="duplicates", buffer_size=10, flush_interval=0.01, spill_dir=tmp_path)
    sink.start()

    def put(*points: MarketDataPoint) -> None:
        sink.put(list(points))
        assert sink.flush(timeout=30)

    yield put
    sink.stop()


def stored(trade_id: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text, timestamp, price FROM raw_trades WHERE trade_id = %s",
            [trade_id],
        )
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("boundary", [MIDNIGHT, MONTH_START], ids=["midnight", "month start"])
def test_a_trade_repeated_across_a_partition_boundary_is_stored_once(store, boundary):
    with_partitions((boundary - timedelta(days=1)).date(), boundary.date())
    store(trade("77", boundary - timedelta(milliseconds=1), "1"))
    store(trade("77", boundary + timedelta(milliseconds=1), "2"), trade("78", boundary))
    rows = stored("77")
    assert len(rows) == 1
    assert rows[0][0] == f"raw_trades_p{boundary - timedelta(days=1):%Y%m%d}"
    assert rows[0][2] == Decimal("1")
    assert len(stored("78")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_late_trade_is_stored_once_and_its_repeats_are_ignored(store):
    now = datetime.now(UTC)
    store(*(trade(str(n), now + timedelta(milliseconds=n)) for n in range(100, 110)))
    late = now - timedelta(days=3)
    store(trade("99", late))  # its day has no partition: it lands in the default one
    store(trade("99", late), trade("99", now), trade("105", late))
    assert stored("99") == [("raw_trades_default", late, Decimal("42000.5"))]
    assert [row[1] for row in stored("105")] == [now + timedelta(milliseconds=105)]
    assert RawTrade.objects.count() == 11


@pytest.mark.django_db(transaction=True)
def test_a_trade_repeated_within_one_batch_is_stored_once(store):
    moment = datetime.now(UTC)
    store(trade("5", moment, "1"), trade("5", moment + timedelta(days=1), "2"), trade("6", moment))
    assert [row[2] for row in stored("5")] == [Decimal("1")]
    assert RawTrade.objects.count() == 2


@pytest.mark.django_db
def test_any_writer_is_refused_a_second_row_with_the_same_trade_id():
    fields = {"exchange": "okx", "symbol": "BTC-USDT", "price": 1, "size": 1, "side": "buy"}
    RawTrade.objects.create(trade_id="1", timestamp=MIDNIGHT - timedelta(seconds=1), **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        RawTrade.objects.create(trade_id="1", timestamp=MIDNIGHT + timedelta(days=40), **fields)
    RawTrade.objects.create(trade_id=None, timestamp=MIDNIGHT, **fields)
    RawTrade.objects.create(trade_id=None, timestamp=MIDNIGHT, **fields)  # no id: no rule
    assert RawTrade.objects.count() == 3


@pytest.mark.django_db
def test_the_key_follows_its_trade_when_it_is_moved_deleted_or_truncated():
    fields = {"exchange": "okx", "symbol": "BTC-USDT", "price": 1, "size": 1, "side": "buy"}
    first = RawTrade.objects.create(trade_id="1", timestamp=MIDNIGHT, **fields)
    RawTrade.objects.filter(pk=first.pk).update(timestamp=MIDNIGHT + timedelta(days=5))
    with connection.cursor() as cursor:
        cursor.execute("SELECT timestamp FROM raw_trade_keys WHERE trade_id = '1'")
        assert cursor.fetchall() == [(MIDNIGHT + timedelta(days=5),)]
    RawTrade.objects.filter(pk=first.pk).delete()
    RawTrade.objects.create(trade_id="1", timestamp=MIDNIGHT, **fields)  # free again
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE raw_trades")
        cursor.execute("SELECT count(*) FROM raw_trade_keys")
        assert cursor.fetchone() == (0,)
    RawTrade.objects.create(trade_id="1", timestamp=MIDNIGHT, **fields)
