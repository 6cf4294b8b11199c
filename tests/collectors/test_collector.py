"""Collectors over real sockets against the exchange simulators, storing into real PostgreSQL.

Tests of exchange-neutral behaviour take `market` and run once per exchange."""

import contextlib
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, connections

from collectors.factory import ExchangeFactory
from collectors.hosting.runner import run_collectors
from collectors.manager import CollectorManager
from collectors.simulators.okx import OkxSimulator
from collectors.storage.sink import StorageSink
from collectors.types import DataType
from marketdata.models import MarketData, RawTrade
from tests.helpers import OkxMarket, make_config, run, simulated_market, wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

STATUS_KEYS = {
    "exchange": str,
    "status": str,
    "should_be_running": bool,
    "symbols": list,
    "data_types": list,
    "auto_restart": bool,
    "health": dict,
    "statistics": dict,
}
HEALTH_KEYS = {
    "time_since_heartbeat": float,
    "time_since_data": float,
    "max_silence_duration": float,
}
STATISTICS_KEYS = {
    "messages_received": int,
    "messages_processed": int,
    "errors": int,
    "restarts": int,
    "uptime_seconds": float,
    "reconnect_attempts": int,
    "last_message_time": str,
    "connection_uptime": str,
    "last_error": str,
    "last_restart_time": str,
}
HEALTH_STATUS_KEYS = {
    "is_healthy": bool,
    "issues": list,
    "status": str,
    "last_heartbeat": str,
    "last_data_received": str,
    "should_be_running": bool,
    "is_running": bool,
}


def started(config, sink):
    collector = ExchangeFactory.create_collector(config)
    collector.sink = sink
    assert run(collector.start()) is True
    return collector


def stored_trades(symbol="BTC-USDT"):
    return list(RawTrade.objects.filter(exchange="okx", symbol=symbol).order_by("trade_id"))


def assert_every_market_trade_stored_once(market, symbol=None):
    """Every trade the market's simulator sent is stored once, with its exact values."""
    symbol = symbol or market.symbol
    sent = market.sent(symbol)
    assert sent, "the simulator sent no trade"
    rows = {
        row.trade_id: row
        for row in RawTrade.objects.filter(exchange=market.exchange, symbol=symbol)
    }
    assert len(rows) == RawTrade.objects.filter(symbol=symbol).count()
    missing = [t["trade_id"] for t in sent if t["trade_id"] not in rows]
    assert not missing, f"{len(missing)} trades lost, e.g. {missing[:5]}"
    for item in sent:
        row = rows[item["trade_id"]]
        assert (row.price, row.size) == (Decimal(item["price"]), Decimal(item["size"]))
        assert row.side == item["side"]
        assert row.timestamp == datetime.fromtimestamp(item["ts"] / 1000, UTC)
    return len(sent)


def assert_every_trade_made_stored_once(simulator, unsent_at_least: int, symbol="BTC-USDT"):
    """Every trade the simulator made is stored once, at least that many it never sent."""
    generated = [trade["tradeId"] for trade in simulator.generated_trades(symbol)]
    sent = {trade["tradeId"] for trade in simulator.sent_trades(symbol)}
    assert len([trade_id for trade_id in generated if trade_id not in sent]) >= unsent_at_least
    stored = [row.trade_id for row in stored_trades(symbol)]
    assert sorted(stored) == sorted(generated)  # the unique key keeps each once


@contextlib.contextmanager
def busy_simulator(seed: int, linger: float):
    """A market of 200 trades a second that trades on for `linger` s with no one connected."""
    simulator = OkxSimulator(seed=seed, rate=200.0, linger=linger)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_it_stores_every_trade_with_exact_values(market, sink):
    collector = started(market.config(), sink)
    wait_until(lambda: len(market.sent()) >= 40, 10, message="40 trades")
    market.pause()
    run(collector.stop())
    sink.flush(10)
    count = assert_every_market_trade_stored_once(market)
    assert collector.get_status()["statistics"]["errors"] == 0
    # each trade is delivered once, backfilled or streamed
    assert collector.counters()["points"] == count
    assert len(market.generated()) == count


def test_raw_payloads_are_left_out_when_store_raw_data_is_off(simulator, sink):
    config = make_config(simulator)
    config.store_raw_data = False
    collector = started(config, sink)
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= 5, 10, message="5 trades")
    run(collector.stop())
    sink.flush(10)
    assert stored_trades()
    assert all(row.raw_data is None for row in stored_trades())


