"""Binance collectors over real sockets against the Binance simulator, storing into PostgreSQL."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connections

from collectors.factory import ExchangeFactory
from collectors.health_rule import restart_cause
from collectors.hosting.runner import run_collectors
from collectors.manager import CollectorManager
from collectors.types import DataType
from marketdata.models import MarketData, RawTrade
from tests.helpers import binance_trade, run, simulated_market, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_TYPE = (DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER, DataType.CANDLE)


def started(config, sink):
    collector = ExchangeFactory.create_collector(config)
    collector.sink = sink
    assert run(collector.start()) is True
    return collector


def stored_ids(symbol="BTCUSDT") -> list[str]:
    rows = RawTrade.objects.filter(exchange="binance", symbol=symbol)
    return sorted(rows.values_list("trade_id", flat=True), key=int)


def sent_ids(binance, channel="aggTrade", symbol="BTCUSDT") -> list[str]:
    if channel == "aggTrade":
        return [str(item["a"]) for item in binance.simulator.sent_aggregates(symbol)]
    return [str(item["id"]) for item in binance.simulator.sent_trades(symbol)]


def made_ids(binance, channel="aggTrade", symbol="BTCUSDT") -> list[str]:
    if channel == "aggTrade":
        return [str(item["a"]) for item in binance.simulator.generated_aggregates(symbol)]
    return [str(item["id"]) for item in binance.simulator.generated_trades(symbol)]


def test_trades_of_both_channels_are_stored_with_the_takers_side(binance, sink):
    trades = started(binance.config(channels={"trades": "trade"}), sink)
    aggregates = started(binance.config("ETHUSDT"), sink)
    wait_until(lambda: len(sent_ids(binance, "trade")) >= 30, 10, message="30 trades")
    wait_until(lambda: len(sent_ids(binance, symbol="ETHUSDT")) >= 30, 10, message="30 aggTrades")
    run(trades.stop())
    run(aggregates.stop())
    sink.flush(10)
    for symbol, key in (("BTCUSDT", "id"), ("ETHUSDT", "a")):
        sent = (
            binance.simulator.sent_trades(symbol)
            if key == "id"
            else binance.simulator.sent_aggregates(symbol)
        )
        rows = {row.trade_id: row for row in RawTrade.objects.filter(symbol=symbol)}
        assert sorted(rows, key=int) == sorted((str(item[key]) for item in sent), key=int)
        for item in sent:
            expected, row = binance_trade(item, key), rows[str(item[key])]
            assert (row.price, row.size) == (Decimal(expected["price"]), Decimal(expected["size"]))
            assert row.side == expected["side"]  # m true: the buyer made, so a sell
        assert {row.side for row in rows.values()} == {"buy", "sell"}
    assert trades.get_status()["statistics"]["errors"] == 0


def test_every_stream_is_parsed_and_stored(binance, sink):
    channels = {
        "trades": "aggTrade",
        "orderbook": "depth@100ms",
        "ticker": "ticker",
        "book_ticker": "bookTicker",
        "candle": "kline_1s",
    }
    full = started(binance.config(data_types=EVERY_TYPE, channels=channels), sink)
    partial = started(
        binance.config("ETHUSDT", (DataType.ORDERBOOK,), channels={"orderbook": "depth5@100ms"}),
        sink,
    )

    def stored(symbol, data_type, channel=None):
        rows = MarketData.objects.filter(symbol=symbol, data_type=data_type)
        return rows.filter(data__channel=channel) if channel else rows

    wait_until(
        lambda: (
            sink.flush(1)
            and stored("BTCUSDT", "orderbook").exists()
            and stored("BTCUSDT", "ticker", "ticker").exists()
            and stored("BTCUSDT", "ticker", "bookTicker").exists()
            and stored("BTCUSDT", "candle").filter(data__confirmed=True).exists()
            and stored("ETHUSDT", "orderbook").exists()
        ),
        20,
        message="every stream stored, and a closed kline",
    )
    run(full.stop())
    run(partial.stop())
    sink.flush(10)
    book = stored("BTCUSDT", "orderbook").last()
    assert book.data["channel"] == "depth@100ms"
    assert Decimal(book.data["bids"][0][0]) < Decimal(book.data["asks"][0][0])
    five = stored("ETHUSDT", "orderbook").last()
    assert five.data["channel"] == "depth5@100ms" and len(five.data["bids"]) == 5
    ticker = stored("BTCUSDT", "ticker", "ticker").last()
    assert Decimal(ticker.data["last"]) == Decimal(ticker.data["raw"]["c"])
    candles = stored("BTCUSDT", "candle")
    assert all(c.data["confirmed"] == c.data["raw"]["k"]["x"] for c in candles)
    assert all(c.timestamp.microsecond == 0 for c in candles)
    assert full.get_status()["statistics"]["errors"] == 0
    assert partial.get_status()["statistics"]["errors"] == 0


def test_a_depth_gap_forces_a_fresh_rest_snapshot(binance, sink):
    config = binance.config(data_types=(DataType.ORDERBOOK,), channels={"orderbook": "depth@100ms"})
    collector = started(config, sink)
    wait_until(lambda: collector.counters()["points"] >= 5, 10, message="book updates")
    requests = binance.simulator.stats()["rest_requests"]
    binance.fault("depth_gap")
    wait_until(lambda: "sequence break" in collector.last_error, 10, message="the gap seen")
    points = collector.counters()["points"]
    wait_until(lambda: collector.counters()["points"] >= points + 5, 10, message="book again")
    run(collector.stop())
    assert binance.simulator.stats()["rest_requests"] > requests  # a new /api/v3/depth
    assert "fetching a new snapshot" in collector.last_error
    assert collector.get_status()["statistics"]["errors"] == 1
    assert collector.total_reconnects == 0  # the stream stays; only the book is rebuilt
    sink.flush(10)
    # every stored book is whole: best bid below best ask
    for book in MarketData.objects.filter(symbol="BTCUSDT", data_type="orderbook"):
        assert Decimal(book.data["bids"][0][0]) < Decimal(book.data["asks"][0][0])


def test_the_24_hour_cut_is_met_by_an_overlapping_successor_losing_and_doubling_nothing(sink):
    # The simulator cuts every connection after 3 s; the collector replaces it after 1.5 s.
    with simulated_market("binance", seed=5, rate=50.0, connection_lifetime=3.0) as binance:
        collector = ExchangeFactory.create_collector(binance.config(connection_lifetime=1.5))
        collector.sink = sink
        delivered = []
        collector.add_data_callback(DataType.TRADE, delivered.append)
        assert run(collector.start()) is True
        wait_until(lambda: binance.simulator.stats()["connections"] >= 4, 15, message="3 moves")
        binance.pause()
        run(collector.stop())
        sink.flush(10)
        stats = binance.simulator.stats()

    made = made_ids(binance)
    assert stored_ids() == sorted(made, key=int)  # nothing lost
    assert sorted((p.data["trade_id"] for p in delivered), key=int) == sorted(made, key=int)
    assert stats["lifetime_cuts"] == 0  # every connection was replaced before its cut
    assert collector.total_reconnects == 0
    assert collector.get_status()["statistics"]["errors"] == 0
    assert stats["rate_limit_closes"] == 0  # within 5 messages a second throughout


def test_a_server_shutdown_event_moves_to_a_new_connection_first(binance, sink):
    collector = started(binance.config(), sink)
    wait_until(lambda: len(sent_ids(binance)) >= 10, 10, message="trades")
    binance.fault("shutdown")
    wait_until(lambda: binance.simulator.stats()["connections"] >= 2, 10, message="a successor")
    before = len(sent_ids(binance))
    wait_until(lambda: len(sent_ids(binance)) >= before + 20, 10, message="more trades")
    binance.pause()
    run(collector.stop())
    sink.flush(10)
    assert collector.total_reconnects == 0
    assert stored_ids() == sorted(made_ids(binance), key=int)


@pytest.mark.parametrize("channel", ["aggTrade", "trade"])
def test_trades_made_while_the_connection_was_down_are_filled_in_over_rest(channel, sink):
    # 2.5 s without a connection at 400 trades a second: far more than the 100 recent
    # trades, so the rest comes from a page of aggTrades / historicalTrades by fromId
    with simulated_market("binance", seed=11, rate=400.0, linger=10.0) as binance:
        config = binance.config(channels={"trades": channel}, reconnect_delay=2.5)
        collector = started(config, sink)
        wait_until(lambda: len(sent_ids(binance, channel)) >= 50, 10, message="trades")
        binance.fault("drop")
        wait_until(lambda: collector.total_reconnects >= 1, 10, message="a reconnect")
        wait_until(lambda: collector.status == "running", 15, message="running again")
        before = len(sent_ids(binance, channel))
        wait_until(lambda: len(sent_ids(binance, channel)) >= before + 50, 10, message="more")
        binance.pause()
        run(collector.stop())
        sink.flush(10)
        stats = binance.simulator.stats()

    made, sent = made_ids(binance, channel), set(sent_ids(binance, channel))
    assert len([trade_id for trade_id in made if trade_id not in sent]) >= 250
    assert stored_ids() == sorted(made, key=int)
    assert stats["rest_requests"] >= 1 + 2 + 1  # symbol check, recent twice, a page
    statistics = collector.get_status()["statistics"]
    assert statistics["errors"] == 1  # the dropped connection, and no backfill failure


def test_a_gap_too_long_for_the_pages_allowed_is_reported_with_its_ids(sink):
    with simulated_market("binance", seed=12, rate=400.0, linger=10.0) as binance:
        config = binance.config(reconnect_delay=2.0, trade_backfill_pages=0)
        collector = started(config, sink)
        wait_until(lambda: len(sent_ids(binance)) >= 20, 10, message="trades")
        binance.fault("drop")
        wait_until(lambda: "may be missing" in collector.last_error, 15, message="the report")
        run(collector.stop())
    assert "more than 0 pages: trade ids" in collector.last_error


def test_a_collector_started_anew_fills_in_from_the_newest_stored_trade(sink):
    with simulated_market("binance", seed=13, rate=300.0, linger=15.0) as binance:
        configs = [binance.config()]
        run_collectors(configs, duration=1.5, sink=sink)
        sink.flush(10)
        assert len(stored_ids()) >= 100
        time.sleep(3)  # no collector: ~900 trades, far more than the 100 recent ones
        stop = threading.Event()

        def collect_again() -> None:
            try:
                run_collectors(configs, stop=stop, sink=sink)
            finally:
                connections.close_all()

        second = threading.Thread(target=collect_again)
        second.start()
        try:
            wait_until(
                lambda: len(stored_ids()) >= len(made_ids(binance)) - 50, 15, message="filled in"
            )
            binance.pause()
        finally:
            stop.set()
            second.join(timeout=30)
        sink.flush(10)
    assert stored_ids() == sorted(made_ids(binance), key=int)


def test_stored_trades_of_the_other_id_space_are_reported_not_paged(binance, sink):
    config = binance.config()
    collector = ExchangeFactory.create_collector(config)
    collector.sink = sink
    # a trade id (as the `trade` channel stores them) is far above every aggregate id
    collector.adapter.resume_after_trade(str(binance.simulator.clock() * 1000))
    assert run(collector.start()) is True
    wait_until(lambda: "id space" in collector.last_error, 10, message="the report")
    run(collector.stop())
    assert "must not switch trade channels" in collector.last_error


def test_a_symbol_binance_does_not_list_is_a_permanent_error_and_not_restarted(binance, sink):
    config = binance.config("NOSUCHCOIN", (DataType.TICKER,))
    collector = ExchangeFactory.create_collector(config)
    manager = CollectorManager(sink=sink, check_interval=0.2)
    manager.add_collector(collector)
    run(manager.start())
    wait_until(lambda: collector.status == "error", 10, message="the error")
    assert "-1121: Invalid symbol." in collector.last_error
    assert "does not exist on binance" in collector.last_error
    assert restart_cause(collector.get_status(), is_running=collector.is_running) is None
    health = collector.get_health_status()
    assert not health["is_healthy"] and health["issues"] == [f"in error: {collector.last_error}"]
    time.sleep(1.0)  # five of the manager's checks
    assert collector.restarts == 0 and collector.status == "error"
    assert binance.simulator.stats()["connections"] == 1
    run(manager.stop())


def test_rate_limits_and_ip_bans_give_a_clear_error_and_are_waited_out(binance, sink):
    binance.fault("ip_ban", seconds=30)
    collector = started(binance.config(), sink)
    wait_until(lambda: "banned" in collector.last_error, 10, message="the ban reported")
    assert "HTTP 418" in collector.last_error and "retry after" in collector.last_error
    refusals = binance.simulator.stats()["rest_refusals"]
    binance.fault("drop")  # the next connection does not ask again while banned
    wait_until(lambda: collector.total_reconnects >= 1, 10, message="a reconnect")
    wait_until(lambda: collector.status == "running", 10, message="running again")
    assert binance.simulator.stats()["rest_refusals"] == refusals
    assert "not asked" in collector.last_error
    run(collector.stop())

    binance.simulator.in_loop(lambda: setattr(binance.simulator, "_ban_until", 0.0))
    binance.fault("rate_limit", count=1, seconds=1)
    again = started(binance.config("ETHUSDT"), sink)
    wait_until(lambda: "HTTP 429" in again.last_error, 10, message="too many requests")
    assert "too many requests" in again.last_error
    run(again.stop())


def test_server_pings_are_answered_and_a_quiet_connection_is_kept(sink):
    with simulated_market("binance", seed=3, rate=5.0, ping_interval=0.3, pong_timeout=0.5) as b:
        collector = started(b.config(ping_interval=0.2, pong_timeout=0.2), sink)
        b.pause()  # nothing but pings for a while
        wait_until(lambda: collector.counters()["pings_answered"] >= 5, 10, message="5 pings")
        run(collector.stop())
        assert b.simulator.stats()["connections"] == 1
    assert collector.counters()["pings_sent"] == 0  # Binance pings; the collector answers
    assert collector.total_reconnects == 0


def test_malformed_frames_are_counted_and_survived(binance, sink):
    collector = started(binance.config(), sink)
    binance.fault("malformed", count=4)
    wait_until(lambda: collector.counters()["errors"] >= 4, 10, message="4 errors")
    before = len(sent_ids(binance))
    wait_until(lambda: len(sent_ids(binance)) >= before + 10, 10, message="more trades")
    run(collector.stop())
    assert collector.total_reconnects == 0
