"""Live trades, order books and tickers for live views, published to Redis a few times a second.

A collector delivers tens of thousands of trades a second; live views need far fewer
messages. So each delivered point only lands in its market's slot (a bounded deque for
trades, the newest point for books and tickers: no I/O, no formatting), and one thread
per process publishes, every PERIOD seconds, what each market received since:

- `trades:{exchange}:{symbol}`: `{"exchange", "symbol", "count", "trades"}`, where `count`
  is how many trades arrived since the last message and `trades` the newest MAX_TRADES of
  them, oldest first, each `{"id", "price", "size", "side", "ts"}` (ts: epoch milliseconds);
- `books:{exchange}:{symbol}`: the newest order book's top BOOK_DEPTH levels per side,
  `{"exchange", "symbol", "ts", "bids", "asks"}`, levels as [price, size] strings;
- `tickers:{exchange}:{symbol}`: the newest ticker, `{"exchange", "symbol", "ts", ...}`
  with its prices and sizes as strings.

Like live candles, these are for live views only: what is missed while Redis is away is
not sent again (the tables have it).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import redis

from collectors.types import DataType, MarketDataPoint

if TYPE_CHECKING:
    from collectors.collector import BaseDataCollector

logger = logging.getLogger(__name__)

PERIOD = 0.2  # seconds between a market's messages
MAX_TRADES = 50  # trades carried by one message: the newest
BOOK_DEPTH = 10  # levels per side of a published order book
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def trade_channel(exchange: str, symbol: str) -> str:
    return f"trades:{exchange}:{symbol}"


def book_channel(exchange: str, symbol: str) -> str:
    return f"books:{exchange}:{symbol}"


def ticker_channel(exchange: str, symbol: str) -> str:
    return f"tickers:{exchange}:{symbol}"


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // MILLISECOND


def plain(value: Any) -> Any:
    """A Decimal as text in plain notation (never a float); anything else as it is."""
    return format(value, "f") if isinstance(value, Decimal) else value


def trade_item(trade_id: str | None, price, size, side: str, timestamp: datetime) -> dict:
    """One trade as live views get it."""
    return {
        "id": trade_id,
        "price": plain(price),
        "size": plain(size),
        "side": side,
        "ts": epoch_ms(timestamp),
    }


def trade_message(exchange: str, symbol: str, count: int, trades: list[dict]) -> dict:
    return {"exchange": exchange, "symbol": symbol, "count": count, "trades": trades}


def book_message(exchange: str, symbol: str, timestamp: datetime, data: dict) -> dict:
    """An order book's top BOOK_DEPTH levels a side, as [price, size] strings."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "ts": epoch_ms(timestamp),
        "bids": [[str(p), str(s)] for p, s, *_ in (data.get("bids") or [])[:BOOK_DEPTH]],
        "asks": [[str(p), str(s)] for p, s, *_ in (data.get("asks") or [])[:BOOK_DEPTH]],
    }


def ticker_message(exchange: str, symbol: str, timestamp: datetime, data: dict) -> dict:
    message = {"exchange": exchange, "symbol": symbol, "ts": epoch_ms(timestamp)}
    for name, value in data.items():
        if name != "raw":
            message[name] = plain(value)
    return message


class MarketFeed:
    """One market's points since its last message; collector threads write, one thread reads."""

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.trades: deque[MarketDataPoint] = deque(maxlen=MAX_TRADES)
        self.received = 0
        self.sent = 0
        self.book: MarketDataPoint | None = None
        self.ticker: MarketDataPoint | None = None
        self._book_sent: MarketDataPoint | None = None
        self._ticker_sent: MarketDataPoint | None = None

    def add_trade(self, point: MarketDataPoint) -> None:
        self.trades.append(point)
        self.received += 1

    def set_book(self, point: MarketDataPoint) -> None:
        self.book = point

    def set_ticker(self, point: MarketDataPoint) -> None:
        self.ticker = point

    def messages(self) -> list[tuple[str, dict]]:
        """(channel, message) for whatever arrived since the last call."""
        found = []
        points = []
        while self.trades:  # popleft is atomic: a trade appended meanwhile waits its turn
            points.append(self.trades.popleft())
        received = self.received
        if points:
            count = max(received - self.sent, len(points))
            trades = [
                trade_item(p.data.get("trade_id"), p.data["price"], p.data["size"],
                           p.data.get("side"), p.timestamp)
                for p in points
            ]  # fmt: skip
            message = trade_message(self.exchange, self.symbol, count, trades)
            found.append((trade_channel(self.exchange, self.symbol), message))
        self.sent = received
        book, ticker = self.book, self.ticker
        if book is not None and book is not self._book_sent:
            self._book_sent = book
            message = book_message(self.exchange, self.symbol, book.timestamp, book.data)
            found.append((book_channel(self.exchange, self.symbol), message))
        if ticker is not None and ticker is not self._ticker_sent:
            self._ticker_sent = ticker
            message = ticker_message(self.exchange, self.symbol, ticker.timestamp, ticker.data)
            found.append((ticker_channel(self.exchange, self.symbol), message))
        return found


class LiveFeed:
    """The markets of one process's collectors, published every PERIOD seconds."""

    def __init__(self, publish_to: redis.Redis, period: float = PERIOD) -> None:
        self.redis = publish_to
        self.period = period
        self.published = 0
        self.publish_failures = 0
        self._failing = False
        self._feeds: dict[str, MarketFeed] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, collector: BaseDataCollector) -> None:
        feed = MarketFeed(collector.exchange, collector.symbol)
        callbacks = {
            DataType.TRADE: feed.add_trade,
            DataType.ORDERBOOK: feed.set_book,
            DataType.TICKER: feed.set_ticker,
        }
        for data_type in collector.config.data_types:
            if data_type in callbacks:
                collector.add_data_callback(data_type, callbacks[data_type])
        self._feeds[collector.name] = feed
        self.start()

    def detach(self, name: str) -> None:
        self._feeds.pop(name, None)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.publish()

    def publish(self) -> None:
        messages = [message for feed in list(self._feeds.values()) for message in feed.messages()]
        if not messages:
            return
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(channel, json.dumps(message))
                pipe.execute()
        except redis.RedisError as error:
            self.publish_failures += len(messages)
            if not self._failing:  # once per outage
                self._failing = True
                logger.warning("live feed: trades and books not sent while Redis fails: %s", error)
            return
        if self._failing:
            self._failing = False
            logger.info("live feed: sending again")
        self.published += len(messages)