def test_every_channel_is_parsed_and_stored(simulator, sink):
    data_types = (DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER, DataType.CANDLE)
    spot = started(make_config(simulator, data_types=data_types), sink)
    books = make_config(simulator, "ETH-USDT", (DataType.ORDERBOOK,))
    books.custom_params["channels"] = {"orderbook": "books"}
    full_book = started(books, sink)

    def seen(data_type, symbol="BTC-USDT"):
        return MarketData.objects.filter(symbol=symbol, data_type=data_type).exists()

    wait_until(
        lambda: (
            sink.flush(1)
            and all(seen(t) for t in ("orderbook", "ticker", "candle"))
            and seen("orderbook", "ETH-USDT")
        ),
        20,
        message="every channel stored",
    )
    run(spot.stop())
    run(full_book.stop())
    sink.flush(10)
    assert_every_market_trade_stored_once(OkxMarket(simulator))
    ticker = MarketData.objects.filter(symbol="BTC-USDT", data_type="ticker").last()
    assert Decimal(ticker.data["last"]) == Decimal(ticker.data["raw"]["last"])
    candle = MarketData.objects.filter(symbol="BTC-USDT", data_type="candle").last()
    assert candle.data["interval"] == "1m"
    assert candle.timestamp.second == 0 and candle.timestamp.microsecond == 0
    book = MarketData.objects.filter(symbol="ETH-USDT", data_type="orderbook").last()
    assert book.data["channel"] == "books"
    best_bid, best_ask = Decimal(book.data["bids"][0][0]), Decimal(book.data["asks"][0][0])
    assert best_bid < best_ask
    assert full_book.get_status()["statistics"]["errors"] == 0


def test_a_dropped_connection_is_followed_by_a_reconnect_without_loss(market, sink):
    collector = started(market.config(), sink)
    wait_until(lambda: len(market.sent()) >= 20, 10, message="20 trades")
    market.fault("drop")
    wait_until(lambda: collector.total_reconnects >= 1, 10, message="a reconnect")
    wait_until(lambda: collector.status == "running", 10, message="running again")
    before = len(market.sent())
    wait_until(lambda: len(market.sent()) >= before + 20, 10, message="more trades")
    run(collector.stop())
    sink.flush(10)
    assert market.simulator.stats()["subscriptions"] >= 2  # subscribed again after the reconnect
    assert_every_market_trade_stored_once(market)


def collect_through_a_reconnect(simulator, sink, reconnect_delay: float, trades: int):
    """Collect `trades` trades, lose the connection for `reconnect_delay` s, collect as many
    again, then stop the market (so every trade made was sent or fetched) and the collector."""
    collector = started(make_config(simulator, reconnect_delay=reconnect_delay), sink)
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= trades, 10, message="trades")
    simulator.fault("drop")
    wait_until(lambda: collector.total_reconnects >= 1, 10, message="a reconnect")
    wait_until(lambda: collector.status == "running", 15, message="running again")
    before = len(simulator.sent_trades("BTC-USDT"))
    wait_until(
        lambda: len(simulator.sent_trades("BTC-USDT")) >= before + trades, 10, message="more"
    )
    simulator.fault("pause", inst_id="BTC-USDT")
    run(collector.stop())
    sink.flush(10)
    return collector


@pytest.mark.parametrize("exchange", ["okx", "binance"])
def test_trades_made_while_disconnected_are_stored_once_after_the_reconnect(exchange, sink):
    # 1.2 s without a connection at 50 trades a second: well within the 100 fetched; the
    # markets trade on for 10 s after the last subscriber leaves
    with simulated_market(exchange, seed=7, rate=50.0, linger=10.0) as market:
        collector = started(market.config(reconnect_delay=1.2), sink)
        wait_until(lambda: len(market.sent()) >= 20, 10, message="trades")
        market.fault("drop")
        wait_until(lambda: collector.total_reconnects >= 1, 10, message="a reconnect")
        wait_until(lambda: collector.status == "running", 15, message="running again")
        before = len(market.sent())
        wait_until(lambda: len(market.sent()) >= before + 20, 10, message="more")
        market.pause()
        run(collector.stop())
        sink.flush(10)
    sent = {trade["trade_id"] for trade in market.sent()}
    made = [trade["trade_id"] for trade in market.generated()]
    assert len([trade_id for trade_id in made if trade_id not in sent]) >= 20
    stored = RawTrade.objects.filter(exchange=market.exchange, symbol=market.symbol)
    assert sorted(stored.values_list("trade_id", flat=True)) == sorted(made)


