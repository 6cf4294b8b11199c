"""Collectors publish their trades, books and tickers for live views, a few messages a second."""

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from collectors.factory import ExchangeFactory
from collectors.hosting.live_candles import LiveCandles
from collectors.hosting.live_feed import MAX_TRADES, MarketFeed, book_channel, trade_channel
from collectors.manager import CollectorManager
from collectors.types import DataType, MarketDataPoint
from tests.helpers import make_config, run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def trade(number: int) -> MarketDataPoint:
    return MarketDataPoint(
        "okx",
        "BTC-USDT",
        datetime.fromtimestamp(1_700_000_000 + number / 1000, UTC),
        DataType.TRADE,
        {
            "trade_id": str(number),
            "price": Decimal("42000.5"),
            "size": Decimal("0.1"),
            "side": "buy",
        },
    )


def test_a_message_carries_the_newest_trades_and_how_many_arrived_since_the_last():
    feed = MarketFeed("okx", "BTC-USDT")
    for number in range(120):
        feed.add_trade(trade(number))
    [(channel, message)] = feed.messages()
    assert channel == trade_channel("okx", "BTC-USDT") == "trades:okx:BTC-USDT"
    assert message["count"] == 120
    assert [t["id"] for t in message["trades"]] == [str(n) for n in range(120 - MAX_TRADES, 120)]
    assert message["trades"][0] == {
        "id": "70",
        "price": "42000.5",
        "size": "0.1",
        "side": "buy",
        "ts": 1_700_000_000_070,
    }
    assert feed.messages() == []  # nothing new, nothing sent
    feed.add_trade(trade(120))
    [(_, message)] = feed.messages()
    assert message["count"] == 1 and [t["id"] for t in message["trades"]] == ["120"]


def test_a_book_is_sent_once_per_change_with_its_top_levels():
    feed = MarketFeed("okx", "BTC-USDT")
    levels = [[str(42000 - n), "1"] for n in range(20)]
    book = MarketDataPoint(
        "okx",
        "BTC-USDT",
        datetime.fromtimestamp(1_700_000_000, UTC),
        DataType.ORDERBOOK,
        {"bids": levels, "asks": levels, "raw": {}},
    )
    feed.set_book(book)
    [(channel, message)] = feed.messages()
    assert channel == book_channel("okx", "BTC-USDT")
    assert len(message["bids"]) == len(message["asks"]) == 10
    assert message["bids"][0] == ["42000", "1"] and message["ts"] == 1_700_000_000_000
    assert feed.messages() == []


def test_collectors_publish_trades_and_books_in_batches(simulator, sink, redis_client, settings):
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(trade_channel("okx", "BTC-USDT"), book_channel("okx", "BTC-USDT"))
    live = LiveCandles(timeframes=["1s"], publish_to=redis.Redis.from_url(settings.REDIS_URL))
    manager = CollectorManager(sink=sink)
    collector = ExchangeFactory.create_collector(
        make_config(simulator, data_types=(DataType.TRADE, DataType.ORDERBOOK))
    )
    manager.add_collector(collector)
    live.attach(collector)
    assert run(manager.start())
    received: dict[str, list[dict]] = {"trades": [], "books": []}

    def listen() -> None:
        while (message := subscriber.get_message(timeout=0.05)) is not None:
            kind = message["channel"].decode().split(":")[0]
            data = json.loads(message["data"])
            # Channels are server-wide: another run's collector may publish on the same one.
            if kind == "trades" and not ours(data):
                continue
            received[kind].append(data)

    def ours(message: dict) -> bool:
        sent = {trade["tradeId"] for trade in simulator.sent_trades("BTC-USDT")}
        return all(str(trade["id"]) in sent for trade in message["trades"])

    wait_until(lambda: listen() or received["trades"], 20, message="a trades message")
    started, batches = time.monotonic(), len(received["trades"])
    deadline = started + 3
    while time.monotonic() < deadline:
        listen()
    elapsed = time.monotonic() - started
    run(manager.stop())
    live.stop()
    listen()
    subscriber.close()

    # a few messages a second, not one per trade (the simulator sends 50 trades a second)
    assert len(received["trades"]) - batches <= elapsed / 0.2 + 3
    ids = [int(t["id"]) for message in received["trades"] for t in message["trades"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(message["count"] >= len(message["trades"]) for message in received["trades"])
    assert received["books"] and all(len(b["bids"]) <= 10 for b in received["books"])
    assert live.feed.publish_failures == 0
