"""BaseDataCollector: one exchange and symbol, its WebSocket connections and their lifecycle.

Each endpoint of the adapter (OKX: public, business) gets a link: a thread that connects,
subscribes, receives, pings, and reconnects with exponential backoff. The adapter turns
frames into data points; the collector counts, calls back and hands points to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import websocket

from collectors.exchanges.base import Endpoint, ExchangeAdapter, FrameError, Handled
from collectors.types import DataType, ExchangeCollectorConfig, MarketDataPoint
from tcp_dashboard.logs.redaction import redact
from tcp_dashboard.logs.traces import FRAMES, POINTS, trace_frame, trace_points

logger = logging.getLogger(__name__)

RECV_TICK = 0.25  # seconds a blocking receive waits before the link checks its clocks
CONNECT_TIMEOUT = 10.0
DRAIN_TIMEOUT = 3.0  # how long a graceful stop waits for the unsubscribe acknowledgements
MAX_BACKOFF = 60.0

DEFAULTS = {
    "ping_interval": 25.0,
    "pong_timeout": 10.0,
    "max_reconnect_attempts": 5,
    "reconnect_delay": 5.0,
    "max_silence_duration": 60.0,
}


class Sink(Protocol):
    def put(self, points: list[MarketDataPoint]) -> None: ...


def iso(timestamp: float | None) -> str:
    """ISO 8601 UTC for a time.time() value; '' for never."""
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def without_raw(point: MarketDataPoint) -> MarketDataPoint:
    data = {key: value for key, value in point.data.items() if key != "raw"}
    return MarketDataPoint(point.exchange, point.symbol, point.timestamp, point.data_type, data)


class ReadAheadSocket:
    """A connected socket that reads 64 KiB at a time, and reads WebSocket frames from that.

    websocket-client does the handshake and sends; received frames are read here.
    websocket-client reads each frame with several exact-size recv() calls and builds
    objects around it; at tens of thousands of frames a second that costs more than
    parsing the messages (bench/ingest.py). Server frames are unmasked (RFC 6455 5.1),
    so a frame is a 2-10 byte header and its payload.
    """

    CHUNK = 65536

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    def recv(self, size: int) -> bytes:
        """Socket-style read, for the handshake."""
        if self._pos >= len(self._data):
            data = self._sock.recv(self.CHUNK)
            if not data:
                return b""
            self._data, self._pos = data, 0
        piece = self._data[self._pos : self._pos + size]
        self._pos += len(piece)
        return piece

    def _ensure(self, size: int) -> None:
        """Buffer `size` unread bytes; a timeout leaves what was read for the next call."""
        while len(self._data) - self._pos < size:
            chunk = self._sock.recv(self.CHUNK)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self._data, self._pos = self._data[self._pos :] + chunk, 0

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame; TimeoutError when none came in time."""
        self._ensure(2)
        first, second = self._data[self._pos], self._data[self._pos + 1]
        if first & 0x70 or second & 0x80:
            raise ConnectionError("protocol error: reserved bits or a masked server frame")
        length, header = second & 0x7F, 2
        if length == 126:
            self._ensure(4)
            length, header = int.from_bytes(self._data[self._pos + 2 : self._pos + 4]), 4
        elif length == 127:
            self._ensure(10)
            length, header = int.from_bytes(self._data[self._pos + 2 : self._pos + 10]), 10
        self._ensure(header + length)
        start = self._pos + header
        self._pos = start + length
        return bool(first & 0x80), first & 0x0F, self._data[start : self._pos]

    def read_message(self, ws: websocket.WebSocket) -> tuple[int, bytes]:
        """The next data message (text or binary) or close frame; answers pings itself."""
        while True:
            fin, opcode, payload = self.read_frame()
            if opcode == websocket.ABNF.OPCODE_PING:
                ws.pong(payload)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return opcode, payload
            elif opcode == websocket.ABNF.OPCODE_CONT:
                if not self._fragment_opcode:
                    raise ConnectionError("protocol error: continuation without a start")
                self._fragments.append(payload)
                if fin:
                    message = b"".join(self._fragments)
                    opcode, self._fragment_opcode, self._fragments = self._fragment_opcode, 0, []
                    return opcode, message
            elif opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                if fin:
                    return opcode, payload
                self._fragment_opcode, self._fragments = opcode, [payload]
            elif opcode != websocket.ABNF.OPCODE_PONG:
                raise ConnectionError(f"protocol error: unknown opcode {opcode}")

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def open_socket(url: str, timeout: float) -> ReadAheadSocket:
    """A TCP (TLS for wss://) connection to the WebSocket URL's host."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    sock = socket.create_connection(
        (parts.hostname, parts.port or (443 if secure else 80)), timeout=timeout
    )
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if secure:
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
    return ReadAheadSocket(sock)


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


class LinkStats:
    """Counters of one link; only its own thread writes them, so they need no lock."""

    __slots__ = (
        "errors",
        "messages_processed",
        "messages_received",
        "pings_sent",
        "points",
        "pongs",
    )

    def __init__(self) -> None:
        self.points = 0
        self.messages_received = 0
        self.messages_processed = 0
        self.errors = 0
        self.pings_sent = 0
        self.pongs = 0


class Link:
    """One WebSocket connection to one endpoint, kept alive by its own thread."""

    def __init__(self, collector: BaseDataCollector, endpoint: Endpoint, *, successor_of=None):
        self.collector = collector
        self.endpoint = endpoint
        self.stats = LinkStats()
        self.stop_event = threading.Event()
        self.drain_requested = threading.Event()
        self.subscribed = threading.Event()
        self.finished = threading.Event()
        self.retiring = False
        self.predecessor: Link | None = successor_of
        self.ws: websocket.WebSocket | None = None
        self.connected_since = 0.0
        self.reconnect_attempts = 0
        self.thread = threading.Thread(
            target=self.run, name=f"{collector.name}:{endpoint.key}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.close_socket()

    def drain(self) -> None:
        """Stop gracefully: unsubscribe, keep reading until the server confirms, then close."""
        if self.ws is None or not self.subscribed.is_set():
            self.stop()
        else:
            self.drain_requested.set()

    def close_socket(self) -> None:
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):  # the socket may be gone already
                ws.shutdown()

    def run(self) -> None:
        try:
            self.run_connections()
        finally:
            self.finished.set()
            self.collector.link_finished(self)

    def run_connections(self) -> None:
        collector = self.collector
        while not self.stop_event.is_set():
            try:
                self.connect()
                self.receive()
            except Exception as error:  # any failure ends this connection only
                if self.stop_event.is_set() or self.retiring:
                    break
                collector.record_error(self, f"{self.endpoint.key} connection: {error}")
            finally:
                self.close_socket()
                self.ws = None
                self.connected_since = 0.0
            if self.stop_event.is_set() or self.retiring:
                break
            self.reconnect_attempts += 1
            collector.count_reconnect()
            if self.reconnect_attempts > collector.setting("max_reconnect_attempts"):
                collector.give_up(self)
                break
            delay = min(
                collector.setting("reconnect_delay") * 2 ** (self.reconnect_attempts - 1),
                MAX_BACKOFF,
            )
            collector.set_status("reconnecting")
            logger.warning(
                "%s %s: reconnecting in %.1fs (attempt %d)",
                collector.name,
                self.endpoint.key,
                delay,
                self.reconnect_attempts,
            )
            if self.wait(delay):
                break

    def wait(self, seconds: float) -> bool:
        """Sleep between attempts, still beating; True when asked to stop."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop_event.wait(min(left, RECV_TICK * 4)):
                return True
            self.collector.last_heartbeat = time.time()
        return self.stop_event.is_set()

    def connect(self) -> None:
        self.subscribed.clear()
        self.session = self.collector.adapter.session(self.endpoint)
        self.reader = open_socket(self.endpoint.url, CONNECT_TIMEOUT)
        self.ws = websocket.create_connection(
            self.endpoint.url,
            socket=self.reader,
            timeout=CONNECT_TIMEOUT,
            skip_utf8_validation=True,
            enable_multithread=False,
        )
        self.ws.settimeout(RECV_TICK)
        self.connected_since = time.time()
        for frame in self.session.subscribe_frames():
            self.ws.send(frame)
        logger.info(
            "%s %s: connected to %s", self.collector.name, self.endpoint.key, self.endpoint.url
        )

    def receive(self) -> None:
        collector = self.collector
        ws = self.ws
        reader = self.reader
        ping_interval = collector.setting("ping_interval")
        pong_timeout = collector.setting("pong_timeout")
        stats = self.stats
        last_frame = time.monotonic()
        ping_sent_at = 0.0
        drain_deadline = 0.0
        acks_expected = 0
        while not self.stop_event.is_set():
            if self.drain_requested.is_set() and not drain_deadline:
                frames = self.session.unsubscribe_frames()
                for frame in frames:
                    ws.send(frame)
                acks_expected = len(self.endpoint.subscriptions) if frames else 0
                drain_deadline = time.monotonic() + DRAIN_TIMEOUT
            if drain_deadline and (acks_expected <= 0 or time.monotonic() > drain_deadline):
                self.stop_event.set()
                return
            try:
                opcode, frame = reader.read_message(ws)
            except TimeoutError:
                frame = None
            else:
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise ConnectionError("connection closed by the server")
            now = time.monotonic()
            collector.last_heartbeat = time.time()
            if frame is None:
                if ping_sent_at:
                    if now - ping_sent_at > pong_timeout:
                        raise ConnectionError(f"no pong within {pong_timeout}s")
                elif now - last_frame >= ping_interval:
                    ws.send(collector.adapter.ping_frame)
                    stats.pings_sent += 1
                    ping_sent_at = now
                continue
            last_frame = now
            stats.messages_received += 1
            handled = self.handle(frame)
            if handled is None:
                continue
            if handled.is_pong:
                stats.pongs += 1
                ping_sent_at = 0.0
            if handled.unsubscribed and drain_deadline:
                acks_expected -= 1
            if ping_sent_at and now - ping_sent_at > pong_timeout:
                raise ConnectionError(f"no pong within {pong_timeout}s")
            self.after_frame(handled)

    def handle(self, frame: str | bytes) -> Handled | None:
        if FRAMES.isEnabledFor(logging.DEBUG):  # websocket_clients.verbose (docs/logging.md)
            trace_frame(f"{self.collector.name} {self.endpoint.key}", frame)
        try:
            handled = self.session.handle(frame)
        except FrameError as error:
            self.collector.record_error(self, f"{self.endpoint.key} frame: {error}")
            return None
        except Exception as error:  # a parser bug must not stop the collector
            logger.exception("%s: unexpected parser failure", self.collector.name)
            self.collector.record_error(self, f"{self.endpoint.key} parser: {error!r}"[:300])
            return None
        self.stats.messages_processed += 1
        return handled

    def after_frame(self, handled: Handled) -> None:
        collector = self.collector
        for message in handled.errors:
            collector.record_error(self, f"{self.endpoint.key}: {message}")
        for frame in handled.send:
            self.ws.send(frame)
        if handled.subscribed or handled.points:
            self.mark_live()
        points = collector.recent_trades.fresh(handled.points) if handled.points else None
        if points:
            self.stats.points += len(points)
            collector.deliver(points)
        if handled.upgrade_notice and not self.retiring:
            collector.replace_link(self)

    def mark_live(self) -> None:
        if self.subscribed.is_set():
            return
        self.subscribed.set()
        self.reconnect_attempts = 0
        self.collector.link_live(self)
        predecessor, self.predecessor = self.predecessor, None
        if predecessor is not None:
            logger.info(
                "%s %s: new connection live, closing the old one",
                self.collector.name,
                self.endpoint.key,
            )
            predecessor.drain()


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
        self.started_at = 0.0
        self.last_heartbeat = 0.0
        self.last_data_time = 0.0
        self.callback_errors = 0
        self.recent_trades = RecentTrades()
        self.restarts = 0
        self.total_reconnects = 0
        self.last_error = ""
        self.last_restart_time = 0.0

    # settings ---------------------------------------------------------------

    def setting(self, name: str):
        params = self.config.custom_params or {}
        value = params.get(name)
        return DEFAULTS[name] if value is None else value

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
            self.started_at = time.time()
            self.last_heartbeat = self.started_at
            self.set_status("starting")
            self._links = [Link(self, endpoint) for endpoint in self.adapter.endpoints()]
            for link in self._links:
                link.start()
        timeout = CONNECT_TIMEOUT + 2
        return await asyncio.to_thread(self._live.wait, timeout)

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
        if not force and self.sink is not None and hasattr(self.sink, "flush"):
            await asyncio.to_thread(self.sink.flush, 30.0)
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

    def link_finished(self, link: Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
                self._retire_stats(link)

    def replace_link(self, link: Link) -> None:
        """The server will close `link` soon: open its successor first, lose nothing."""
        with self._lock:
            if not self.should_be_running:
                return
            logger.info(
                "%s %s: upgrade notice, opening a new connection", self.name, link.endpoint.key
            )
            link.retiring = True
            successor = Link(self, link.endpoint, successor_of=link)
            self._links.append(successor)
            successor.start()

    def give_up(self, link: Link) -> None:
        attempts = self.setting("max_reconnect_attempts")
        self.record_error(link, f"{link.endpoint.key}: gave up after {attempts} reconnect attempts")
        self.set_status("error")
        with self._lock:
            for other in self._links:
                if other is not link:
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
        now = time.time()
        issues = []
        if self.should_be_running and not self.is_running:
            issues.append(f"not running (status {self._status})")
        if self._status == "error":
            issues.append(f"error: {self.last_error}")
        if self._status == "reconnecting":
            issues.append("reconnecting")
        if self.should_be_running:
            silence = self._seconds_since(self.last_data_time, now)
            limit = float(self.setting("max_silence_duration"))
            if silence > limit:
                issues.append(f"no data for {silence:.0f}s (max_silence_duration {limit:.0f}s)")
            heartbeat_age = self._seconds_since(self.last_heartbeat, now)
            if self.is_running and heartbeat_age > max(10.0, 4 * RECV_TICK):
                issues.append(f"no heartbeat for {heartbeat_age:.0f}s")
        elif self.is_running:
            issues.append("running but should be stopped")
        return issues

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
