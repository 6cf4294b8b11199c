"""CollectorHost: the collectors of one worker process, their leases and their heartbeats.

The host owns a CollectorManager and one StorageSink, and runs them on an asyncio loop
in a thread of its own, beside whatever else the process does (a Celery worker's
consumer and pool). Starting a stream takes its lease first; every heartbeat interval
the host renews the leases of the streams it runs and publishes their status. A stream
whose lease cannot be renewed (taken over, or unreachable for a whole TTL) is stopped,
and what it receives once its lease may have expired is never stored (LeaseFence).

Restarts of unhealthy collectors are decided by the health check (hosting.reconcile),
not here, so that one place decides and records them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

import redis

from collectors.collector import BaseDataCollector
from collectors.config.store import collector_configs_from_db
from collectors.factory import ExchangeFactory
from collectors.hosting import heartbeat, leases
from collectors.hosting.heartbeat import WorkerBeat, config_key, heartbeat_of
from collectors.hosting.live_candles import LiveCandles
from collectors.hosting.runner import sink_buffer_size
from collectors.manager import CollectorManager
from collectors.storage.sink import StorageSink
from collectors.types import ExchangeCollectorConfig
from marketdata.selectors import newest_stored_trade

logger = logging.getLogger(__name__)

CONTROL_TIMEOUT = 90.0  # longest a start/stop/restart waits: a stop flushes up to 30 s

ConfigLoader = Callable[[str], ExchangeCollectorConfig | None]


def configured_collector(name: str) -> ExchangeCollectorConfig | None:
    """The stream's configuration when the database wants it collected, else None."""
    return next((c for c in collector_configs_from_db() if c.name == name), None)


def sink_name(worker: str) -> str:
    """A storage sink name (a file name) for a worker: the same worker finds its spill files."""
    return "collectors-" + re.sub(r"[^\w.-]", "_", worker)


@dataclass(slots=True, frozen=True)
class ControlResult:
    """What a start, stop or restart did; `running` says whether this worker runs it now."""

    name: str
    worker: str
    outcome: str
    running: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Hosted:
    collector: BaseDataCollector
    config: str  # config_key() of the configuration it runs with
    # time.monotonic() by which the lease has surely expired unless renewed again; taken
    # before the renewal was sent, so it errs early, never late.
    lease_deadline: float
    dropped: int = 0  # points refused because the lease might have expired
    lost: bool = False  # the lease is gone; the collector is being stopped

    def holds_lease(self) -> bool:
        return not self.lost and time.monotonic() < self.lease_deadline


class LeaseFence:
    """A collector's sink that stores only while its lease surely holds.

    A worker frozen past its lease TTL (a stopped process, a long pause) may wake up
    with frames in its sockets after another worker took the stream over; what those
    frames carry is dropped here instead of being stored twice.
    """

    def __init__(self, sink: StorageSink, entry: Hosted) -> None:
        self.sink = sink
        self.entry = entry

    def put(self, points: list) -> None:
        if self.entry.holds_lease():
            self.sink.put(points)
            return
        if not self.entry.dropped:
            logger.warning(
                "%s: lease may have expired, dropping data until it stops",
                self.entry.collector.name,
            )
        self.entry.dropped += len(points)

    def flush(self, timeout: float | None = None) -> bool:
        return self.sink.flush(timeout)

    def flush_unless_down(self, timeout: float | None = None) -> bool:
        return getattr(self.sink, "flush_unless_down", self.sink.flush)(timeout)

    def wait_for_room(self, timeout: float | None = None) -> bool:
        return self.sink.wait_for_room(timeout)

    def problem(self) -> str:
        return self.sink.problem()


