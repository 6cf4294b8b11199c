"""Per-user (and, for anonymous reads, per-address) request rates, exact under concurrency.

Each limit is a sliding window: a request passes when fewer than N requests of the same
user (or address) passed in the last window. With Redis the passes are a sorted set per
key, checked and added in one Lua script, so parallel requests on any number of web
processes never get more than N through; without Redis (the embedded mode) the same rule
runs in the process under a lock. The rates are read on every request, so a changed
setting takes effect at once. The client's address comes from tcp_dashboard.clients,
which trusts X-Forwarded-For only from TRUSTED_PROXIES proxies.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import deque
from functools import cache

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from tcp_dashboard.clients import client_address

RATE = re.compile(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)")
KEY_PREFIX = "tcp:throttle"
WARN_EVERY = 60.0  # seconds between warnings that Redis does not answer
logger = logging.getLogger(__name__)

# KEYS[1]: the sorted set of one key's passes (score: time in ms, Redis's clock).
# ARGV: window in ms, limit, a unique member. Returns {1, 0} for a pass, or {0, ms to wait}.
SLIDING_WINDOW = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], ms, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - ms}
"""


def rate_for(scope: str) -> str | None:
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
    if rate is not None and not RATE.fullmatch(rate):
        raise ImproperlyConfigured(
            f"the {scope} throttle rate must look like 1200/minute, not {rate!r}"
        )
    return rate


@cache
def redis_limiter(url: str):
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return client.register_script(SLIDING_WINDOW)


class LocalWindows:
    """The same sliding windows in this process, for the embedded mode without Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.passes: dict[str, deque[float]] = {}
        self.warned = -WARN_EVERY

    def hit(self, key: str, limit: int, window: float) -> float:
        """0 when the request passes, else the seconds until one would."""
        now = time.monotonic()
        with self.lock:
            passes = self.passes.setdefault(key, deque())
            while passes and passes[0] <= now - window:
                passes.popleft()
            if len(passes) < limit:
                passes.append(now)
                return 0.0
            return passes[0] + window - now

    def clear(self) -> None:
        with self.lock:
            self.passes.clear()


LOCAL = LocalWindows()


def hit(key: str, limit: int, window: float) -> float:
    """Count one request against `key`: 0 when it passes, else the seconds to wait.

    When Redis does not answer, the limit is kept in this process: the health answer and
    the API stay up, each web process holding the limit on its own until Redis is back."""
    if not settings.REDIS_URL:
        return LOCAL.hit(key, limit, window)
    try:
        passed, wait_ms = redis_limiter(settings.REDIS_URL)(
            keys=[f"{KEY_PREFIX}:{key}"], args=[int(window * 1000), limit, uuid.uuid4().hex]
        )
    except redis.RedisError as error:
        if time.monotonic() - LOCAL.warned > WARN_EVERY:
            LOCAL.warned = time.monotonic()
            logger.warning("request limits kept per process: Redis does not answer (%s)", error)
        return LOCAL.hit(key, limit, window)
    return 0.0 if passed else max(int(wait_ms), 1) / 1000


class SlidingWindowThrottle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        return rate_for(self.scope)

    def get_ident(self, request) -> str:
        return client_address(request) or "unknown"

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.wait_seconds = hit(key, self.num_requests, self.duration)
        return self.wait_seconds == 0

    def wait(self) -> float:
        return self.wait_seconds


class UserThrottle(SlidingWindowThrottle):
    """Signed-in users, each on their own rate."""

    scope = "user"

    def get_cache_key(self, request, view) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return f"{self.scope}:{request.user.pk}"


class AnonThrottle(SlidingWindowThrottle):
    """Anonymous callers (public reads), per address."""

    scope = "anon"

    def get_cache_key(self, request, view) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return f"{self.scope}:{self.get_ident(request)}"


class HealthThrottle(AnonThrottle):
    """Anonymous callers of the health answer, per address, on a rate of their own."""

    scope = "health"