def test_a_long_outage_of_a_busy_market_is_paged_back_over_rest_without_a_gap(sink):
    # 2.5 s without a connection at 200 trades a second: far more than the 100 recent
    # trades, so the rest must come from OKX's history-trades pages
    with busy_simulator(seed=11, linger=10.0) as simulator:
        collector = collect_through_a_reconnect(simulator, sink, reconnect_delay=2.5, trades=50)
        stats = simulator.stats()

    assert_every_trade_made_stored_once(simulator, unsent_at_least=250)
    assert stats["rest_requests"] >= 1 + 1 + 2  # recent trades twice, older pages at least 2
    statistics = collector.get_status()["statistics"]
    assert statistics["errors"] == 1  # the dropped connection, and no backfill failure
    assert "closed by the server" in statistics["last_error"]


def test_a_collector_started_anew_fills_in_from_the_newest_stored_trade(sink):
    # A new run (as after a failover or a restart of `collect`) knows its market's trades
    # only from the database: 3 s without a collector at 200 trades a second is far more
    # than the 100 recent trades.
    with busy_simulator(seed=13, linger=15.0) as simulator:
        configs = [make_config(simulator)]
        run_collectors(configs, duration=1.5, sink=sink)
        sink.flush(10)
        stored_before = len(stored_trades())
        assert stored_before >= 100
        time.sleep(3)
        stop = threading.Event()

        def collect_again() -> None:
            try:
                run_collectors(configs, stop=stop, sink=sink)
            finally:
                connections.close_all()  # this thread's

        second = threading.Thread(target=collect_again)
        second.start()
        try:
            wait_until(
                lambda: len(stored_trades()) >= len(simulator.generated_trades("BTC-USDT")) - 50,
                15,
                message="the gap filled in",
            )
            simulator.fault("pause", inst_id="BTC-USDT")  # every trade made was sent or fetched
        finally:
            stop.set()
            second.join(timeout=30)
        sink.flush(10)
        stats = simulator.stats()

    assert_every_trade_made_stored_once(simulator, unsent_at_least=350)
    assert stats["rest_requests"] >= 1 + 1 + 3  # recent trades twice, older pages at least 3


def test_a_missing_pong_triggers_a_reconnect(simulator, sink):
    collector = started(make_config(simulator, ping_interval=0.5, pong_timeout=0.5), sink)
    simulator.fault("stall", seconds=3)
    wait_until(lambda: collector.total_reconnects >= 1, 10, message="a reconnect")
    assert "pong" in collector.last_error
    wait_until(lambda: collector.status == "running", 15, message="running again")
    run(collector.stop())


def test_a_bad_checksum_triggers_a_resync(simulator, sink):
    config = make_config(simulator, "ETH-USDT", (DataType.ORDERBOOK,))
    config.custom_params["channels"] = {"orderbook": "books"}
    collector = started(config, sink)
    wait_until(lambda: collector.counters()["points"] >= 5, 10, message="book updates")
    simulator.fault("bad_checksum")
    wait_until(lambda: "checksum" in collector.last_error, 10, message="a checksum error")
    points = collector.counters()["points"]
    wait_until(lambda: collector.counters()["points"] >= points + 5, 10, message="book again")
    run(collector.stop())
    assert collector.get_status()["statistics"]["errors"] == 1


def test_malformed_frames_are_counted_and_survived(market, sink):
    collector = started(market.config(), sink)
    market.fault("malformed", count=5)
    wait_until(lambda: collector.counters()["errors"] >= 5, 10, message="5 errors")
    before = len(market.sent())
    wait_until(lambda: len(market.sent()) >= before + 10, 10, message="more trades")
    run(collector.stop())
    sink.flush(10)
    assert collector.total_reconnects == 0
    assert collector.last_error
    assert_every_market_trade_stored_once(market)


def test_an_upgrade_notice_moves_to_a_new_connection_first(market, sink):
    collector = ExchangeFactory.create_collector(market.config())
    collector.sink = sink
    delivered = []
    collector.add_data_callback(DataType.TRADE, lambda point: delivered.append(point))
    assert run(collector.start()) is True
    wait_until(lambda: len(market.sent()) >= 10, 10, message="trades")
    market.fault(market.notice_fault)  # OKX: notice 64008; Binance: serverShutdown
    wait_until(lambda: market.simulator.stats()["connections"] >= 2, 10, message="a second link")
    before = len(market.sent())
    wait_until(lambda: len(market.sent()) >= before + 30, 15, message="more trades")
    run(collector.stop())
    sink.flush(10)
    assert collector.total_reconnects == 0
    count = assert_every_market_trade_stored_once(market)
    # both connections saw the trades of the overlap; consumers saw each trade once
    assert sorted(p.data["trade_id"] for p in delivered) == sorted(
        t["trade_id"] for t in market.sent()
    )
    assert len(delivered) == count


