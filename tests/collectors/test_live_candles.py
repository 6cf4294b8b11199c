"""Collectors build candles live from their trades; they equal the fold of the stored trades."""

from datetime import UTC, datetime, timedelta

import pytest

from collectors.factory import ExchangeFactory
from collectors.live_candles import LiveCandles
from collectors.manager import CollectorManager
from marketdata.candles import Trade, fold_trades
from marketdata.models import Candle, RawTrade
from tests.collectors.conftest import make_config, run
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_live_1s_candles_equal_the_candles_of_the_stored_trades(simulator, sink, settings):
    settings.CANDLE_GRACE = 0.2
    live = LiveCandles(timeframes=["1s"])
    manager = CollectorManager(sink=sink, live_candles=live)
    manager.add_collector(ExchangeFactory.create_collector(make_config(simulator)))
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
    expected = {c.timestamp: c for c in fold_trades(trades, "okx", "BTC-USDT", "1s")}
    assert [c.timestamp for c in stored] == sorted(expected)
    for candle in stored:
        want = expected[candle.timestamp]
        got = (candle.open, candle.high, candle.low, candle.close, candle.volume)
        assert got == (want.open, want.high, want.low, want.close, want.volume)
        assert (candle.trade_count, candle.vwap) == (want.trade_count, want.vwap)
    assert live.stored == len(stored)
