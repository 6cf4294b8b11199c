"""Live candles for hosted collectors: an aggregator per collector, stored off the hot path.

Aggregators fold each TRADE point as it is delivered and emit a candle once its
interval has closed. A trade moves an aggregator's clock at most to the time it was
received, and one stamped beyond COLLECTOR_MAX_CLOCK_SKEW_FUTURE is refused (the collector
has refused it already; see collectors.bounds), so one bad trade cannot stop live candles.

Closed candles are queued and written by one thread, which also
closes quiet intervals by the wall clock, so no database I/O happens while a link is
receiving. Once a second that thread also stores each open interval as it stands, marked
not final (the API shows it only with include_partial=true); its final candle replaces
it when the interval closes. The rollup rebuilds anything missed.

Given a Redis client, each candle is also published, once stored, to the channel
`candles:{exchange}:{symbol}:{timeframe}` as JSON (see `marketdata.candles.candle_message`):
final ones once, as they close (the thread wakes for them at once), and the open ones once
a second; and the collectors' trades, books and tickers go out through a LiveFeed
(`collectors.live_feed`). Publishing is for live views only: a message missed while Redis
is away is not sent again (the table has it).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import close_old_connections, connections

from collectors.bounds import Bounds
from collectors.collector import BaseDataCollector
from collectors.hosting.live_feed import LiveFeed
from collectors.types import DataType
from marketdata.candles import CandleValue, LiveCandleAggregator, candle_message, store_candles

logger = logging.getLogger(__name__)

TICK = 1.0  # seconds between wall-clock closes of quiet intervals


def candle_channel(exchange: str, symbol: str, timeframe: str) -> str:
    """The Redis channel on which one market's candles of one timeframe are published."""
    return f"candles:{exchange}:{symbol}:{timeframe}"


class LiveCandles:
    def __init__(
        self, timeframes: list[str] | None = None, publish_to: redis.Redis | None = None
    ) -> None:
        self.timeframes = timeframes or list(settings.CANDLE_LIVE_TIMEFRAMES)
        self.redis = publish_to
        self.published = 0
        self.publish_failures = 0
        self._publishing_failed = False
        self._aggregators: dict[str, LiveCandleAggregator] = {}
        self._closed: queue.SimpleQueue[list[CandleValue]] = queue.SimpleQueue()
        self._unsaved: list[CandleValue] = []
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when an aggregator closes candles
        self._thread: threading.Thread | None = None
        self.stored = 0
        self.feed = LiveFeed(publish_to) if publish_to is not None else None

    def attach(self, collector: BaseDataCollector) -> None:
        if self.feed is not None:
            self.feed.attach(collector)
        if DataType.TRADE not in collector.config.data_types:
            return
        aggregator = LiveCandleAggregator(
            collector.exchange,
            collector.symbol,
            self.timeframes,
            on_close=self._on_close,
            grace=settings.CANDLE_GRACE,
            max_future=Bounds.from_settings().max_future,
        )
        self._aggregators[collector.name] = aggregator
        collector.add_data_callback(DataType.TRADE, aggregator.add_trade)
        self.start()

    def detach(self, name: str) -> None:
        """A collector leaves: store what its aggregator has closed, forget the rest."""
        if self.feed is not None:
            self.feed.detach(name)
        aggregator = self._aggregators.pop(name, None)
        if aggregator is not None:
            aggregator.flush()

    def _on_close(self, candles: list[CandleValue]) -> None:
        self._closed.put(candles)
        self._wake.set()

    def start(self) -> None:
        if self.feed is not None:
            self.feed.start()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="live-candles", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.feed is not None:
            self.feed.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for aggregator in self._aggregators.values():
            aggregator.flush()
        self._store()
        connections.close_all()  # this thread's connections

    def _run(self) -> None:
        try:
            next_tick = time.monotonic() + TICK
            while True:
                self._wake.wait(max(0.0, next_tick - time.monotonic()))
                if self._stop.is_set():
                    break
                self._wake.clear()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK
                    now = datetime.now(UTC)
                    aggregators = list(self._aggregators.values())
                    for aggregator in aggregators:
                        aggregator.tick(now)
                    # Open ones first: an interval that closes meanwhile is stored final after.
                    self._store_open([c for a in aggregators for c in a.open_candles()])
                self._store()
        finally:
            connections.close_all()

    def _store_open(self, candles: list[CandleValue]) -> None:
        try:
            store_candles(candles)
        except Exception as error:  # a later tick stores them as they stand then
            logger.warning("live candles: open candles not stored: %s", error)
            close_old_connections()
            return
        self._publish(candles)

    def _publish(self, candles: list[CandleValue]) -> None:
        if self.redis is None or not candles:
            return
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for candle in candles:
                    channel = candle_channel(candle.exchange, candle.symbol, candle.timeframe)
                    pipe.publish(channel, json.dumps(candle_message(candle)))
                pipe.execute()
        except redis.RedisError as error:
            self.publish_failures += len(candles)
            if not self._publishing_failed:  # once per outage, not once a second
                self._publishing_failed = True
                logger.warning("live candles: not published while Redis fails: %s", error)
            return
        if self._publishing_failed:
            self._publishing_failed = False
            logger.info("live candles: publishing again")
        self.published += len(candles)

    def _store(self) -> None:
        while True:
            try:
                self._unsaved.extend(self._closed.get_nowait())
            except queue.Empty:
                break
        if not self._unsaved:
            return
        try:
            store_candles(self._unsaved)
        except Exception as error:  # the database may be away; keep them for the next tick
            logger.warning("live candles: %d not stored yet: %s", len(self._unsaved), error)
            close_old_connections()
            del self._unsaved[: max(0, len(self._unsaved) - 100_000)]
            return
        self.stored += len(self._unsaved)
        stored, self._unsaved = self._unsaved, []
        self._publish(stored)