def test_status_and_health_have_the_spec_keys_and_true_counters(market, sink):
    collector = started(market.config(), sink)
    wait_until(lambda: len(market.sent()) >= 10, 10, message="trades")
    status = collector.get_status()
    for schema, value in (
        (STATUS_KEYS, status),
        (HEALTH_KEYS, status["health"]),
        (STATISTICS_KEYS, status["statistics"]),
        (HEALTH_STATUS_KEYS, collector.get_health_status()),
    ):
        assert set(value) == set(schema)
        for key, kind in schema.items():
            assert isinstance(value[key], kind), (key, value[key])
    assert status["status"] == "running"
    assert status["symbols"] == [market.symbol] and status["data_types"] == ["trade"]
    datetime.fromisoformat(status["statistics"]["last_message_time"])
    assert collector.get_health_status()["is_healthy"] is True
    run(collector.stop())
    sent = market.simulator.stats()["frames_sent"]
    stats = collector.get_status()["statistics"]
    assert stats["messages_received"] == sent
    assert stats["messages_processed"] == sent
    assert collector.get_status()["status"] == "stopped"
    assert collector.get_health_status()["is_running"] is False


def test_silence_makes_the_collector_unhealthy_with_a_named_issue(market, sink):
    collector = started(market.config(max_silence_duration=1.0), sink)
    market.pause()
    wait_until(lambda: not collector.get_health_status()["is_healthy"], 10, message="unhealthy")
    assert any("no data" in issue for issue in collector.get_health_status()["issues"])
    run(collector.stop())


def test_the_manager_restarts_a_collector_that_gave_up(simulator, sink):
    config = make_config(simulator, max_reconnect_attempts=1, ping_interval=0.3, pong_timeout=0.3)
    collector = ExchangeFactory.create_collector(config)
    manager = CollectorManager(sink=sink, check_interval=0.5)
    manager.add_collector(collector)
    assert run(manager.start())
    simulator.fault("stall", seconds=2)
    wait_until(lambda: collector.restarts >= 1, 20, message="a restart")
    wait_until(lambda: collector.status == "running", 20, message="running again")
    status = manager.get_status()
    assert status["collectors"]["okx:BTC-USDT"]["statistics"]["restarts"] >= 1
    assert manager.list_collectors() == ["okx:BTC-USDT"]
    run(manager.stop())


OUTAGE = 10.0  # seconds


def test_a_database_outage_loses_no_trade_and_no_ticker(market, tmp_path):
    """Exchange -> collector -> sink -> PostgreSQL, with PostgreSQL cut off for 10 s."""
    settings = connection.settings_dict
    with TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)) as proxy:
        sink = StorageSink(
            name="outage",
            buffer_size=100,
            flush_interval=0.05,
            retry_delay=0.2,
            spill_dir=tmp_path,
            database={**settings, "HOST": "127.0.0.1", "PORT": str(proxy.port)},
        )
        sink.start()
        config = market.config(data_types=(DataType.TRADE, DataType.TICKER))
        collector = started(config, sink)
        try:
            wait_until(lambda: sink.stats()["trades_inserted"] >= 20, 10, message="stored")
            proxy.cut()
            cut_at, sent_before = time.monotonic(), len(market.sent())
            wait_until(lambda: not sink.stats()["database_ok"], 10, message="the outage seen")
            time.sleep(max(0.0, cut_at + OUTAGE - time.monotonic()))
            # the exchange went on trading, and the collector on receiving
            assert len(market.sent()) >= sent_before + 100
            assert collector.get_status()["status"] == "running"
            proxy.restore()
            wait_until(lambda: sink.stats()["database_ok"], 15, message="reconnection")
            run(collector.stop())
            assert sink.flush(timeout=30)
        finally:
            sink.stop(timeout=10)

    count = assert_every_market_trade_stored_once(market)
    tickers = MarketData.objects.filter(symbol=market.symbol, data_type="ticker").count()
    assert tickers == collector.counters()["points"] - count
    stats = sink.stats()
    assert stats["write_failures"] > 0
    assert stats["pending_rows"] == stats["spill_files"] == 0
