"""The storage sink against real PostgreSQL and SQLite, and through outages of a real TCP proxy."""

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import psycopg
import pytest
from django.db import connection
from django.db.utils import ConnectionHandler

from collectors.storage.backends import (
    SMALL_BATCH_ROWS,
    PostgresBackend,
    postgres_connection_params,
)
from collectors.storage.rows import point_to_row
from collectors.storage.sink import SpillDirectoryBusy, StorageSink
from collectors.storage.spill import list_spill_files
from collectors.types import DataType, ExchangeCollectorConfig, MarketDataPoint
from marketdata.models import MarketData, RawTrade
from marketdata.selectors import newest_stored_trade
from tests.helpers import wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
PASSWORD = "never-log-this-7f3a"


def trade(n: int, *, raw: bool = True, **changes) -> MarketDataPoint:
    data = {
        "trade_id": str(n),
        "price": Decimal("27123.45678901") + n,
        "size": Decimal("0.00012345"),
        "side": "buy" if n % 2 else "sell",
    }
    if raw:
        data["raw"] = {"tradeId": str(n), "px": str(data["price"]), "tags": [1, {"a": None}]}
    data.update(changes)
    return MarketDataPoint("okx", "BTC-USDT", T0 + timedelta(milliseconds=n), DataType.TRADE, data)


def ticker(n: int) -> MarketDataPoint:
    data = {"seq": n, "last": Decimal("27123.5"), "bids": [[Decimal("27123.4"), Decimal("2")]]}
    return MarketDataPoint("okx", "BTC-USDT", T0 + timedelta(milliseconds=n), DataType.TICKER, data)


def stats_add_up(stats: dict) -> bool:
    stored = stats["trades_inserted"] + stats["duplicates_ignored"]
    stored += stats["market_data_inserted"] + stats["rows_rejected"] + stats["pending_rows"]
    stored += stats["rows_lost"]
    return stats["rows_received"] + stats["rows_recovered"] == stored


def spill_file_names(sink: StorageSink) -> list[str]:
    return [f.path.name for f in list_spill_files(sink.spill_dir)]


@pytest.fixture
def database(transactional_db) -> dict:
    return {**connection.settings_dict, "PASSWORD": PASSWORD}


@pytest.fixture
def proxy():
    settings = connection.settings_dict
    with TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)) as proxy:
        yield proxy


@pytest.fixture
def make_sink(database, tmp_path):
    """Sinks writing to the test database (or `database=`), stopped at the end of the test."""
    sinks = []

    def make(**options) -> StorageSink:
        options = {"spill_dir": tmp_path, "database": database, "retry_delay": 0.2, **options}
        sink = StorageSink(**options)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop(timeout=5)


def test_it_stores_trades_with_their_exact_values(make_sink):
    sink = make_sink()
    sink.start()
    sink.put([trade(1), trade(2, raw=False)])
    assert sink.flush(timeout=10)

    first, second = RawTrade.objects.order_by("trade_id")
    assert (first.exchange, first.symbol, first.trade_id, first.side) == (
        "okx",
        "BTC-USDT",
        "1",
        "buy",
    )
    assert first.price == Decimal("27124.45678901")
    assert first.size == Decimal("0.00012345")
    assert first.timestamp == T0 + timedelta(milliseconds=1)
    assert first.raw_data == {"tradeId": "1", "px": "27124.45678901", "tags": [1, {"a": None}]}
    assert first.created_at is not None
    assert second.raw_data is None
    assert second.side == "sell"


