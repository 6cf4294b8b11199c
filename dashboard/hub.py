"""The live hub of one web server process: one source of updates, fanned out to every viewer.

Viewers (browsers holding a Server-Sent Events stream) subscribe to topics: the Redis
channels the collectors publish (`candles:…`, `trades:…`, `books:…`, `tickers:…`) and two
snapshots the hub makes itself (`dashboard:board`, `dashboard:collectors`). Whatever the
number of viewers, the process holds ONE Redis subscription (to the union of their
channels), formats each message once per kind of viewer, and hands the same bytes to all
of them. Without Redis (the embedded default) the same channels are read from the database
by one loop per process every POLL_EVERY seconds, and viewers are told so.

Each viewer keeps only the newest message per key (a forming candle, a book, a price), so
a slow browser gets fewer, fresher messages, never a growing queue; one that still falls
MAX_PENDING messages behind is disconnected and reconnects with a fresh page state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
import redis.asyncio
from django.conf import settings
from django.db import connections

from dashboard import selectors

logger = logging.getLogger(__name__)

BOARD = "dashboard:board"
COLLECTORS = "dashboard:collectors"
BOARD_EVERY = 5.0  # seconds between board snapshots (24 h figures, trades per minute)
COLLECTORS_EVERY = 2.0  # seconds between collector snapshots
POLL_EVERY = 2.0  # seconds between database reads without Redis
MAX_PENDING = 2000
REDIS_PREFIXES = ("candles:", "trades:", "books:", "tickers:")
# Subscribed for the hub's whole life, so its connection always has a subscription to read.
HUB_CHANNEL = "dashboard:hub"

Formatted = tuple[str | None, bytes] | None
Formatter = Callable[[str, bytes], Formatted]


def sse(event: str, data: bytes) -> bytes:
    """One Server-Sent Event; `data` is one line of JSON."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


# formatters: (channel, message) -> (key, event bytes); one key keeps only its newest ---------


def candle_event(channel: str, raw: bytes) -> Formatted:
    message = orjson.loads(raw)
    return f"candle:{message['timeframe']}:{message['timestamp']}", sse("candle", raw)


def trades_event(channel: str, raw: bytes) -> Formatted:
    return None, sse("trades", raw)


def tick_event(channel: str, raw: bytes) -> Formatted:
    """A market's last trade only, for the board."""
    message = orjson.loads(raw)
    if not message["trades"]:
        return None
    last = message["trades"][-1]
    market = f"{message['exchange']}:{message['symbol']}"
    body = {"market": market, "price": last["price"], "ts": last["ts"], "count": message["count"]}
    return f"tick:{market}", sse("tick", orjson.dumps(body))


def book_event(channel: str, raw: bytes) -> Formatted:
    return "book", sse("book", raw)


def ticker_event(channel: str, raw: bytes) -> Formatted:
    return "ticker", sse("ticker", raw)


def snapshot_event(channel: str, raw: bytes) -> Formatted:
    name = channel.partition(":")[2]
    return name, sse(name, raw)


class Viewer:
    """One browser's stream: the events waiting to be written, newest per key."""

    def __init__(self, pace: float = 0.1, limit: int = MAX_PENDING) -> None:
        self.pace = pace  # least seconds between two writes: what arrives meanwhile coalesces
        self.limit = limit
        self.pending: dict[Any, bytes] = {}
        self.ready = asyncio.Event()
        self.overflowed = False
        self.topics: list[tuple[str, Formatter]] = []
        self._sequence = 0

    def push(self, key: str | None, chunk: bytes) -> None:
        if key is None:
            self._sequence += 1
            key = self._sequence
        self.pending[key] = chunk
        if len(self.pending) > self.limit:
            self.overflowed = True
        self.ready.set()

    def take(self) -> bytes:
        chunk = b"".join(self.pending.values())
        self.pending.clear()
        self.ready.clear()
        return chunk


def _in_thread(function: Callable, *args) -> Any:
    """Run database work, then give this thread's connections back (to the pool)."""
    try:
        return function(*args)
    finally:
        connections.close_all()


async def run_db(function: Callable, *args) -> Any:
    return await asyncio.to_thread(_in_thread, function, *args)


