"""Link: one WebSocket connection of a collector, kept alive by its own thread.

A link connects, subscribes, receives, pings, and reconnects with exponential backoff;
the adapter's session turns frames into data points, which go to the collector.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

import websocket

from collectors.exchanges.base import ConfigurationError, Endpoint, FrameError, Handled
from collectors.frames import CLOSE, PING, PONG, open_socket
from tcp_dashboard.logs.redaction import without_credentials
from tcp_dashboard.logs.traces import FRAMES, trace_frame

if TYPE_CHECKING:
    from collectors.collector import BaseDataCollector

logger = logging.getLogger(__name__)

RECV_TICK = 0.25  # seconds a blocking receive waits before the link checks its clocks
CONNECT_TIMEOUT = 10.0
DRAIN_TIMEOUT = 3.0  # how long a graceful stop waits for the unsubscribe acknowledgements
MAX_BACKOFF = 60.0
WARNING_LOG_EVERY = 1000


class LinkStats:
    """Counters of one link; only its own thread writes them, so they need no lock."""

    __slots__ = (
        "errors",
        "messages_processed",
        "messages_received",
        "pings_answered",
        "pings_sent",
        "points",
        "pongs",
        "warnings",
    )

    def __init__(self) -> None:
        self.points = 0
        self.messages_received = 0
        self.messages_processed = 0
        self.errors = 0
        self.pings_answered = 0
        self.pings_sent = 0
        self.pongs = 0
        self.warnings = 0


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
        self.connected_at = 0.0  # time.monotonic() of the connection, for its lifetime
        self.reconnect_attempts = 0
        self.warnings_here = 0  # this connection's, for spacing out their log lines
        self.trace_source = f"{collector.name} {endpoint.key}"  # its name in frame traces
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
            except ConfigurationError as error:  # retrying would only repeat it
                collector.fail_permanently(self, str(error))
                break
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
        self.warnings_here = 0
        self.session = self.collector.adapter.session(self.endpoint)
        max_bytes = int(self.collector.setting("max_message_bytes"))
        self.reader = open_socket(self.endpoint.url, CONNECT_TIMEOUT, max_bytes)
        self.ws = websocket.create_connection(
            self.endpoint.url,
            socket=self.reader,
            timeout=CONNECT_TIMEOUT,
            skip_utf8_validation=True,
            enable_multithread=False,
        )
        self.ws.settimeout(RECV_TICK)
        self.connected_since = time.time()
        self.connected_at = time.monotonic()
        for frame in self.session.subscribe_frames():
            self.ws.send(frame)
        logger.info(
            "%s %s: connected to %s",
            self.collector.name,
            self.endpoint.key,
            without_credentials(self.endpoint.url),
        )

    def receive(self) -> None:
        collector = self.collector
        ws = self.ws
        reader = self.reader
        ping_interval = collector.setting("ping_interval")
        pong_timeout = collector.setting("pong_timeout")
        keepalive = collector.adapter.keepalive
        lifetime = collector.adapter.connection_lifetime
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
                if opcode == CLOSE:
                    raise ConnectionError("connection closed by the server")
            now = time.monotonic()
            collector.last_heartbeat = time.time()
            if lifetime and not self.retiring and now - self.connected_at >= lifetime:
                collector.replace_link(self, "connection lifetime reached")
            if frame is None:
                if ping_sent_at:
                    if now - ping_sent_at > pong_timeout:
                        raise ConnectionError(f"no pong within {pong_timeout}s")
                elif keepalive.kind != "none" and now - last_frame >= ping_interval:
                    if keepalive.kind == "text":
                        ws.send(keepalive.text)
                    else:
                        ws.ping()
                    stats.pings_sent += 1
                    ping_sent_at = now
                continue
            if opcode == PONG:  # an answer to a protocol ping frame
                last_frame = now
                stats.pongs += 1
                ping_sent_at = 0.0
                continue
            if opcode == PING:  # the server's keepalive, answered by the reader
                last_frame = now
                stats.pings_answered += 1
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
            trace_frame(self.trace_source, frame)
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
        if handled.permanent_error:
            collector.fail_permanently(self, handled.permanent_error)
            return
        if handled.errors or handled.warnings or handled.send or handled.reconnect:
            self.report_and_answer(handled)
        if (handled.subscribed or handled.points) and not self.subscribed.is_set():
            self.mark_live()
        points = collector.recent_trades.fresh(handled.points) if handled.points else None
        if points:
            self.stats.points += len(points)
            collector.deliver(points)
        if handled.upgrade_notice and not self.retiring:
            collector.replace_link(self)

    def report_and_answer(self, handled: Handled) -> None:
        """A frame's errors and warnings counted, its answers sent, its reconnect done."""
        for message in handled.errors:
            self.collector.record_error(self, f"{self.endpoint.key}: {message}")
        for message in handled.warnings:
            self.warn(message)
        for frame in handled.send:
            self.ws.send(frame)
        if handled.reconnect:
            raise ConnectionError(handled.reconnect)

    def warn(self, message: str) -> None:
        """Count a warning; log the first of a connection and then one in WARNING_LOG_EVERY."""
        self.stats.warnings += 1
        self.warnings_here += 1
        if self.warnings_here == 1 or self.warnings_here % WARNING_LOG_EVERY == 0:
            logger.warning(
                "%s %s: %s (warning %d on this connection)",
                self.collector.name,
                self.endpoint.key,
                message,
                self.warnings_here,
            )

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