class CollectorHost:
    """Runs collectors in this process, each under its Redis lease."""

    def __init__(
        self,
        worker: str,
        *,
        client: redis.Redis | None = None,
        sink: StorageSink | None = None,
        lease_ttl: float | None = None,
        heartbeat_interval: float | None = None,
        load_config: ConfigLoader = configured_collector,
    ) -> None:
        self.worker = worker
        self.owner = leases.new_owner(worker)
        self.client = client or leases.redis_client()
        self.lease_ttl = lease_ttl or leases.lease_ttl()
        self.heartbeat_interval = heartbeat_interval or heartbeat.heartbeat_interval()
        if self.heartbeat_interval * 2 > self.lease_ttl:
            raise ValueError(
                f"the heartbeat interval ({self.heartbeat_interval}s) must be at most half "
                f"the lease TTL ({self.lease_ttl}s), or leases expire between renewals"
            )
        self.heartbeat_ttl = heartbeat.heartbeat_ttl(self.heartbeat_interval, self.lease_ttl)
        self.load_config = load_config
        self._own_sink = sink is None
        self.sink = sink or StorageSink(name=sink_name(worker))
        # No restart loop of its own: the health check restarts hosted collectors.
        self.manager = CollectorManager(sink=self.sink, auto_restart=False)
        self.live_candles = LiveCandles(publish_to=self.client)
        self._hosted: dict[str, Hosted] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._publish_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._maintenance: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._closing = False
        self._redis_failing = False

    # lifecycle, called from the worker ------------------------------------------------

    def start(self) -> None:
        if self._loop is not None:
            raise RuntimeError("this collector host was already started")
        if self._own_sink:
            self.sink.start()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="collector-host", daemon=True)
        self._thread.start()
        self._call(self._begin(), timeout=10)
        logger.info(
            "collector host %s up: lease TTL %gs, heartbeat every %gs",
            self.worker,
            self.lease_ttl,
            self.heartbeat_interval,
        )

    def stop(self, timeout: float = 60.0, *, force: bool = False) -> None:
        """Stop every collector (flushing the sink unless forced), give up leases, stop."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        logger.info("collector host %s stopping %d collectors", self.worker, len(self._hosted))
        try:
            self._call(self._shut_down(force), timeout=max(1.0, timeout - 5))
        except TimeoutError:
            logger.error("collector host %s: collectors did not stop in time", self.worker)
        except Exception:  # stop the rest anyway: the loop, then the sink
            logger.exception("collector host %s: stopping collectors failed", self.worker)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.live_candles.stop()
        if self._own_sink:
            self.sink.stop(timeout=max(1.0, deadline - time.monotonic()))
        logger.info("collector host %s stopped", self.worker)

    def terminate(self) -> None:
        """Cold shutdown: no flush wait; the sink spills what it could not write to disk."""
        self.stop(timeout=10.0, force=True)

    # control, called from task threads --------------------------------------------------

    def start_collector(self, name: str) -> ControlResult:
        """Run the stream here unless another worker holds its lease or it is not configured."""
        config = self.load_config(name)
        if config is None:
            return ControlResult(name, self.worker, "not configured", name in self._hosted)
        return self._call(self._start(config, newest_stored_trade(config)))

    def stop_collector(self, name: str, reason: str = "requested") -> ControlResult:
        return self._call(self._stop(name, reason))

    def restart_collector(self, name: str, reason: str = "requested") -> ControlResult:
        """Restart with the configuration stored now; stop it when it is no longer configured."""
        config = self.load_config(name)
        resume = newest_stored_trade(config) if config is not None else None
        return self._call(self._restart(name, config, reason, resume))

    def hosted(self) -> list[str]:
        return sorted(self._hosted)

    def get_status(self) -> dict[str, Any]:
        return {"worker": self.worker, **self.manager.get_status()}

    # the loop ---------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _call(self, coroutine: Coroutine, timeout: float = CONTROL_TIMEOUT):
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the collector host is not running")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    async def _begin(self) -> None:
        self._maintenance = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # the next tick tries again; the leases have slack for it
                logger.exception("collector host %s: maintenance tick failed", self.worker)
            await asyncio.sleep(self.heartbeat_interval)

    async def _tick(self) -> None:
        hosted = [(name, entry) for name, entry in list(self._hosted.items()) if not entry.lost]
        sent_at = time.monotonic()
        renewed = await asyncio.to_thread(self._renew, hosted)
        now = time.monotonic()
        for name, entry in hosted:
            if renewed.get(name):
                entry.lease_deadline = sent_at + self.lease_ttl
            elif name in renewed or now >= entry.lease_deadline:
                # Lost for sure (another owner), or unrenewable for so long it may have expired.
                logger.warning("%s: lease lost on %s, stopping the collector", name, self.worker)
                entry.lost = True
                task = asyncio.create_task(self._take_down(name, entry, "lease lost"))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        await asyncio.to_thread(self._publish)

    def _renew(self, hosted: list[tuple[str, Hosted]]) -> dict[str, bool]:
        """name -> renewed; a name is missing when Redis could not be asked."""
        renewed = {}
        try:
            for name, _ in hosted:
                renewed[name] = leases.renew(self.client, name, self.owner, self.lease_ttl)
        except redis.RedisError as error:
            self._note_redis_failure(error)
        return renewed

    def _publish(self, only: set[str] | None = None) -> None:
        with self._publish_lock:
            # A stream whose lease is gone is not reported: its new host reports it.
            entries = [
                (name, entry)
                for name, entry in list(self._hosted.items())
                if (only is None or name in only) and entry.holds_lease()
            ]
            beats = [
                heartbeat_of(entry.collector, self.worker, entry.config) for _, entry in entries
            ]
            worker = WorkerBeat(self.worker, self.hosted(), os.getpid())
            try:
                heartbeat.publish(self.client, beats, worker, self.heartbeat_ttl)
            except redis.RedisError as error:
                self._note_redis_failure(error)
                return
        if self._redis_failing:
            self._redis_failing = False
            logger.warning("collector host %s: Redis answers again", self.worker)

    def _note_redis_failure(self, error: Exception) -> None:
        if not self._redis_failing:
            self._redis_failing = True
            logger.error(
                "collector host %s: Redis unavailable (%s); collectors keep running for "
                "up to one lease TTL",
                self.worker,
                error,
            )

    def _forget(self, name: str, entry: Hosted) -> None:
        """Stop reporting the stream and give its lease up (a no-op when it was lost)."""
        with self._publish_lock:
            if self._hosted.get(name) is entry:
                del self._hosted[name]
        try:
            heartbeat.remove(self.client, name, self.worker)
            leases.release(self.client, name, self.owner)
            worker = WorkerBeat(self.worker, self.hosted(), os.getpid())
            heartbeat.publish(self.client, [], worker, self.heartbeat_ttl)
        except redis.RedisError as error:
            self._note_redis_failure(error)

    # control on the loop -------------------------------------------------------------

    async def _start(
        self, config: ExchangeCollectorConfig, resume_after: str | None = None
    ) -> ControlResult:
        name = config.name
        async with self._locks[name]:
            if self._closing:
                return ControlResult(name, self.worker, "shutting down", False)
            if name in self._hosted:
                return ControlResult(name, self.worker, "already running", True)
            sent_at = time.monotonic()
            if not await asyncio.to_thread(
                leases.acquire, self.client, name, self.owner, self.lease_ttl
            ):
                owner = await asyncio.to_thread(leases.holder, self.client, name)
                holder = leases.worker_of(owner) if owner else ""
                return ControlResult(name, self.worker, "held elsewhere", False, holder)
            if self._closing:  # the shutdown began while the lease was being taken
                await asyncio.to_thread(leases.release, self.client, name, self.owner)
                return ControlResult(name, self.worker, "shutting down", False)
            try:
                collector = ExchangeFactory.create_collector(config)
            except ValueError as error:
                await asyncio.to_thread(leases.release, self.client, name, self.owner)
                return ControlResult(name, self.worker, "invalid configuration", False, str(error))
            if resume_after is not None:  # a failover: fill in what the last host missed
                collector.adapter.resume_after_trade(resume_after)
            entry = Hosted(collector, config_key(config), sent_at + self.lease_ttl)
            collector.sink = LeaseFence(self.sink, entry)
            self.manager.add_collector(collector)
            self.live_candles.attach(collector)
            self._hosted[name] = entry
            self._fit_sink()
            try:
                live = await collector.start()
            except BaseException:
                await collector.stop(force=True)
                self._remove(name)
                await asyncio.to_thread(self._forget, name, entry)
                raise
            await asyncio.to_thread(self._publish, {name})
            logger.info("%s: started on %s", name, self.worker)
            detail = "" if live else "not connected yet, still trying"
            return ControlResult(name, self.worker, "started", True, detail)

    async def _stop(self, name: str, reason: str) -> ControlResult:
        entry = self._hosted.get(name)
        if entry is None:
            return ControlResult(name, self.worker, "not running", False)
        await self._take_down(name, entry, reason)
        return ControlResult(name, self.worker, "stopped", False, reason)

    async def _take_down(
        self, name: str, entry: Hosted, reason: str, *, force: bool = False
    ) -> None:
        async with self._locks[name]:
            if self._hosted.get(name) is not entry:
                return  # stopped or replaced meanwhile
            logger.info("%s: stopping on %s (%s)", name, self.worker, reason)
            # Leases stay renewed while it stops, so no other worker starts it meanwhile.
            await entry.collector.stop(force=force)
            self._remove(name)
            await asyncio.to_thread(self._forget, name, entry)

    async def _restart(
        self,
        name: str,
        config: ExchangeCollectorConfig | None,
        reason: str,
        resume_after: str | None = None,
    ) -> ControlResult:
        entry = self._hosted.get(name)
        if entry is None:
            return ControlResult(name, self.worker, "not running", False)
        if config is None:
            await self._take_down(name, entry, "no longer configured")
            return ControlResult(name, self.worker, "stopped", False, "no longer configured")
        async with self._locks[name]:
            if self._hosted.get(name) is not entry or entry.lost:
                return ControlResult(name, self.worker, "not running", False)
            logger.info("%s: restarting on %s (%s)", name, self.worker, reason)
            key = config_key(config)
            if key == entry.config:
                live = await entry.collector.restart()
            else:
                live = await self._replace(entry, config, key, resume_after)
            await asyncio.to_thread(self._publish, {name})
        detail = reason if live else f"{reason}; not connected yet, still trying"
        return ControlResult(name, self.worker, "restarted", True, detail)

    async def _replace(
        self, entry: Hosted, config: ExchangeCollectorConfig, key: str, resume_after: str | None
    ) -> bool:
        """Swap in a collector built from the changed configuration, keeping its restart count."""
        old = entry.collector
        new = ExchangeFactory.create_collector(config)
        if resume_after is not None:
            new.adapter.resume_after_trade(resume_after)
        await old.stop()
        self._remove(old.name)
        new.restarts = old.restarts + 1
        new.last_restart_time = time.time()
        new.sink = old.sink
        self.manager.add_collector(new)
        self.live_candles.attach(new)
        entry.collector, entry.config = new, key
        self._fit_sink()
        return await new.start()

    def _remove(self, name: str) -> None:
        self.live_candles.detach(name)
        self.manager.remove_collector(name)
        self._fit_sink()

    def _fit_sink(self) -> None:
        """This worker's sink writes at the largest buffer_size of the streams it runs (the
        exchange configuration's); a sink given to the host is left as it was made."""
        if self._own_sink:
            names = self.manager.list_collectors()
            configs = [self.manager.get_collector(name).config for name in names]
            self.sink.set_buffer_size(sink_buffer_size(configs))

    async def _shut_down(self, force: bool) -> None:
        # A start in progress adds its collector while others stop: repeat until none is left.
        while entries := list(self._hosted.items()):
            await asyncio.gather(
                *(
                    self._take_down(name, entry, "worker shutdown", force=force)
                    for name, entry in entries
                )
            )
        if self._maintenance is not None:
            self._maintenance.cancel()
        await asyncio.to_thread(self._remove_worker_beat)

    def _remove_worker_beat(self) -> None:
        try:
            heartbeat.remove_worker(self.client, self.worker)
        except redis.RedisError as error:
            self._note_redis_failure(error)


_current: CollectorHost | None = None


def set_current_host(host: CollectorHost | None) -> None:
    global _current
    _current = host


def current_host() -> CollectorHost:
    """The host of this worker process; RuntimeError in a process that hosts no collectors."""
    if _current is None:
        raise RuntimeError(
            "this process hosts no collectors: collector tasks run on workers that consume "
            "the collectors queue with an in-process pool (-Q collectors --pool threads)"
        )
    return _current
