"""BaseDataCollector: one exchange and symbol, its WebSocket connections and their lifecycle.

Each endpoint of the adapter (OKX: public, business) gets a link (collectors.link): a thread
that connects, subscribes, receives, pings, and reconnects with exponential backoff. The
adapter turns frames into data points; the collector counts, calls back and hands points
to the sink.

When the sink has no room (the database is down and its spill directory full or failing),
the receiving thread waits in `deliver()` before taking the next points: the socket is not
read, so the exchange holds or drops what it sends. After `BACKPRESSURE_LIMIT` seconds the
collector drops the connection itself, handing the trades in hand back to the exchange:
they are forgotten as seen and the gap-fill point is moved back before them, so the REST
gap-fill after the reconnect fetches them again. Other points in hand are dropped and
counted (`points_shed`). The collector's health names the storage problem meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from collectors.exchanges.base import ExchangeAdapter
from collectors.exchanges.newest_trade import trade_number
from collectors.health_rule import PERMANENT_ERROR, health_issues, restart_cause
from collectors.link import CONNECT_TIMEOUT, DRAIN_TIMEOUT, Link, LinkStats
from collectors.times import utc_text
from collectors.types import COLLECTOR_DEFAULTS as DEFAULTS
from collectors.types import DataType, ExchangeCollectorConfig, MarketDataPoint
from tcp_dashboard.logs.redaction import redact
from tcp_dashboard.logs.traces import POINTS, trace_points

logger = logging.getLogger(__name__)

BACKPRESSURE_TICK = 0.25  # seconds between checks (and heartbeats) while storage is full
# Seconds a receiver waits for storage before dropping its connection. A real exchange
# drops a client that stops reading well before this; the limit is for a peer that keeps
# buffering for us, which loses nothing while we wait (docs/collectors.md, Storage).
BACKPRESSURE_LIMIT = 120.0
STOP_FLUSH_TIMEOUT = 30.0  # seconds a graceful stop waits for the sink to commit


class StorageFull(ConnectionError):
    """Storage had no room for this long: the connection is dropped, to be gap-filled later."""


class Sink(Protocol):
    def put(self, points: list[MarketDataPoint]) -> None: ...


def sink_method(sink: Sink | None, name: str) -> Callable | None:
    """An optional part of a sink (flush, wait_for_room, problem...); None when it has none."""
    return getattr(sink, name, None)


def iso(timestamp: float | None) -> str:
    """A time.time() value as ISO 8601 UTC text; '' for never."""
    return utc_text(datetime.fromtimestamp(timestamp, UTC)) if timestamp else ""


def without_raw(point: MarketDataPoint) -> MarketDataPoint:
    data = {key: value for key, value in point.data.items() if key != "raw"}
    return MarketDataPoint(point.exchange, point.symbol, point.timestamp, point.data_type, data)


class RecentTrades:
    """Trade ids seen lately, so a trade that arrives twice is delivered once.

    Trades arrive twice around reconnects (the REST backfill overlaps the stream) and
    while an upgraded connection overlaps the old one. Storage ignores repeats by its
    unique key; in-memory consumers (live candles) rely on this.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._order: deque[str] = deque()
        self._seen: set[str] = set()
        self._capacity = capacity
        self._lock = threading.Lock()

    def forget(self, trade_ids: list[str]) -> None:
        """Trades handed back undelivered: when they come again, they are fresh."""
        with self._lock:
            # _order keeps them: when it drops an old entry, a later copy is forgotten a
            # little early, and at worst delivered twice (storage ignores the repeat).
            self._seen.difference_update(trade_ids)

    def fresh(self, points: list[MarketDataPoint]) -> list[MarketDataPoint]:
        with self._lock:
            kept = []
            for point in points:
                if point.data_type is DataType.TRADE:
                    trade_id = point.data["trade_id"]
                    if trade_id in self._seen:
                        continue
                    self._seen.add(trade_id)
                    self._order.append(trade_id)
                    if len(self._order) > self._capacity:
                        self._seen.discard(self._order.popleft())
                kept.append(point)
            return kept


