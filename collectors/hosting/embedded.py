"""The embedded default: collectors in one plain process (`manage.py collect`), no Redis.

EmbeddedHost follows the desired state in the database as the health check does for
Celery workers: every second it starts the enabled pairs it does not run, stops those no
longer wanted, replaces a collector whose configuration changed, and restarts one that is
unhealthy (with auto_restart). Without Redis, what the Celery hosts keep there lives in
files under VAR_DIR/collectors:

- `embedded-status.json`: the host's name and each collector's heartbeat (the spec's status
  and health dicts), rewritten every second. Older than the heartbeat TTL, it is ignored,
  like an expired heartbeat, so a dead host shows its collectors stopped.
- `requests/`: operators' restart and start requests (the admin, the API, `manage.py
  collectors`), one file each, taken and deleted by the host.

So the admin, the API and `manage.py collectors` show and control embedded collectors as
they do hosted ones. One host per VAR_DIR: a second one would collect the same pairs twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connections

from collectors.collector import BaseDataCollector
from collectors.config.store import collector_configs_from_db
from collectors.factory import ExchangeFactory
from collectors.hosting.heartbeat import Heartbeat, config_key, heartbeat_of, utc_now
from collectors.hosting.live_candles import LiveCandles
from collectors.hosting.runner import CollectorSummary, RunReport, build_sink, summarise
from collectors.storage.sink import StorageSink
from collectors.types import ExchangeCollectorConfig
from marketdata.selectors import newest_stored_trade
from tcp_dashboard.locks import try_lock

logger = logging.getLogger(__name__)

FOLLOW_INTERVAL = 1.0  # seconds between two looks at the desired state
STATUS_FILE = "embedded-status.json"


def is_embedded() -> bool:
    """No Redis: collectors run in the embedded host, status and requests go through files."""
    return not settings.REDIS_URL


def state_dir() -> Path:
    return Path(settings.VAR_DIR) / "collectors"


def status_ttl() -> float:
    """Seconds a status file stays current: a few missed writes, as a heartbeat's TTL."""
    return max(3 * FOLLOW_INTERVAL, float(settings.COLLECTOR_HEARTBEAT_INTERVAL) * 3)


def pickup_within() -> float:
    """The most seconds an embedded host takes to act on a change (for messages)."""
    return 2 * FOLLOW_INTERVAL


# the status file --------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class EmbeddedStatus:
    worker: str
    heartbeats: dict[str, Heartbeat]

    @property
    def holders(self) -> dict[str, str]:
        return {name: self.worker for name in self.heartbeats}


def write_status(worker: str, beats: list[Heartbeat], directory: Path | None = None) -> None:
    directory = directory or state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "worker": worker,
        "pid": os.getpid(),
        "published_at": utc_now().isoformat(),
        "heartbeats": {beat.name: json.loads(beat.to_json()) for beat in beats},
    }
    temporary = directory / f".{STATUS_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(data))
    os.replace(temporary, directory / STATUS_FILE)


def remove_status(directory: Path | None = None) -> None:
    (directory or state_dir()).joinpath(STATUS_FILE).unlink(missing_ok=True)


def read_status(directory: Path | None = None) -> EmbeddedStatus | None:
    """The running host's status; None when none runs (no file, or one gone stale)."""
    path = (directory or state_dir()) / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    age = (utc_now() - datetime.fromisoformat(data["published_at"])).total_seconds()
    if age > status_ttl():
        return None
    beats = {
        name: Heartbeat.from_json(json.dumps(beat)) for name, beat in data["heartbeats"].items()
    }
    return EmbeddedStatus(data["worker"], beats)


# operators' requests ---------------------------------------------------------------------


def request(action: str, name: str, reason: str = "operator") -> Path:
    """Ask the embedded host to restart or start a stream; it takes the file within a second."""
    directory = state_dir() / "requests"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    temporary = directory / f".{path.name}"
    temporary.write_text(json.dumps({"action": action, "name": name, "reason": reason}))
    os.replace(temporary, path)
    return path


def take_requests(directory: Path | None = None) -> list[dict[str, str]]:
    directory = (directory or state_dir()) / "requests"
    taken = []
    for path in sorted(directory.glob("[0-9]*.json")) if directory.exists() else []:
        try:
            taken.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("embedded collectors: unreadable request %s: %s", path.name, error)
        path.unlink(missing_ok=True)
    return taken


# the host ---------------------------------------------------------------------------------


class AlreadyRunning(RuntimeError):
    """Another embedded host follows the same database from the same VAR_DIR."""


@dataclass(slots=True)
class Running:
    collector: BaseDataCollector
    config: ExchangeCollectorConfig
    key: str  # config_key(config)
    checked_at: float  # time.monotonic() of the last health judgement