class Hub:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.mode = "redis" if redis_url else "database"
        self.routes: dict[str, dict[Formatter, set[Viewer]]] = {}
        self.snapshots: dict[str, bytes] = {}
        self.interrupted = ""  # why live updates stopped, while they are stopped
        self._subscribed: set[str] = set()
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._sync_lock = asyncio.Lock()
        self._tasks: dict[str, asyncio.Task] = {}  # the long-running ones, by name
        self._background: set[asyncio.Task] = set()
        self._cursors: dict[str, Any] = {}

    # viewers -------------------------------------------------------------------------------

    def subscribe(self, viewer: Viewer, topics: list[tuple[str, Formatter]]) -> None:
        viewer.topics = topics
        for channel, formatter in topics:
            self.routes.setdefault(channel, {}).setdefault(formatter, set()).add(viewer)
            if channel in self.snapshots:
                formatted = formatter(channel, self.snapshots[channel])
                if formatted is not None:
                    viewer.push(*formatted)
        if BOARD in self.routes:
            self._start(BOARD, self._snapshots, BOARD, selectors.board_snapshot, BOARD_EVERY)
        if COLLECTORS in self.routes:
            self._start(
                COLLECTORS, self._snapshots, COLLECTORS, collector_snapshot, COLLECTORS_EVERY
            )
        if self.mode == "redis":
            self._start("redis", self._read_redis)
            self._spawn(self._sync_subscriptions())
        else:
            self._start("database", self._poll_database)

    def unsubscribe(self, viewer: Viewer) -> None:
        for channel, formatter in viewer.topics:
            by_formatter = self.routes.get(channel, {})
            viewers = by_formatter.get(formatter, set())
            viewers.discard(viewer)
            if not viewers:
                by_formatter.pop(formatter, None)
            if not by_formatter:
                self.routes.pop(channel, None)
                self._cursors.pop(channel, None)
        viewer.topics = []
        if self.mode == "redis":
            self._spawn(self._sync_subscriptions())

    def dispatch(self, channel: str, raw: bytes) -> None:
        for formatter, viewers in list(self.routes.get(channel, {}).items()):
            try:
                formatted = formatter(channel, raw)
            except (ValueError, KeyError, TypeError, IndexError) as error:
                logger.warning("live: unreadable message on %s: %s", channel, error)
                return
            if formatted is None:
                continue
            key, chunk = formatted
            for viewer in viewers:
                viewer.push(key, chunk)

    def notice(self, text: str) -> None:
        """Tell every viewer that live updates stopped (or, with "", resumed)."""
        self.interrupted = text
        chunk = sse("notice", orjson.dumps({"interrupted": text}))
        for viewer in {v for by in self.routes.values() for vs in by.values() for v in vs}:
            viewer.push("notice", chunk)

    # tasks ---------------------------------------------------------------------------------

    def _start(self, name: str, function: Callable, *args) -> None:
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.get_running_loop().create_task(function(*args))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._background.discard)

    def close(self) -> None:
        """Cancel what the hub runs (its subscription, its loops)."""
        for task in [*self._tasks.values(), *self._background]:
            task.cancel()

    async def _snapshots(self, channel: str, compute: Callable, every: float) -> None:
        """While anyone watches `channel`, compute it every `every` seconds and send it."""
        failing = False
        while channel in self.routes:
            started = time.monotonic()
            try:
                snapshot = await run_db(compute)
            except Exception as error:  # the database may be away; try again next time
                if not failing:
                    logger.warning("live: %s snapshot failed: %s", channel, error)
                failing = True
            else:
                failing = False
                raw = orjson.dumps(snapshot)
                self.snapshots[channel] = raw
                self.dispatch(channel, raw)
            await asyncio.sleep(max(0.1, every - (time.monotonic() - started)))
        self.snapshots.pop(channel, None)

    # the Redis source ----------------------------------------------------------------------

    def _wanted(self) -> set[str]:
        return {channel for channel in self.routes if channel.startswith(REDIS_PREFIXES)}

    async def _sync_subscriptions(self) -> None:
        async with self._sync_lock:
            pubsub = self._pubsub
            if pubsub is None:  # (re)connecting: the reader subscribes to all wanted
                return
            wanted = self._wanted()
            try:
                if added := wanted - self._subscribed:
                    await pubsub.subscribe(*added)
                if removed := self._subscribed - wanted:
                    await pubsub.unsubscribe(*removed)
            except (redis.RedisError, OSError) as error:
                logger.warning("live: Redis subscription failed: %s", error)
                return
            self._subscribed = wanted

    async def _read_redis(self) -> None:
        delay = 0.5
        while True:
            client = redis.asyncio.Redis.from_url(
                self.redis_url, socket_connect_timeout=5, health_check_interval=30
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                async with self._sync_lock:
                    wanted = self._wanted()
                    await pubsub.subscribe(HUB_CHANNEL, *wanted)
                    self._subscribed = wanted
                    self._pubsub = pubsub
                if self.interrupted:
                    logger.info("live: Redis answers again")
                    self.notice("")
                delay = 0.5
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message["type"] == "message":
                        self.dispatch(message["channel"].decode(), message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as error:
                if not self.interrupted:
                    logger.warning("live: Redis subscription lost: %s", error)
                    self.notice("live updates interrupted: Redis does not answer; retrying")
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    # the database source (no Redis) --------------------------------------------------------

    async def _poll_database(self) -> None:
        failing = False
        while any(channel.startswith(REDIS_PREFIXES) for channel in self.routes):
            started = time.monotonic()
            channels = sorted(self._wanted())
            try:
                found = await run_db(selectors.updates_since, channels, self._cursors)
            except Exception as error:  # the database may be away; try again next time
                if not failing:
                    logger.warning("live: reading updates from the database failed: %s", error)
                failing = True
            else:
                failing = False
                for channel, message in found:
                    self.dispatch(channel, orjson.dumps(message))
            await asyncio.sleep(max(0.1, POLL_EVERY - (time.monotonic() - started)))
        self._cursors.clear()


def collector_snapshot() -> dict[str, Any]:
    return selectors.collector_board().as_dict()


_hub: Hub | None = None


def get_hub() -> Hub:
    """This process's hub, made on first use on the running event loop."""
    global _hub
    if _hub is None:
        _hub = Hub(settings.REDIS_URL)
    return _hub