class BaseDataCollector:
    """Collects one exchange symbol's data types over the adapter's WebSocket endpoints."""

    def __init__(
        self,
        config: ExchangeCollectorConfig,
        adapter: ExchangeAdapter,
        *,
        sink: Sink | None = None,
    ) -> None:
        self.config = config
        self.adapter = adapter
        self.sink = sink
        self.name = config.name
        self.exchange = config.exchange
        self.symbol = config.symbol
        self.should_be_running = False
        self._status = "stopped"
        self._lock = threading.RLock()
        self._links: list[Link] = []
        self._retired_stats = LinkStats()
        self._callbacks: dict[DataType, list[Callable[[MarketDataPoint], Any]]] = defaultdict(list)
        self._live = threading.Event()
        # set once start() has its answer: every link live, or the collector stopped in error
        self._settled = threading.Event()
        self.started_at = 0.0
        self.last_heartbeat = 0.0
        self.last_data_time = 0.0
        self.callback_errors = 0
        self.points_shed = 0  # non-trade points dropped with a connection storage had no room for
        self.recent_trades = RecentTrades()
        self.restarts = 0
        self.total_reconnects = 0
        self.last_error = ""
        self.last_restart_time = 0.0

    # settings ---------------------------------------------------------------

    def setting(self, name: str):
        params = self.config.custom_params or {}
        value = params.get(name)
        if value is not None:
            return value
        if name == "max_message_bytes":  # the exchange's own bound
            return self.adapter.max_message_bytes
        return DEFAULTS[name]

    # lifecycle --------------------------------------------------------------

    async def start(self) -> bool:
        """Open every endpoint; True once all are subscribed, False if not within the timeout.

        A collector that could not connect yet keeps trying with backoff until stopped.
        """
        with self._lock:
            if self._links:
                return self._live.is_set()
            self.should_be_running = True
            self._live.clear()
            self._settled.clear()
            self.started_at = time.time()
            self.last_heartbeat = self.started_at
            self.set_status("starting")
            self._links = [Link(self, endpoint) for endpoint in self.adapter.endpoints()]
            for link in self._links:
                link.start()
        timeout = CONNECT_TIMEOUT + 2
        await asyncio.to_thread(self._settled.wait, timeout)
        return self._live.is_set()

    async def stop(self, force: bool = False) -> None:
        """Close the connections; unless forced, wait for the sink to store what was received."""
        with self._lock:
            self.should_be_running = False
            links, self._links = self._links, []
            for link in links:
                link.stop() if force else link.drain()
        for link in links:
            await asyncio.to_thread(link.thread.join, 0 if force else DRAIN_TIMEOUT + 2)
            link.stop()
            self._retire_stats(link)
        # While the database is down waiting is pointless: the sink keeps the rows.
        flush = sink_method(self.sink, "flush_unless_down") or sink_method(self.sink, "flush")
        if not force and flush is not None:
            await asyncio.to_thread(flush, STOP_FLUSH_TIMEOUT)
        self.set_status("stopped")

    async def restart(self) -> bool:
        await self.stop()
        with self._lock:
            self.restarts += 1
            self.last_restart_time = time.time()
        logger.info("%s: restarting", self.name)
        return await self.start()

    # called by links --------------------------------------------------------

    def set_status(self, status: str) -> None:
        with self._lock:
            if self._status != status:
                logger.info("%s: %s -> %s", self.name, self._status, status)
            self._status = status

    def link_live(self, link: Link) -> None:
        with self._lock:
            if all(other.subscribed.is_set() for other in self._links if not other.retiring):
                self.set_status("running")
                self._live.set()
                self._settled.set()

    def link_finished(self, link: Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
                self._retire_stats(link)

    def replace_link(self, link: Link, why: str = "upgrade notice") -> None:
        """The server will close `link` soon: open its successor first, lose nothing."""
        with self._lock:
            if not self.should_be_running:
                return
            logger.info("%s %s: %s, opening a new connection", self.name, link.endpoint.key, why)
            link.retiring = True
            successor = Link(self, link.endpoint, successor_of=link)
            self._links.append(successor)
            successor.start()

    def give_up(self, link: Link) -> None:
        attempts = self.setting("max_reconnect_attempts")
        self.record_error(link, f"{link.endpoint.key}: gave up after {attempts} reconnect attempts")
        self.set_status("error")
        self._settled.set()
        with self._lock:
            for other in self._links:
                if other is not link:
                    other.stop()

    def fail_permanently(self, link: Link, message: str) -> None:
        """The exchange refused this configuration: stop in error; no restart until it changes."""
        self.record_error(link, f"{PERMANENT_ERROR}{link.endpoint.key}: {message}")
        self.set_status("error")
        self._settled.set()
        with self._lock:
            for other in self._links:
                other.stop()

    def count_reconnect(self) -> None:
        with self._lock:
            self.total_reconnects += 1

    def record_error(self, link: Link | None, message: str) -> None:
        if link is not None:
            link.stats.errors += 1
        else:
            with self._lock:
                self.callback_errors += 1
        self.last_error = redact(message)[:500]  # it is shown in the API, admin and summaries
        logger.warning("%s: %s", self.name, self.last_error)

    def deliver(self, points: list[MarketDataPoint]) -> None:
        if self.sink is not None and not self._storage_has_room():
            self._hand_back(points)
        self.last_data_time = time.time()
        if POINTS.isEnabledFor(logging.DEBUG):  # data_collectors.verbose (docs/logging.md)
            trace_points(self.name, points)
        if not self.config.store_raw_data:
            points = [without_raw(point) for point in points]
        callbacks = self._callbacks
        if callbacks:
            for point in points:
                for callback in callbacks.get(point.data_type, ()):
                    try:
                        callback(point)
                    except Exception as error:  # a consumer's bug is its own
                        logger.exception("%s: data callback failed", self.name)
                        self.record_error(None, f"callback {callback!r}: {error!r}"[:300])
        if self.sink is not None:
            self.sink.put(points)

    def _storage_has_room(self) -> bool:
        """Back-pressure: wait while the sink has no room (the socket is not read meanwhile);
        False when it had none for BACKPRESSURE_LIMIT seconds."""
        wait = sink_method(self.sink, "wait_for_room")
        if wait is None or wait(0):
            return True
        logger.warning(
            "%s: storage has no room (%s); not reading from the exchange until it has",
            self.name,
            self.storage_problem(),
        )
        paused_at = time.monotonic()
        while self.should_be_running:  # a stopping collector hands its last points over
            if wait(BACKPRESSURE_TICK):
                logger.warning(
                    "%s: storage has room again after %.1fs; reading on",
                    self.name,
                    time.monotonic() - paused_at,
                )
                return True
            self.last_heartbeat = time.time()  # paused on purpose, not stuck
            if time.monotonic() - paused_at >= BACKPRESSURE_LIMIT:
                return False
        return True

    def _hand_back(self, points: list[MarketDataPoint]) -> None:
        """Drop the connection with these points undelivered: trades to be gap-filled."""
        trades = [p.data.get("trade_id") for p in points if p.data_type is DataType.TRADE]
        trade_ids = [trade_id for trade_id in trades if trade_id is not None]
        self.recent_trades.forget(trade_ids)
        numbers = [n for n in map(trade_number, trade_ids) if n is not None]
        newest = getattr(self.adapter, "newest_trade", None)  # where the gap-fill starts
        if numbers and newest is not None:
            before = min(numbers) - 1
            newest.trade_id = before if newest.trade_id is None else min(newest.trade_id, before)
        shed = len(points) - len(trade_ids)
        with self._lock:
            self.points_shed += shed
        raise StorageFull(
            f"storage had no room for {BACKPRESSURE_LIMIT:g}s ({self.storage_problem()});"
            f" dropping the connection: {len(trade_ids)} trades left to the gap-fill,"
            f" {shed} other points dropped"
        )

    def storage_problem(self) -> str:
        """Why the sink is not keeping up ('' when it is), as its health shows it."""
        problem = sink_method(self.sink, "problem")
        return problem() if problem is not None else ""

    def _retire_stats(self, link: Link) -> None:
        retired = self._retired_stats
        for name in LinkStats.__slots__:
            setattr(retired, name, getattr(retired, name) + getattr(link.stats, name))
        link.stats = LinkStats()

    # consumers --------------------------------------------------------------

    def add_data_callback(self, data_type: DataType, callback: Callable) -> None:
        self._callbacks[data_type].append(callback)

    def counters(self) -> dict[str, int]:
        with self._lock:
            links = list(self._links)
            totals = {name: getattr(self._retired_stats, name) for name in LinkStats.__slots__}
        for link in links:
            for name in LinkStats.__slots__:
                totals[name] += getattr(link.stats, name)
        totals["errors"] += self.callback_errors
        return totals

    @property
    def status(self) -> str:
        return self._status

    @property
    def is_running(self) -> bool:
        with self._lock:
            return bool(self._links) and self._status in {"starting", "running", "reconnecting"}

    def get_status(self) -> dict[str, Any]:
        now = time.time()
        counters = self.counters()
        with self._lock:
            links = list(self._links)
        reconnecting = max((link.reconnect_attempts for link in links), default=0)
        connected = [link.connected_since for link in links if link.connected_since]
        return {
            "exchange": self.exchange,
            "status": self._status,
            "should_be_running": self.should_be_running,
            "symbols": [self.symbol],
            "data_types": [data_type.value for data_type in self.config.data_types],
            "auto_restart": self.config.auto_restart,
            "health": {
                "time_since_heartbeat": self._seconds_since(self.last_heartbeat, now),
                "time_since_data": self._seconds_since(self.last_data_time, now),
                "max_silence_duration": float(self.setting("max_silence_duration")),
            },
            "statistics": {
                "messages_received": counters["messages_received"],
                "messages_processed": counters["messages_processed"],
                "errors": counters["errors"],
                "restarts": self.restarts,
                "uptime_seconds": (now - self.started_at) if self.should_be_running else 0.0,
                "reconnect_attempts": reconnecting,
                "last_message_time": iso(self.last_data_time),
                "connection_uptime": iso(min(connected)) if connected else "",
                "last_error": self.last_error,
                "last_restart_time": iso(self.last_restart_time),
            },
        }

    def _seconds_since(self, moment: float, now: float) -> float:
        """Seconds since `moment`; since the start when it never happened."""
        reference = moment or self.started_at
        return round(now - reference, 3) if reference else 0.0

    def health_issues(self) -> list[str]:
        """What is wrong now, by the one rule (collectors.health_rule); empty when healthy."""
        issues = health_issues(self.get_status(), is_running=self.is_running)
        texts = [issue.text for issue in issues]
        storage = self.storage_problem() if self.should_be_running else ""
        return [*texts, f"storage: {storage}"] if storage else texts

    def restart_cause(self) -> str | None:
        """Why a restart would help now (in error, silent, not running), or None."""
        return restart_cause(self.get_status(), is_running=self.is_running)

    def get_health_status(self) -> dict[str, Any]:
        issues = self.health_issues()
        return {
            "is_healthy": not issues,
            "issues": issues,
            "status": self._status,
            "last_heartbeat": iso(self.last_heartbeat),
            "last_data_received": iso(self.last_data_time),
            "should_be_running": self.should_be_running,
            "is_running": self.is_running,
        }