def test_it_stores_other_points_as_json_in_market_data(make_sink):
    sink = make_sink()
    sink.start()
    book = MarketDataPoint(
        "okx",
        "ETH-USDT",
        T0,
        DataType.ORDERBOOK,
        {"asks": [["2001.5", "3"]], "bids": [[Decimal("2001.25"), Decimal("1.5")]], "checksum": -7},
    )
    sink.put([ticker(1), book])
    assert sink.flush(timeout=10)

    rows = {row.data_type: row for row in MarketData.objects.all()}
    assert set(rows) == {"ticker", "orderbook"}
    assert rows["ticker"].data == {"seq": 1, "last": "27123.5", "bids": [["27123.4", "2"]]}
    assert rows["ticker"].timestamp == T0 + timedelta(milliseconds=1)
    assert rows["orderbook"].data == {
        "asks": [["2001.5", "3"]],
        "bids": [["2001.25", "1.5"]],
        "checksum": -7,
    }
    assert (rows["orderbook"].exchange, rows["orderbook"].symbol) == ("okx", "ETH-USDT")
    assert rows["orderbook"].created_at is not None
    assert RawTrade.objects.count() == 0


def test_it_ignores_duplicate_trades_within_and_across_batches_and_counts_them(make_sink):
    sink = make_sink()
    sink.start()
    sink.put([trade(1), trade(1), trade(2)])
    assert sink.flush(timeout=10)
    sink.put([trade(2), trade(3), ticker(1)])
    assert sink.flush(timeout=10)

    assert sorted(RawTrade.objects.values_list("trade_id", flat=True)) == ["1", "2", "3"]
    stats = sink.stats()
    assert stats["rows_received"] == 6
    assert stats["trades_inserted"] == 3
    assert stats["duplicates_ignored"] == 2
    assert stats["market_data_inserted"] == 1
    assert stats["batches"] == 2
    assert stats["pending_rows"] == 0
    assert stats["database_ok"] is True
    assert stats["write_failures"] == 0
    assert stats_add_up(stats)