class EmbeddedHost:
    """Runs, in this process, the collectors the database wants, and reports them in files."""

    def __init__(
        self,
        worker: str | None = None,
        *,
        sink: StorageSink | None = None,
        directory: Path | None = None,
    ) -> None:
        self.worker = worker or f"embedded@{socket.gethostname()}"
        self.directory = directory or state_dir()
        self._own_sink = sink is None
        self.sink = sink
        self.live_candles = LiveCandles(publish_to=None)
        self.running: dict[str, Running] = {}
        self.finished: list[CollectorSummary] = []
        self._background: set[asyncio.Task] = set()
        # One thread for the database: one connection, closed when the host stops.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-db")

    def run(self, stop: threading.Event, duration: float | None = None) -> RunReport:
        """Follow the database until `stop` is set or `duration` passes; then stop all, and
        say what each collector did and how many rows the sink could not keep.

        AlreadyRunning when another embedded host runs with the same VAR_DIR.
        """
        with self._only_host():
            return self._run(stop, duration)

    def _only_host(self):
        lock = try_lock(self.directory / "embedded.lock")
        if lock is None:
            raise AlreadyRunning(
                f"another embedded collector process runs with {self.directory} "
                "(one per VAR_DIR, or the pairs would be collected twice)"
            )
        return lock  # closing it (leaving the with block) releases the lock

    def _run(self, stop: threading.Event, duration: float | None) -> RunReport:
        if self.sink is None:
            self.sink = build_sink(collector_configs_from_db(), name="collect")
        if self._own_sink:
            self.sink.start()
        rows_lost = 0
        try:
            asyncio.run(self._main(stop, duration))
        finally:
            self.live_candles.stop()
            if self._own_sink:
                rows_lost = self.sink.stop()
            remove_status(self.directory)
        return RunReport(self.finished, rows_lost)

    async def _main(self, stop: threading.Event, duration: float | None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        logger.info("embedded collectors %s: following the database", self.worker)
        try:
            while not stop.is_set():
                try:
                    await self.follow()
                except Exception:  # the next look tries again
                    logger.exception("embedded collectors: following the database failed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                wait = FOLLOW_INTERVAL if left is None else min(FOLLOW_INTERVAL, left)
                await asyncio.to_thread(stop.wait, wait)
        finally:
            for name in list(self.running):
                await self._stop(name, "shutting down")
            for task in list(self._background):
                task.cancel()
            await self._in_db_thread(connections.close_all)
            self._db.shutdown()

    async def follow(self) -> None:
        """One look: bring what runs here to what the database wants, then report it."""
        desired = {c.name: c for c in await self._in_db_thread(collector_configs_from_db)}
        for name in sorted(set(self.running) - set(desired)):
            await self._stop(name, "no longer enabled")
        for name, config in sorted(desired.items()):
            current = self.running.get(name)
            if current is None:
                await self._start(config)
            elif current.key != config_key(config):
                await self._stop(name, "configuration changed")
                await self._start(config, restarts=current.collector.restarts + 1)
            else:
                await self._restart_if_unhealthy(current)
        for asked in await asyncio.to_thread(take_requests, self.directory):
            await self._answer(asked, desired)
        beats = [
            heartbeat_of(entry.collector, self.worker, entry.key) for entry in self.running.values()
        ]
        await asyncio.to_thread(write_status, self.worker, beats, self.directory)

    async def _answer(self, asked: dict[str, str], desired: dict) -> None:
        name, action = asked.get("name", ""), asked.get("action", "")
        current = self.running.get(name)
        if action == "restart" and current is not None:
            logger.info("%s: restarting (%s)", name, asked.get("reason", "requested"))
            self._in_background(current.collector.restart())
        elif action in {"start", "restart"} and current is None and name in desired:
            await self._start(desired[name])
        else:
            logger.info("%s: %s request: nothing to do", name, action)

    async def _start(self, config: ExchangeCollectorConfig, restarts: int = 0) -> None:
        try:
            collector = ExchangeFactory.create_collector(config)
        except ValueError as error:
            logger.error("%s: cannot start: %s", config.name, error)
            return
        resume_after = await self._in_db_thread(newest_stored_trade, config)
        if resume_after is not None:  # fill in what the last run missed
            collector.adapter.resume_after_trade(resume_after)
        collector.sink = self.sink
        collector.restarts = restarts
        self.live_candles.attach(collector)
        self.running[config.name] = Running(collector, config, config_key(config), time.monotonic())
        logger.info("%s: starting in the embedded collectors", config.name)
        # Not awaited: one pair that cannot connect must not hold up the others.
        self._in_background(collector.start())

    async def _stop(self, name: str, reason: str) -> None:
        entry = self.running.pop(name)
        logger.info("%s: stopping (%s)", name, reason)
        await entry.collector.stop()
        self.live_candles.detach(name)
        self.finished.append(summarise(entry.collector))

    async def _restart_if_unhealthy(self, entry: Running) -> None:
        """The health check's rule, on each collector's own health_check_interval."""
        now = time.monotonic()
        if now - entry.checked_at < entry.config.health_check_interval:
            return
        entry.checked_at = now
        if not entry.config.auto_restart:
            return
        cause = entry.collector.restart_cause()
        if cause:
            logger.warning("%s unhealthy (%s): restarting", entry.collector.name, cause)
            self._in_background(entry.collector.restart())

    async def _in_db_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._db, function, *args)

    def _in_background(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
