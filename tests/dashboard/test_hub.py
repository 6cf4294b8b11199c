"""The live hub of a web server process: one Redis subscription fanned out to its viewers,
the newest message per key, and the database instead of Redis on the embedded default."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from dashboard import hub
from marketdata.models import RawTrade
from tests.helpers import free_port

CHANNEL = "trades:okx:HUBT-USDT"  # a market of its own: pub/sub channels are server-wide


def trades_message(*prices: str) -> bytes:
    trades = [
        {"id": str(n), "price": p, "size": "1", "side": "buy", "ts": 1_700_000_000_000 + n}
        for n, p in enumerate(prices)
    ]
    message = {"exchange": "okx", "symbol": "HUBT-USDT", "count": len(trades), "trades": trades}
    return json.dumps(message).encode()


async def wait_for(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)
    return result


def test_every_viewer_of_a_channel_shares_one_redis_subscription(redis_client):
    async def scenario():
        live = hub.Hub(settings.REDIS_URL)
        viewers = [hub.Viewer() for _ in range(3)]
        for viewer in viewers:
            live.subscribe(viewer, [(CHANNEL, hub.trades_event)])

        async def subscribers() -> int:
            return dict(redis_client.pubsub_numsub(CHANNEL))[CHANNEL.encode()]

        assert await wait_for(subscribers) == 1
        redis_client.publish(CHANNEL, trades_message("10.5"))
        await wait_for(lambda: _all_ready(viewers))
        chunks = {viewer.take() for viewer in viewers}
        assert chunks == {b"event: trades\ndata: " + trades_message("10.5") + b"\n\n"}
        for viewer in viewers:
            live.unsubscribe(viewer)

        async def nobody() -> bool:
            return dict(redis_client.pubsub_numsub(CHANNEL))[CHANNEL.encode()] == 0

        await wait_for(nobody)
        live.close()

    asyncio.run(scenario())


async def _all_ready(viewers) -> bool:
    return all(viewer.ready.is_set() for viewer in viewers)


def test_the_board_gets_each_markets_last_trade_only():
    key, chunk = hub.tick_event(CHANNEL, trades_message("10.5", "10.6", "10.4"))
    assert key == "tick:okx:HUBT-USDT"
    event = json.loads(chunk.split(b"data: ", 1)[1])
    assert event == {
        "market": "okx:HUBT-USDT",
        "price": "10.4",
        "ts": 1_700_000_000_002,
        "count": 3,
    }
    assert hub.tick_event(CHANNEL, trades_message()) is None


def test_a_viewer_keeps_the_newest_message_per_key_and_every_unkeyed_one():
    async def scenario():
        viewer = hub.Viewer(limit=3)
        viewer.push("candle:1s:T1", b"open ")
        viewer.push(None, b"trade-1 ")
        viewer.push("candle:1s:T1", b"final ")
        viewer.push(None, b"trade-2 ")
        assert viewer.take() == b"final trade-1 trade-2 "
        assert not viewer.ready.is_set() and not viewer.overflowed
        for _ in range(4):
            viewer.push(None, b"x")
        assert viewer.overflowed  # too far behind: its stream ends, the browser reconnects

    asyncio.run(scenario())


def test_viewers_are_told_when_redis_does_not_answer():
    async def scenario():
        live = hub.Hub(f"redis://127.0.0.1:{free_port()}/0")
        viewer = hub.Viewer()
        live.subscribe(viewer, [(CHANNEL, hub.trades_event)])

        async def told() -> bool:
            return b"event: notice" in b"".join(viewer.pending.values())

        await wait_for(told)
        assert "Redis does not answer" in live.interrupted
        live.close()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_without_redis_new_trades_and_candles_come_from_the_database():
    from marketdata.candles import CandleValue, store_candles

    def trade(number: int) -> RawTrade:
        return RawTrade.objects.create(
            exchange="okx", symbol="HUBT-USDT", trade_id=str(number), price=Decimal("10.5"),
            size=Decimal(1), side="sell", timestamp=datetime.now(UTC),
        )  # fmt: skip

    trade(1)  # stored before anyone watched: not sent again

    async def scenario():
        live = hub.Hub("")
        assert live.mode == "database"
        viewer = hub.Viewer()
        candles = "candles:okx:HUBT-USDT:1m"
        live.subscribe(viewer, [(CHANNEL, hub.trades_event), (candles, hub.candle_event)])
        await asyncio.sleep(0.5)  # the first read notes where the tables are
        await asyncio.to_thread(trade, 2)
        end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        price = Decimal("10.5")
        forming = CandleValue(
            "okx", "HUBT-USDT", "1m", end, price, price, price, price, Decimal(1), price,
            price, 1, is_final=False,
        )  # fmt: skip
        await asyncio.to_thread(store_candles, [forming])

        async def both() -> bool:
            sent = b"".join(viewer.pending.values())
            return b"event: trades" in sent and b"event: candle" in sent

        await wait_for(both, timeout=10)
        sent = viewer.take().decode()
        trades = json.loads(sent.split("event: trades\ndata: ", 1)[1].split("\n", 1)[0])
        assert [t["id"] for t in trades["trades"]] == ["2"]
        candle = json.loads(sent.split("event: candle\ndata: ", 1)[1].split("\n", 1)[0])
        assert (candle["timeframe"], candle["is_final"]) == ("1m", False)
        live.unsubscribe(viewer)
        live.close()
        await asyncio.sleep(0)

    asyncio.run(scenario())