@pytest.mark.parametrize("size", [10, SMALL_BATCH_ROWS + 150])
def test_a_batch_holding_stored_trades_stores_the_others_once(make_sink, size):
    """Small batches are one statement; big ones COPY straight into raw_trades and, when a
    trade is stored already, go through the staging table instead: same outcome."""
    sink = make_sink(buffer_size=10_000, flush_interval=30)
    sink.start()
    sink.put([trade(n) for n in range(0, size, 2)])  # the even ones
    assert sink.flush(timeout=10)
    sink.put([trade(n) for n in range(size)] + [ticker(n) for n in range(size // 10)])
    assert sink.flush(timeout=10)
    sink.put([trade(n) for n in range(size, 2 * size)])  # new ones only, right after
    assert sink.flush(timeout=10)

    stored = RawTrade.objects.values_list("trade_id", flat=True)
    assert sorted(map(int, stored)) == list(range(2 * size))
    assert MarketData.objects.count() == size // 10
    stats = sink.stats()
    assert stats["trades_inserted"] == 2 * size
    assert stats["duplicates_ignored"] == size // 2
    assert stats["market_data_inserted"] == size // 10
    assert (stats["batches"], stats["rows_rejected"], stats["write_failures"]) == (3, 0, 0)
    assert stats_add_up(stats)


@pytest.mark.parametrize("size", [10, SMALL_BATCH_ROWS + 150])
def test_a_refused_row_in_a_batch_of_any_size_is_dropped_alone(make_sink, size):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE raw_trades ADD CONSTRAINT no_7 CHECK (trade_id <> '7')")
    try:
        sink = make_sink(buffer_size=10_000, flush_interval=30)
        sink.start()
        sink.put([trade(n) for n in range(size)] + [ticker(1)])
        assert sink.flush(timeout=10)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE raw_trades DROP CONSTRAINT no_7")

    stored = sorted(map(int, RawTrade.objects.values_list("trade_id", flat=True)))
    assert stored == [n for n in range(size) if n != 7]
    assert MarketData.objects.count() == 1
    stats = sink.stats()
    assert (stats["trades_inserted"], stats["rows_rejected"]) == (size - 1, 1)
    assert stats_add_up(stats)


def test_two_sinks_storing_the_same_trades_at_once_store_each_once(make_sink):
    """Two processes (here two sinks, two connections) racing over overlapping trades: the
    loser of each race finds the winner's rows and skips them; nothing is refused."""
    sinks = [make_sink(name=f"racer-{n}", buffer_size=10_000, flush_interval=30) for n in (1, 2)]
    for sink in sinks:
        sink.start()
    for start in range(0, 3000, 500):
        chunk = [trade(n) for n in range(start, start + 600)]  # overlapping chunks
        for sink in sinks:
            sink.put(chunk)
    for sink in sinks:
        assert sink.flush(timeout=30)

    assert RawTrade.objects.count() == 3100
    stats = [sink.stats() for sink in sinks]
    assert sum(s["trades_inserted"] for s in stats) == 3100
    assert sum(s["duplicates_ignored"] for s in stats) == 2 * 6 * 600 - 3100
    assert [s["rows_rejected"] for s in stats] == [0, 0]
    assert all(stats_add_up(s) for s in stats)


def test_an_idle_sink_commits_a_single_trade_without_waiting_for_the_flush_interval(make_sink):
    sink = make_sink(buffer_size=1000, flush_interval=30)
    sink.start()
    wait_until(lambda: sink.stats()["database_ok"], timeout=10, message="the connection")
    sink.put([trade(1)])
    # Well before the 30 s interval: the interval is a ceiling, not a wait.
    wait_until(lambda: RawTrade.objects.count() == 1, timeout=10, message="the commit")
    assert sink.stats()["batches"] == 1


def key_table_scans(writer: psycopg.Connection, reader: psycopg.Connection) -> int:
    """Whole-table scans of raw_trade_keys so far, the writer's own counted, as `reader`
    sees them (each session hands its counts to the server only now and then)."""
    writer.execute("SELECT pg_stat_force_next_flush()")
    reader.execute("SELECT pg_stat_clear_snapshot()")
    row = reader.execute(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'raw_trade_keys'"
    ).fetchone()
    return row[0]


def test_a_sink_started_on_an_empty_key_table_looks_up_keys_by_index_once_it_has_grown(database):
    """A generic plan made while the key table was empty scans the whole table for every
    trade; the sink's connection plans each execution for the table as it is now."""
    params = postgres_connection_params(database, "plans")
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("ANALYZE raw_trade_keys")  # the statistics say: empty
        backend = PostgresBackend(database, "plans")
        backend.connect()
        try:
            # psycopg prepares a statement at its 6th run, the server makes a generic plan
            # at the 6th run of a prepared statement: 20 runs are past both.
            for n in range(20):
                assert backend.write_batch([point_to_row(trade(n))], []) == 1
            other.execute(
                "INSERT INTO raw_trades (exchange, symbol, trade_id, price, size, side,"
                " timestamp) SELECT 'okx', 'ETH-USDT', g::text, 1, 1, 'buy', %s"
                " FROM generate_series(1, 20000) g",
                [T0],
            )
            before = key_table_scans(backend._conn, other)
            for n in range(20, 30):
                assert backend.write_batch([point_to_row(trade(n))], []) == 1
            assert key_table_scans(backend._conn, other) == before
        finally:
            backend.close()
    assert RawTrade.objects.filter(symbol="BTC-USDT").count() == 30


def waiting_on_a_lock(application_name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'",
            [application_name],
        )
        return cursor.fetchone()[0] > 0


def test_rows_put_while_the_writer_commits_go_together_in_the_next_batch(make_sink):
    sink = make_sink(name="burst", buffer_size=1000, flush_interval=30)
    sink.start()
    locker = psycopg.connect(**postgres_connection_params(connection.settings_dict, "locker"))
    try:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE raw_trades IN SHARE MODE")  # INSERTs wait for it
        sink.put([trade(0)])
        wait_until(
            lambda: waiting_on_a_lock("tcp-dashboard storage burst"),
            timeout=10,
            message="the writer to be busy with its first commit",
        )
        for n in range(1, 500):
            sink.put([trade(n)])  # a burst, one row at a time
        locker.execute("COMMIT")
    finally:
        locker.close()
    assert sink.flush(timeout=10)

    assert RawTrade.objects.count() == 500
    assert sink.stats()["batches"] == 2  # the first row alone, then the backlog at once


def test_stop_writes_everything_that_was_put(make_sink):
    sink = make_sink(buffer_size=1000, flush_interval=60)
    sink.start()
    sink.put([trade(n) for n in range(50)] + [ticker(n) for n in range(5)])
    sink.stop(timeout=10)

    assert RawTrade.objects.count() == 50
    assert MarketData.objects.count() == 5
    assert sink.stats()["pending_rows"] == 0
    assert spill_file_names(sink) == []


def test_a_bad_point_is_counted_and_the_points_around_it_are_stored(make_sink, caplog):
    sink = make_sink()
    sink.start()
    naive = MarketDataPoint("okx", "BTC-USDT", datetime(2024, 1, 1), DataType.TICKER, {})
    huge = trade(5, price=Decimal("1e12"))
    sink.put([trade(1), trade(2, price=27000.5), trade(3), naive, None, huge, trade(4)])
    assert sink.flush(timeout=10)

    assert sorted(RawTrade.objects.values_list("trade_id", flat=True)) == ["1", "3", "4"]
    assert MarketData.objects.count() == 0
    stats = sink.stats()
    assert stats["rows_received"] == 7
    assert stats["rows_rejected"] == 4
    assert stats_add_up(stats)
    assert "cannot be stored" in caplog.text


def test_a_row_the_database_refuses_is_dropped_alone_and_its_batch_is_stored(make_sink):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE raw_trades ADD CONSTRAINT no_666 CHECK (trade_id <> '666')")
    try:
        sink = make_sink()
        sink.start()
        sink.put([trade(n) for n in range(660, 670)] + [ticker(1)])
        assert sink.flush(timeout=10)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE raw_trades DROP CONSTRAINT no_666")

    stored = sorted(RawTrade.objects.values_list("trade_id", flat=True))
    assert stored == [str(n) for n in range(660, 670) if n != 666]
    assert MarketData.objects.count() == 1
    stats = sink.stats()
    assert (stats["trades_inserted"], stats["duplicates_ignored"]) == (9, 0)
    assert stats["rows_rejected"] == 1
    assert stats["batches"] == 1
    assert stats_add_up(stats)


def test_on_commit_gets_the_committed_points_and_the_commit_time(make_sink):
    committed = []
    sink = make_sink(on_commit=lambda points, at: committed.append((points, at)))
    sink.start()
    before = time.time()
    sink.put([trade(1), ticker(2)])
    assert sink.flush(timeout=10)

    [(points, at)] = committed
    assert before <= at <= time.time()
    assert points[0] == trade(1)
    assert points[1].data_type is DataType.TICKER
    assert points[1].timestamp == ticker(2).timestamp
    assert points[1].data["last"] == "27123.5"


def test_it_keeps_every_trade_through_a_ten_second_outage_spilling_to_disk(
    make_sink, database, proxy, caplog
):
    caplog.set_level(logging.INFO, logger="collectors.storage.sink")
    limit = 1000
    sink = make_sink(
        name="outage",
        buffer_size=100,
        flush_interval=0.05,
        max_memory_rows=limit,
        database={**database, "HOST": "127.0.0.1", "PORT": str(proxy.port)},
    )
    sink.start()
    trades_put, tickers_put = [], []
    streaming = threading.Event()
    streaming.set()

    def stream() -> None:
        n = 0
        while streaming.is_set():
            points = [trade(n + i) for i in range(10)] + [ticker(n)]
            sink.put(points)
            trades_put.extend(range(n, n + 10))
            tickers_put.append(n)
            n += 10
            time.sleep(0.01)  # a steady feed of about 1,000 trades a second

    producer = threading.Thread(target=stream)
    producer.start()
    try:
        wait_until(lambda: sink.stats()["trades_inserted"] > 500, timeout=10, message="writes")
        proxy.cut()
        cut_at = time.monotonic()
        peak_memory, saw_outage = 0, False
        while time.monotonic() - cut_at < 10:
            stats = sink.stats()
            peak_memory = max(peak_memory, stats["memory_rows"])
            saw_outage = saw_outage or not stats["database_ok"]
            time.sleep(0.05)
        spilled_during_outage = sink.stats()["spilled_rows"]
        proxy.restore()
        wait_until(lambda: sink.stats()["database_ok"], timeout=10, message="reconnection")
    finally:
        streaming.clear()
        producer.join()
    assert sink.flush(timeout=30)

    stored = list(RawTrade.objects.values_list("trade_id", flat=True))
    assert len(stored) == len(trades_put)
    assert set(stored) == {str(n) for n in trades_put}
    sequences = [row["seq"] for row in MarketData.objects.values_list("data", flat=True)]
    assert sorted(sequences) == tickers_put  # market data has no unique key: none written twice
    stats = sink.stats()
    assert saw_outage
    assert spilled_during_outage > 0
    # The spill thread catches up with put() (which never waits), well within the bound
    # beyond which put() would shed.
    assert peak_memory < 2 * limit
    assert stats["rows_shed"] == 0
    assert stats["write_failures"] > 0
    assert stats["pending_rows"] == stats["spill_files"] == 0
    assert stats_add_up(stats)
    assert spill_file_names(sink) == []
    outage_logs = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage_logs) == 1
    assert PASSWORD not in caplog.text
    assert PASSWORD not in stats["last_error"]


def test_put_never_waits_while_the_database_does_not_answer(make_sink, database, proxy):
    sink = make_sink(
        name="blackhole",
        flush_interval=0.05,
        database={
            **database,
            "HOST": "127.0.0.1",
            "PORT": str(proxy.port),
            "OPTIONS": {"connect_timeout": 2},
        },
    )
    sink.start()
    sink.put([trade(0)])
    assert sink.flush(timeout=10)

    proxy.cut(blackhole=True)
    slowest = 0.0
    for n in range(1, 201):
        started = time.monotonic()
        sink.put([trade(n)])
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    assert not sink.flush(timeout=0.2)
    proxy.restore()
    assert sink.flush(timeout=20)

    assert RawTrade.objects.count() == 201
    assert slowest < 0.5  # the writer meanwhile hangs in 2 s connection attempts
    stats = sink.stats()
    assert stats["spilled_rows"] == 0
    assert stats["last_error"]
    assert stats["database_ok"] is True


def test_spill_files_left_by_a_previous_process_are_replayed_on_start(make_sink, database, proxy):
    away = {**database, "HOST": "127.0.0.1", "PORT": str(proxy.port)}
    proxy.cut()
    previous = make_sink(name="replay", database=away)
    previous.start()
    previous.put([trade(n) for n in range(300)] + [ticker(n) for n in range(20)])
    previous.stop(timeout=1)
    assert previous.stats()["spilled_rows"] == 320
    assert RawTrade.objects.count() == 0
    # And a file whose write never finished: it is set aside, never replayed.
    rows = [point_to_row(trade(n)) for n in (900, 901)]
    unfinished = previous.spill_dir / f"{10**6:020d}-{10**6 + 2:020d}-dead.jsonl.tmp"
    unfinished.write_bytes(b"\n".join(map(orjson.dumps, rows)) + b'\n["okx", "BTC-U')
    # And a finished file with a line a crash cut short.
    cut_short = previous.spill_dir / f"{2 * 10**6:020d}-{2 * 10**6 + 2:020d}-dead.jsonl"
    cut_short.write_bytes(b"\n".join(map(orjson.dumps, rows)) + b'\n["okx", "BTC-U')

    sink = make_sink(name="replay")
    sink.start()
    assert sink.stats()["rows_recovered"] == 323
    assert sink.flush(timeout=10)
    wait_until(lambda: sink.stats()["pending_rows"] == 0, timeout=10, message="the replay")

    assert RawTrade.objects.count() == 302
    assert MarketData.objects.count() == 20
    assert spill_file_names(sink) == []
    assert [p.name for p in (sink.spill_dir / "aside").iterdir()] == [unfinished.name]
    stats = sink.stats()
    assert stats["rows_rejected"] == 1
    assert stats["temporary_files_set_aside"] == 1
    assert stats_add_up(stats)


def test_points_put_after_stop_are_spilled_for_the_next_sink(make_sink):
    late = make_sink(name="late")
    late.start()
    late.stop()
    late.put([trade(1), ticker(2)])
    assert late.stats()["spilled_rows"] == 2
    assert RawTrade.objects.count() == 0

    sink = make_sink(name="late")
    sink.start()
    wait_until(lambda: RawTrade.objects.count() == 1, timeout=10, message="the replay")
    assert MarketData.objects.count() == 1
    assert spill_file_names(sink) == []


def test_two_live_sinks_never_share_spill_files(make_sink):
    first = make_sink(name="shared")
    first.start()
    second = make_sink(name="shared")
    with pytest.raises(SpillDirectoryBusy):
        second.start()
    first.stop()
    make_sink(name="shared").start()


def test_the_sqlite_path_stores_trades_once_and_market_data(make_sink, tmp_path):
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "embedded.sqlite3")}
    wrapper = ConnectionHandler({"default": entry})["default"]
    with wrapper.schema_editor() as editor:
        editor.create_model(RawTrade)
        editor.create_model(MarketData)
    wrapper.close()

    sink = make_sink(name="embedded", database=entry)
    sink.start()
    sink.put([trade(1), trade(1), trade(2, raw=False), ticker(3)])
    assert sink.flush(timeout=10)
    sink.put([trade(2)])
    assert sink.flush(timeout=10)

    with sqlite3.connect(entry["NAME"]) as db:
        trades = db.execute(
            "SELECT trade_id, CAST(price AS TEXT), side, timestamp, raw_data, created_at"
            " FROM raw_trades ORDER BY trade_id"
        ).fetchall()
        market = db.execute("SELECT data_type, timestamp, data FROM market_data").fetchall()
    assert [t[0] for t in trades] == ["1", "2"]
    assert Decimal(trades[0][1]) == Decimal("27124.45678901")
    assert trades[0][3] == "2024-03-01 12:00:00.124456"  # Django's SQLite datetime format
    assert trades[0][4] == '{"tradeId":"1","px":"27124.45678901","tags":[1,{"a":null}]}'
    assert trades[0][5] is not None
    assert trades[1][4] is None
    assert market == [
        (
            "ticker",
            "2024-03-01 12:00:00.126456",
            '{"seq":3,"last":"27123.5","bids":[["27123.4","2"]]}',
        )
    ]
    stats = sink.stats()
    assert (stats["trades_inserted"], stats["duplicates_ignored"]) == (2, 2)
    assert stats_add_up(stats)


def test_a_starting_collector_resumes_after_the_newest_recent_stored_trade(settings):
    settings.COLLECTOR_BACKFILL_WINDOW = 600
    now = datetime.now(UTC)
    for trade_id, age in (("7", 700), ("8", 300), ("10", 60), ("9", 120)):
        RawTrade.objects.create(
            exchange="okx",
            symbol="BTC-USDT",
            trade_id=trade_id,
            price=Decimal("1"),
            size=Decimal("1"),
            side="buy",
            timestamp=now - timedelta(seconds=age),
        )
    trades = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE])

    assert newest_stored_trade(trades) == "10"
    assert newest_stored_trade(ExchangeCollectorConfig("okx", "ETH-USDT", [DataType.TRADE])) is None
    assert (
        newest_stored_trade(ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TICKER])) is None
    )
    RawTrade.objects.filter(trade_id__in=["8", "9", "10"]).delete()
    assert newest_stored_trade(trades) is None  # 700 s old: outside the window
    settings.COLLECTOR_BACKFILL_WINDOW = 0
    RawTrade.objects.filter(trade_id="7").update(timestamp=now)
    assert newest_stored_trade(trades) is None  # turned off
