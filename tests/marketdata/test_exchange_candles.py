"""Our live 1m candles against the OKX simulator's candle1m, through a real collector.

OKX stamps a candle at the START of its interval, we stamp it at the END: OKX's candle
stamped S is ours stamped S + 1m. The simulator's clock runs 60 times faster than the
wall clock, so a minute passes every second.
"""

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collectors.factory import ExchangeFactory
from collectors.simulators.okx import OkxSimulator
from collectors.times import from_epoch_ms
from collectors.types import DataType
from marketdata.candles import LiveCandleAggregator, Trade, ceil_boundary, fold_trades
from tests.helpers import make_config, run, wait_until

SPEED = 60
MINUTE = timedelta(minutes=1)
GRACE = timedelta(seconds=2)


class FastClock:
    """Epoch milliseconds that run SPEED times faster than the wall clock."""

    def __init__(self) -> None:
        self.start_ms = time.time_ns() // 1_000_000
        self.started = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self.started) * 1000 * SPEED)


class Ours:
    """A live aggregator created at the first trade: minutes from the next one are whole."""

    def __init__(self, clock: FastClock) -> None:
        self.clock = clock  # the simulator's: trades are received at its time, not ours
        self.lock = threading.Lock()
        self.aggregator: LiveCandleAggregator | None = None
        self.candles = {}
        self.last_trade_at: datetime | None = None

    def on_trade(self, point) -> None:
        with self.lock:
            if self.aggregator is None:
                since = ceil_boundary(point.timestamp + timedelta(microseconds=1), "1m")
                self.aggregator = LiveCandleAggregator(
                    "okx",
                    point.symbol,
                    ["1m"],
                    self.on_close,
                    GRACE,
                    since=since,
                    clock=lambda: from_epoch_ms(self.clock()),
                )
            self.last_trade_at = point.timestamp
        self.aggregator.add_trade(point)

    def on_close(self, candles) -> None:
        for candle in candles:
            self.candles[candle.timestamp] = candle

    def closed(self, end: datetime) -> bool:
        return self.last_trade_at is not None and end + GRACE <= self.last_trade_at


@pytest.fixture
def fast_simulator():
    clock = FastClock()
    sim = OkxSimulator(seed=11, rate=40.0, clock=clock)
    sim.start()
    yield sim
    sim.stop()


def test_our_1m_candles_equal_okx_candle1m_shifted_by_one_interval(fast_simulator, settings):
    sim = fast_simulator
    # the simulator's clock runs ahead of ours by up to an hour in this test
    settings.COLLECTOR_MAX_CLOCK_SKEW_FUTURE = 3600.0
    config = make_config(sim, data_types=(DataType.TRADE, DataType.CANDLE))
    collector = ExchangeFactory.create_collector(config)
    ours = Ours(sim.clock)
    okx: dict[datetime, dict] = {}  # confirmed OKX candles by their start
    collector.add_data_callback(DataType.TRADE, ours.on_trade)
    collector.add_data_callback(
        DataType.CANDLE,
        lambda point: (
            okx.__setitem__(point.timestamp, point.data) if point.data["confirmed"] else None
        ),
    )
    assert run(collector.start()) is True
    try:

        def comparable():
            if ours.aggregator is None:
                return []
            return [
                start
                for start, data in sorted(okx.items())
                if start >= ours.aggregator.since
                and ours.closed(start + MINUTE)
                and data["volume"] > 0
            ]

        wait_until(lambda: len(comparable()) >= 3, timeout=40, message="three comparable candles")
        compared = comparable()
    finally:
        run(collector.stop())

    sent = [
        Trade(
            datetime.fromtimestamp(int(item["ts"]) / 1000, UTC),
            Decimal(item["px"]),
            Decimal(item["sz"]),
            item["tradeId"],
        )
        for item in sim.sent_trades("BTC-USDT")
    ]
    from_sent = {c.timestamp: c for c in fold_trades(sent, "okx", "BTC-USDT", "1m")}
    for start in compared:
        exchange_candle, end = okx[start], start + MINUTE
        candle = ours.candles[end]
        assert (candle.open, candle.high, candle.low, candle.close) == (
            exchange_candle["open"],
            exchange_candle["high"],
            exchange_candle["low"],
            exchange_candle["close"],
        )
        assert candle.volume == exchange_candle["volume"]
        assert candle.quote_volume == exchange_candle["volume_quote"]
        assert candle == from_sent[end]
    for start, exchange_candle in okx.items():  # an empty minute: OKX repeats the close, we skip it
        if exchange_candle["volume"] == 0 and start >= ours.aggregator.since:
            assert start + MINUTE not in ours.candles
