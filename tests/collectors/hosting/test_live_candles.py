"""Collectors build candles live from their trades; they equal the fold of the stored trades."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from collectors.factory import ExchangeFactory
from collectors.hosting.live_candles import LiveCandles, candle_channel
from collectors.manager import CollectorManager
from marketdata.candles import (
    CANDLE_FIELDS,
    CandleValue,
    Trade,
    candle_message,
    fold_trades,
)
from marketdata.models import Candle, RawTrade
from marketdata.times import utc_text
from tests.helpers import free_port, make_config, run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_live_1s_candles_equal_the_candles_of_the_stored_trades(market, sink, settings):
    settings.CANDLE_GRACE = 0.2
    live = LiveCandles(timeframes=["1s"])
    manager = CollectorManager(sink=sink)
    collector = ExchangeFactory.create_collector(market.config())
    manager.add_collector(collector)
    live.attach(collector)
    assert run(manager.start())
    wait_until(lambda: Candle.objects.filter(timeframe="1s").count() >= 4, 20, message="candles")
    # the interval still open is stored as it stands, marked not final
    wait_until(
        lambda: Candle.objects.filter(timeframe="1s", is_final=False).exists(),
        10,
        message="an open candle",
    )
    stopping = datetime.now(UTC)
    run(manager.stop())
    live.stop()
    sink.flush(10)

    stored = list(Candle.objects.filter(timeframe="1s", is_final=True).order_by("timestamp"))
    assert stored
    # Stopping finalises every interval that closed a grace period before it; one still
    # open, or still inside its grace period, stays not final until the rollup builds it.
    grace = timedelta(seconds=settings.CANDLE_GRACE)
    unfinished = Candle.objects.filter(timeframe="1s", is_final=False)
    assert unfinished.count() <= 2
    assert all(candle.timestamp > stopping - grace for candle in unfinished)
    # The first second the collector saw may have begun before it subscribed: the live
    # aggregator leaves it to the rollup. Compare the seconds it stored.
    first, last = stored[0].timestamp - timedelta(seconds=1), stored[-1].timestamp
    trades = [
        Trade(row.timestamp, row.price, row.size, row.trade_id, row.id)
        for row in RawTrade.objects.filter(timestamp__gte=first, timestamp__lt=last)
    ]
    expected = {c.timestamp: c for c in fold_trades(trades, market.exchange, market.symbol, "1s")}
    assert [c.timestamp for c in stored] == sorted(expected)
    for candle in stored:
        want = expected[candle.timestamp]
        got = (candle.open, candle.high, candle.low, candle.close, candle.volume)
        assert got == (want.open, want.high, want.low, want.close, want.volume)
        assert (candle.trade_count, candle.vwap) == (want.trade_count, want.vwap)
    assert live.stored == len(stored)


def test_live_candles_are_published_to_redis_as_stored(simulator, sink, settings, redis_client):
    settings.CANDLE_GRACE = 0.2
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(candle_channel("okx", "BTC-USDT", "1s"))
    live = LiveCandles(timeframes=["1s"], publish_to=redis.Redis.from_url(settings.REDIS_URL))
    manager = CollectorManager(sink=sink)
    collector = ExchangeFactory.create_collector(make_config(simulator))
    manager.add_collector(collector)
    live.attach(collector)
    assert run(manager.start())
    messages: list[dict] = []

    def finals() -> int:
        while (message := subscriber.get_message(timeout=0.1)) is not None:
            messages.append(json.loads(message["data"]))
        return sum(message["is_final"] for message in messages)

    wait_until(lambda: finals() >= 3, 20, message="three final candles published")
    run(manager.stop())
    live.stop()
    sink.flush(10)
    finals()
    subscriber.close()

    stored = {
        utc_text(candle.timestamp): candle_message(as_value(candle))
        for candle in Candle.objects.filter(timeframe="1s", is_final=True)
    }
    published = [message for message in messages if message["is_final"]]
    # each final candle is published once, exactly as stored
    assert len({m["timestamp"] for m in published}) == len(published) == live.stored
    for message in published:
        assert message == stored[message["timestamp"]]

    # open intervals are published as they stand, not final, before their final candle
    # (each is open for about a tick, so look over all of them, not just one)
    def published_open_before(final: dict) -> bool:
        earlier = messages[: messages.index(final)]
        return any(not m["is_final"] and m["timestamp"] == final["timestamp"] for m in earlier)

    assert any(published_open_before(final) for final in published)
    assert live.published >= len(messages) and live.publish_failures == 0


def test_candles_are_stored_while_redis_is_away(simulator, sink, settings, caplog):
    settings.CANDLE_GRACE = 0.2
    nowhere = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    live = LiveCandles(timeframes=["1s"], publish_to=nowhere)
    manager = CollectorManager(sink=sink)
    collector = ExchangeFactory.create_collector(make_config(simulator))
    manager.add_collector(collector)
    live.attach(collector)
    assert run(manager.start())
    wait_until(lambda: live.stored >= 3, 20, message="candles stored")
    run(manager.stop())
    live.stop()

    assert Candle.objects.filter(timeframe="1s", is_final=True).count() == live.stored
    assert live.published == 0 and live.publish_failures >= live.stored
    warnings = [r for r in caplog.records if "not published while Redis fails" in r.message]
    assert len(warnings) == 1  # once for the outage, not once a second


def as_value(candle: Candle) -> CandleValue:
    return CandleValue(*(getattr(candle, name) for name in CANDLE_FIELDS))
