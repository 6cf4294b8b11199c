"""CollectorManager: many collectors in one process, one storage sink, restarts of the sick."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from collectors.collector import BaseDataCollector, Sink
from collectors.types import COLLECTOR_DEFAULTS

logger = logging.getLogger(__name__)


class CollectorManager:
    def __init__(
        self,
        *,
        sink: Sink | None = None,
        check_interval: float | None = None,
        auto_restart: bool = True,
    ) -> None:
        self.sink = sink
        # Off where something else restarts collectors (the health check of hosted ones).
        self.auto_restart = auto_restart
        self._collectors: dict[str, BaseDataCollector] = {}
        self._check_interval = check_interval
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()

    def add_collector(self, collector: BaseDataCollector) -> None:
        if collector.name in self._collectors:
            raise ValueError(f"a collector named {collector.name!r} is already managed")
        if collector.sink is None:
            collector.sink = self.sink
        self._collectors[collector.name] = collector

    def get_collector(self, name: str) -> BaseDataCollector:
        return self._collectors[name]

    def remove_collector(self, name: str) -> BaseDataCollector:
        return self._collectors.pop(name)

    def list_collectors(self) -> list[str]:
        return list(self._collectors)

    async def start(self) -> bool:
        """Start every collector; True when all of them connected."""
        results = await asyncio.gather(*(c.start() for c in self._collectors.values()))
        self._stopping.clear()
        if self.auto_restart and (self._monitor is None or not self._monitor.is_alive()):
            self._monitor = threading.Thread(
                target=self._watch, name="collector-monitor", daemon=True
            )
            self._monitor.start()
        return all(results)

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*(c.stop() for c in self._collectors.values()))
        if self._monitor is not None:
            await asyncio.to_thread(self._monitor.join, 10)
            self._monitor = None

    def get_status(self) -> dict[str, Any]:
        statuses = {name: c.get_status() for name, c in self._collectors.items()}
        return {
            "total_collectors": len(statuses),
            "running_collectors": sum(1 for c in self._collectors.values() if c.is_running),
            "healthy_collectors": sum(
                1 for c in self._collectors.values() if c.get_health_status()["is_healthy"]
            ),
            "collectors": statuses,
        }

    def interval(self) -> float:
        if self._check_interval is not None:
            return self._check_interval
        intervals = [c.config.health_check_interval for c in self._collectors.values()]
        return min(intervals, default=COLLECTOR_DEFAULTS["health_check_interval"])

    def _watch(self) -> None:
        """Every health_check_interval, restart the collectors with auto_restart on whose
        trouble a restart cures (collectors.health_rule, the health check's rule too)."""
        while not self._stopping.wait(self.interval()):
            for collector in list(self._collectors.values()):
                if self._stopping.is_set():
                    return
                if not (collector.should_be_running and collector.config.auto_restart):
                    continue
                cause = collector.restart_cause()
                if cause:
                    logger.warning("%s unhealthy (%s): restarting", collector.name, cause)
                    asyncio.run(collector.restart())
