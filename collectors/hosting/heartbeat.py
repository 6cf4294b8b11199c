"""Heartbeats in Redis: what each hosted collector and each collector worker reports.

Every few seconds a worker writes, for each collector it hosts, the spec's status dict,
the health dict, its own name and a key of the configuration the collector runs with,
under `collectors:heartbeat:<stream>` with a TTL; and once for itself, the list of the
streams it hosts, under `collectors:worker:<worker>`. A worker that dies stops writing
and its entries expire, so what is in Redis is what is running now.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import redis
from django.conf import settings

from collectors.hosting.leases import read_all
from collectors.times import utc_text
from collectors.types import ExchangeCollectorConfig

HEARTBEAT_PREFIX = "collectors:heartbeat:"
WORKER_PREFIX = "collectors:worker:"

# Delete a stream's heartbeat only when this worker wrote it: after a failover the key
# belongs to the new host.
REMOVE_OWN = """
local value = redis.call('get', KEYS[1])
if value and cjson.decode(value)['worker'] == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def heartbeat_interval() -> float:
    """Seconds between heartbeats and lease renewals (COLLECTOR_HEARTBEAT_INTERVAL, 5)."""
    return float(settings.COLLECTOR_HEARTBEAT_INTERVAL)


def heartbeat_ttl(interval: float, lease_ttl: float) -> float:
    """A heartbeat outlives a few missed beats, never much longer than the lease it reports."""
    return max(3 * interval, lease_ttl)


def config_key(config: ExchangeCollectorConfig) -> str:
    """A short digest of a collector's configuration: it changes when the admin changes it."""

    def plain(value: Any) -> Any:
        return value.value if isinstance(value, Enum) else str(value)

    text = json.dumps(asdict(config), sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, frozen=True)
class Heartbeat:
    """One collector as its host last reported it."""

    name: str
    worker: str
    status: dict[str, Any]  # the spec's Collector Status
    health: dict[str, Any]  # the spec's Health Status
    config: str = ""  # config_key() of the configuration it runs with
    published_at: datetime = field(default_factory=utc_now)

    @property
    def is_healthy(self) -> bool:
        return bool(self.health.get("is_healthy"))

    @property
    def restarts(self) -> int:
        return int(self.status.get("statistics", {}).get("restarts", 0))

    @property
    def last_error(self) -> str:
        return str(self.status.get("statistics", {}).get("last_error", ""))

    def age(self, now: datetime | None = None) -> float:
        return ((now or utc_now()) - self.published_at).total_seconds()

    def to_json(self) -> str:
        data = asdict(self)
        data["published_at"] = utc_text(self.published_at)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Heartbeat:
        data = json.loads(text)
        data["published_at"] = datetime.fromisoformat(data["published_at"])
        return cls(**data)


def heartbeat_of(collector, worker: str, config: str = "") -> Heartbeat:
    """The heartbeat a BaseDataCollector reports now."""
    return Heartbeat(
        name=collector.name,
        worker=worker,
        status=collector.get_status(),
        health=collector.get_health_status(),
        config=config,
    )


@dataclass(slots=True, frozen=True)
class WorkerBeat:
    """A collector worker and the streams it hosts."""

    worker: str
    streams: list[str]
    pid: int
    published_at: datetime = field(default_factory=utc_now)

    def to_json(self) -> str:
        data = asdict(self)
        data["published_at"] = utc_text(self.published_at)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> WorkerBeat:
        data = json.loads(text)
        data["published_at"] = datetime.fromisoformat(data["published_at"])
        return cls(**data)


def publish(
    client: redis.Redis, heartbeats: list[Heartbeat], worker: WorkerBeat | None, ttl: float
) -> None:
    """Write heartbeats (and the worker's own) in one round trip, each living `ttl` seconds."""
    expire = max(1, round(ttl * 1000))
    with client.pipeline(transaction=False) as pipe:
        for heartbeat in heartbeats:
            pipe.set(HEARTBEAT_PREFIX + heartbeat.name, heartbeat.to_json(), px=expire)
        if worker is not None:
            pipe.set(WORKER_PREFIX + worker.worker, worker.to_json(), px=expire)
        pipe.execute()


def remove(client: redis.Redis, name: str, worker: str) -> bool:
    """Forget a stream's heartbeat if `worker` wrote it."""
    return bool(client.eval(REMOVE_OWN, 1, HEARTBEAT_PREFIX + name, worker))


def remove_worker(client: redis.Redis, worker: str) -> None:
    client.delete(WORKER_PREFIX + worker)


def read_heartbeats(client: redis.Redis) -> dict[str, Heartbeat]:
    """Every live collector's last heartbeat, by stream name."""
    return {
        name: Heartbeat.from_json(text) for name, text in read_all(client, HEARTBEAT_PREFIX).items()
    }


def read_heartbeat(client: redis.Redis, name: str) -> Heartbeat | None:
    text = client.get(HEARTBEAT_PREFIX + name)
    return None if text is None else Heartbeat.from_json(text)


def read_workers(client: redis.Redis) -> dict[str, WorkerBeat]:
    """Every live collector worker, by worker name."""
    return {
        name: WorkerBeat.from_json(text) for name, text in read_all(client, WORKER_PREFIX).items()
    }
