"""Running a set of collectors in the foreground until a deadline or a stop request."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from collectors.factory import ExchangeFactory
from collectors.hosting import leases
from collectors.hosting.live_candles import LiveCandles
from collectors.manager import CollectorManager
from collectors.storage.sink import StorageSink
from collectors.types import COLLECTOR_DEFAULTS, ExchangeCollectorConfig
from marketdata.selectors import newest_stored_trade

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class CollectorSummary:
    name: str
    status: str
    messages_received: int
    data_points: int
    errors: int
    reconnects: int
    restarts: int
    last_error: str

    def line(self) -> str:
        text = (
            f"{self.name}: {self.messages_received} messages, {self.data_points} data points, "
            f"{self.errors} errors, {self.reconnects} reconnects, {self.restarts} restarts, "
            f"status {self.status}"
        )
        return text + (f", last error: {self.last_error}" if self.last_error else "")


@dataclass(slots=True)
class RunReport:
    collectors: list[CollectorSummary]
    rows_lost: int  # received but neither stored nor spilled for a later run (0 when kept)

    def storage_line(self) -> str:
        if self.rows_lost:
            return f"storage: {self.rows_lost} rows could not be kept (neither stored nor spilled)"
        return "storage: every row received was stored or spilled for the next run"


def sink_buffer_size(configs: Iterable[ExchangeCollectorConfig]) -> int:
    """The buffer_size of a sink shared by these collectors: the largest they ask for."""
    default = COLLECTOR_DEFAULTS["buffer_size"]
    buffer_sizes = [(c.custom_params or {}).get("buffer_size") or default for c in configs]
    return max(buffer_sizes, default=default)


def build_sink(configs: list[ExchangeCollectorConfig], name: str = "collect") -> StorageSink:
    return StorageSink(name=name, buffer_size=sink_buffer_size(configs))


def run_collectors(
    configs: list[ExchangeCollectorConfig],
    *,
    duration: float | None = None,
    stop: threading.Event | None = None,
    sink: StorageSink | None = None,
) -> RunReport:
    """Collect until `duration` seconds pass or `stop` is set; flush and summarise.

    Rows lost are counted only for the sink this creates (`sink` is the caller's to stop).
    """
    stop = stop or threading.Event()
    collectors = ExchangeFactory.create_multiple_collectors(configs)
    own_sink = sink is None
    sink = sink or build_sink(configs)
    if own_sink:
        sink.start()
    publish_to = leases.redis_client() if settings.REDIS_URL else None
    manager = CollectorManager(sink=sink)
    live_candles = LiveCandles(publish_to=publish_to)
    for collector in collectors:
        resume_after = newest_stored_trade(collector.config)
        if resume_after is not None:  # fill in what the last run missed
            collector.adapter.resume_after_trade(resume_after)
        manager.add_collector(collector)
        live_candles.attach(collector)

    async def main() -> None:
        connected = await manager.start()
        if not connected:
            logger.warning("not every collector connected yet; they keep trying")
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await asyncio.to_thread(stop.wait, 0.5 if left is None else min(0.5, left))
        await manager.stop()

    rows_lost = 0
    try:
        asyncio.run(main())
    finally:
        live_candles.stop()
        if own_sink:
            rows_lost = sink.stop()
        if publish_to is not None:
            publish_to.close()
    return RunReport([summarise(collector) for collector in collectors], rows_lost)


def summarise(collector) -> CollectorSummary:
    counters = collector.counters()
    status = collector.get_status()
    return CollectorSummary(
        name=collector.name,
        status=status["status"],
        messages_received=counters["messages_received"],
        data_points=counters["points"],
        errors=counters["errors"],
        reconnects=collector.total_reconnects,
        restarts=collector.restarts,
        last_error=collector.last_error,
    )
