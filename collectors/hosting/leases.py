"""Redis leases: each stream runs on at most one worker, the one holding its lease.

A lease is a key `collectors:lease:<stream>` whose value names its owner
("<instance id>:<worker name>"). It is taken with SET NX PX and kept alive by the owner
renewing it well before its TTL runs out; renewing and releasing compare the owner
atomically in a Lua script, so a worker that lost its lease can never extend or delete
the lease another worker now holds. A worker that dies stops renewing and its leases
expire after one TTL.
"""

from __future__ import annotations

import secrets

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

LEASE_PREFIX = "collectors:lease:"

RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lease_ttl() -> float:
    """Seconds a lease lives without renewal (COLLECTOR_LEASE_TTL, default 15)."""
    return float(settings.COLLECTOR_LEASE_TTL)


def redis_client(url: str | None = None) -> redis.Redis:
    """The Redis that holds leases and heartbeats (REDIS_URL).

    Calls fail within seconds and are retried once at once (a stale pooled connection):
    a lease renewal that waits out redis-py's default backoff would outlive the lease.
    """
    url = url or settings.REDIS_URL
    if not url:
        raise ImproperlyConfigured("hosting collectors in Celery workers needs REDIS_URL")
    return redis.Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )


def lease_key(name: str) -> str:
    return LEASE_PREFIX + name


def new_owner(worker: str) -> str:
    """An owner token for one host instance: a restarted worker never inherits old leases."""
    return f"{secrets.token_hex(6)}:{worker}"


def worker_of(owner: str) -> str:
    """The worker name inside an owner token."""
    return owner.partition(":")[2]


def milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def acquire(client: redis.Redis, name: str, owner: str, ttl: float) -> bool:
    """Take the stream's lease if nobody holds it; True when `owner` holds it now."""
    if client.set(lease_key(name), owner, nx=True, px=milliseconds(ttl)):
        return True
    # Taking a lease twice is not an error: the same owner simply renews it.
    return renew(client, name, owner, ttl)


def renew(client: redis.Redis, name: str, owner: str, ttl: float) -> bool:
    """Extend the lease to `ttl` from now; False when `owner` no longer holds it."""
    return bool(client.eval(RENEW, 1, lease_key(name), owner, milliseconds(ttl)))


def release(client: redis.Redis, name: str, owner: str) -> bool:
    """Give the lease up; False when `owner` did not hold it (then nothing changes)."""
    return bool(client.eval(RELEASE, 1, lease_key(name), owner))


def holder(client: redis.Redis, name: str) -> str | None:
    """The owner token of the stream's lease, None when nobody holds it."""
    return client.get(lease_key(name))


def holders(client: redis.Redis) -> dict[str, str]:
    """Every held lease: stream name -> owner token."""
    return read_all(client, LEASE_PREFIX)


def read_all(client: redis.Redis, prefix: str) -> dict[str, str]:
    """Every key under `prefix` (without it) -> its value, in two round trips."""
    keys = sorted(client.scan_iter(match=prefix + "*", count=500))
    if not keys:
        return {}
    values = client.mget(keys)
    return {
        key[len(prefix) :]: value
        for key, value in zip(keys, values, strict=True)
        if value is not None
    }
