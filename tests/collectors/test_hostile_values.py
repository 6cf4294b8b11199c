"""Values no market makes, pushed by an exchange simulator over a real socket to a collector
storing in PostgreSQL with live candles: refused, counted and logged, never stored, served
or aggregated (issue 9, cases 3 and 4).

The simulator's own trades are paused, so every trade on the wire is one of the test's.
"""

import time
from datetime import UTC, datetime, timedelta
from itertools import count

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.db.models import Q
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collectors.factory import ExchangeFactory
from collectors.hosting.live_candles import LiveCandles
from collectors.manager import CollectorManager
from collectors.simulators.okx import OkxSimulator
from collectors.times import from_epoch_ms
from collectors.types import DataType
from marketdata.candles import Trade, bucket_end, ceil_boundary, fold_trades
from marketdata.models import Candle, RawTrade
from tests.helpers import make_config, run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOL = "BTC-USDT"
HUNDRED_YEARS_MS = 100 * 365 * 86_400_000
THIRTY_DIGITS = "123456789012345678901234567890"
_ids = count(1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def quiet_simulator():
    """The OKX simulator with BTC-USDT's own trades paused."""
    sim = OkxSimulator(seed=7, rate=50.0)
    sim.start()
    sim.fault("pause", inst_id=SYMBOL)
    yield sim
    sim.stop()


@pytest.fixture
def api():
    user = get_user_model().objects.create_user("hostile-reader", password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def push(sim, frame: bytes) -> None:
    """Push one frame to every connected client, as the exchange would."""
    sim.in_loop(lambda: [client.send_many([frame]) for client in sim.clients()])


def send(sim: OkxSimulator, channel: str, items: list) -> None:
    push(sim, orjson.dumps({"arg": {"channel": channel, "instId": SYMBOL}, "data": items}))


def trade(ts: int, **fields) -> dict:
    item = {"instId": SYMBOL, "tradeId": str(next(_ids)), "px": "50000.5", "sz": "0.01"}
    return {**item, "side": "buy", "ts": str(ts), **fields}


def trade_frame(market, ts: int) -> tuple[str, bytes]:
    """A trade stamped `ts` as the market's exchange pushes it: (its id, the frame)."""
    number = next(_ids)
    if market.exchange == "okx":
        item = {"instId": market.symbol, "tradeId": str(number), "px": "50000.5", "sz": "0.01"}
        item.update(side="buy", ts=str(ts))
        return str(number), orjson.dumps(
            {"arg": {"channel": "trades", "instId": market.symbol}, "data": [item]}
        )
    data = {"e": "aggTrade", "E": ts, "s": market.symbol, "a": number, "p": "50000.5"}
    data.update(q="0.01", f=number, l=number, T=ts, m=False, M=True)
    return str(number), orjson.dumps({"stream": f"{market.symbol.lower()}@aggTrade", "data": data})


def collecting(sink, config):
    """A running collector, with live candles of every live timeframe; (manager, collector,
    live, its aggregator)."""
    live = LiveCandles()
    manager = CollectorManager(sink=sink)
    collector = ExchangeFactory.create_collector(config)
    manager.add_collector(collector)
    live.attach(collector)
    assert run(manager.start())
    aggregator = live._aggregators[collector.name]
    # the aggregator leaves intervals that began before it to the rollup: start after it
    first_whole_second = ceil_boundary(aggregator.since, "1s")
    wait_until(lambda: datetime.now(UTC) > first_whole_second, 5, message="the first second")
    return manager, collector, live, aggregator


def stored_trades(symbol: str = SYMBOL) -> list[RawTrade]:
    return list(RawTrade.objects.filter(symbol=symbol).order_by("id"))


def test_one_trade_a_hundred_years_ahead_leaves_candles_storage_and_the_api_as_they_were(
    market, sink, settings, api, caplog
):
    settings.CANDLE_GRACE = 0.2
    market.pause()  # every trade on the wire is one of the test's
    sim, symbol = market.simulator, market.symbol
    manager, collector, live, aggregator = collecting(sink, market.config(trade_backfill=0))
    try:
        before = []
        for _ in range(25):
            trade_id, frame = trade_frame(market, now_ms())
            before.append(trade_id)
            push(sim, frame)
        out_of_window = [now_ms() + HUNDRED_YEARS_MS, -1, 0]
        for ts in out_of_window:
            push(sim, trade_frame(market, ts)[1])
        after, stamps = [], []
        for _ in range(5):  # 50 trades over a second and a half: several 1s candles
            for _ in range(10):
                stamps.append(now_ms())
                trade_id, frame = trade_frame(market, stamps[-1])
                after.append(trade_id)
                push(sim, frame)
            time.sleep(0.3)
        last_end = bucket_end(from_epoch_ms(stamps[-1]), "1s")
        wait_until(lambda: len(stored_trades(symbol)) >= 75, 20, message="75 trades stored")
        wait_until(
            lambda: Candle.objects.filter(timeframe="1s", is_final=True, timestamp=last_end),
            20,
            message="the 1s candle of the last trade, final",
        )
    finally:
        run(manager.stop())
        live.stop()
        sink.flush(10)

    # the three trades out of the window were refused, counted and logged; none stored
    stored_ids = [row.trade_id for row in stored_trades(symbol)]
    assert sorted(stored_ids, key=int) == before + after
    assert collector.counters()["errors"] == 3
    refusals = [r.message for r in caplog.records if "item skipped: " in r.message]
    assert len(refusals) == 3
    for ts in out_of_window:
        assert any(f" {ts} is " in message and "receive time" in message for message in refusals)

    # the 50 later trades made their candles: each 1s candle they fall in is final and
    # holds exactly the trades stored for it
    rows = stored_trades(symbol)
    expected = {
        c.timestamp: c
        for c in fold_trades(
            [Trade(r.timestamp, r.price, r.size, r.trade_id, r.id) for r in rows],
            market.exchange,
            symbol,
            "1s",
        )
    }
    ends = {bucket_end(from_epoch_ms(ts), "1s") for ts in stamps}
    finals = {
        c.timestamp: c for c in Candle.objects.filter(symbol=symbol, timeframe="1s", is_final=True)
    }
    assert len(ends) >= 2
    for end in ends:
        assert finals[end].trade_count == expected[end].trade_count
        assert finals[end].volume == expected[end].volume
    assert aggregator.counts["late"] == aggregator.counts["before_since"] == 0

    # no candle in the future (or at the epoch) in any timeframe
    now = datetime.now(UTC)
    assert not Candle.objects.filter(timestamp__gt=now + timedelta(days=1)).exists()
    assert not Candle.objects.filter(timestamp__lt=now - timedelta(days=1)).exists()

    # the newest trade the API serves is the newest real one
    response = api.get("/api/v1/trades/", {"limit": 1})
    assert response.status_code == 200
    [newest] = response.json()["results"]
    assert newest["trade_id"] == after[-1]


def test_prices_sizes_books_and_raw_data_out_of_bounds_are_refused_and_counted(
    quiet_simulator, sink, settings, api, caplog
):
    sim = quiet_simulator
    config = make_config(
        sim, data_types=(DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER), trade_backfill=0
    )
    manager, collector, live, _ = collecting(sink, config)
    try:
        errors_before = collector.counters()["errors"]
        good_trade = trade(now_ms())
        bad_trades = [
            trade(now_ms(), px="1e-30"),
            trade(now_ms(), px="0." + "0" * 29 + "1"),
            trade(now_ms(), sz="0.000000001"),
            trade(now_ms(), px=THIRTY_DIGITS),
            trade(now_ms(), px="1e309"),
            trade(now_ms(), px="NaN"),
            trade(now_ms(), sz="Infinity"),
            trade(now_ms(), note="x" * 1_000_000),  # 1 MB in raw_data
        ]
        send(sim, "trades", [good_trade])
        for item in bad_trades:
            send(sim, "trades", [item])

        ticker = {"instType": "SPOT", "instId": SYMBOL, "last": "77777.7", "lastSz": "0.1"}
        send(sim, "tickers", [{**ticker, "bidPx": "77777.6", "ts": str(now_ms())}])
        send(sim, "tickers", [{**ticker, "last": THIRTY_DIGITS, "ts": str(now_ms())}])

        bids = [[f"{200_000 - i}.5", "1", "0", "1"] for i in range(100_000)]
        asks = [[f"{300_000 + i}.5", "1", "0", "1"] for i in range(5)]
        book = {"instId": SYMBOL, "asks": asks, "seqId": 1}
        send(sim, "books5", [{**book, "bids": bids[:5], "ts": str(now_ms())}])
        send(sim, "books5", [{**book, "bids": bids[:6], "ts": str(now_ms())}])
        send(sim, "books5", [{**book, "bids": bids, "ts": str(now_ms())}])  # 100,000 levels

        marker = trade(now_ms())  # the last frame: once it is stored, all were handled
        send(sim, "trades", [marker])
        wait_until(
            lambda: RawTrade.objects.filter(symbol=SYMBOL, trade_id=marker["tradeId"]).exists(),
            20,
            message="the marker trade stored",
        )
        sink.flush(10)
    finally:
        run(manager.stop())
        live.stop()

    # 8 trades, a ticker and 2 books refused, each counted once; nothing else went wrong
    # (no live-candle callback failed on 1e309)
    assert collector.counters()["errors"] - errors_before == 11
    assert collector.callback_errors == 0
    skipped = [r.message for r in caplog.records if "item skipped" in r.message]
    assert len(skipped) == 11
    assert sum("books5 item skipped: bids: " in m for m in skipped) == 2
    assert any("tickers item skipped: last 1234567890" in m for m in skipped)
    assert any("for raw_data" in m for m in skipped)

    assert {row.trade_id for row in stored_trades()} == {good_trade["tradeId"], marker["tradeId"]}
    assert len(stored_trades()) == 2
    assert not RawTrade.objects.filter(Q(price__lte=0) | Q(size__lte=0)).exists()

    pair = {"exchange": "okx", "symbol": SYMBOL}
    latest_ticker = api.get("/api/v1/ticker/latest/", pair).json()
    assert latest_ticker["last"] == "77777.7"
    latest_book = api.get("/api/v1/orderbook/latest/", pair).json()
    assert latest_book["bids"] == [level[:2] for level in bids[:5]]
