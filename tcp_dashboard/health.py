"""The platform's health: database, Redis, broker and collectors, each checked in seconds.

What a check says is safe to show anyone (a load balancer, an uptime service): never a
host, a password or an exception's text; those go to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from kombu import Connection

logger = logging.getLogger(__name__)

TIMEOUT = 2.0  # seconds each network check may take


@dataclass(slots=True, frozen=True)
class Check:
    ok: bool
    detail: str


@dataclass(slots=True, frozen=True)
class HealthReport:
    checks: dict[str, Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_dict(self) -> dict:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in self.checks.items()},
        }


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        logger.warning("health: database check failed: %s", error)
        return Check(False, "the database does not answer")
    return Check(True, "answers")


def check_redis() -> Check:
    if not settings.REDIS_URL:
        return Check(True, "not configured (embedded mode)")
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    try:
        client.ping()
    except redis.RedisError as error:
        logger.warning("health: Redis check failed: %s", error)
        return Check(False, "Redis does not answer")
    finally:
        client.close()
    return Check(True, "answers")


def check_broker() -> Check:
    options = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "socket_connect_timeout": TIMEOUT,
        "socket_timeout": TIMEOUT,
    }
    broker = Connection(
        settings.CELERY_BROKER_URL, connect_timeout=TIMEOUT, transport_options=options
    )
    try:
        broker.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, interval_max=0, timeout=TIMEOUT
        )
    except Exception as error:  # kombu raises its own and each transport's errors
        logger.warning("health: broker check failed: %s", error)
        return Check(False, "the broker does not answer")
    finally:
        broker.release()
    return Check(True, "answers")


def check_collectors() -> Check:
    """Every collector that should run is running and healthy (by its heartbeat)."""
    if not settings.REDIS_URL:
        return Check(True, "not checked: collector heartbeats need Redis")
    from collectors.health import collector_states

    try:
        states = collector_states()
    except (redis.RedisError, DatabaseError, ImproperlyConfigured) as error:
        logger.warning("health: collector check failed: %s", error)
        return Check(False, "collector states cannot be read")
    expected = [state for state in states if state.should_be_running]
    troubled = [state for state in states if not state.is_healthy]
    if troubled:
        issues = "; ".join(f"{s.name}: {', '.join(s.issues) or s.status}" for s in troubled)
        return Check(False, f"{len(troubled)} unhealthy: {issues}")
    return Check(True, f"{len(expected)} of {len(expected)} healthy")


# Data lifecycle (docs/data-lifecycle.md) --------------------------------------------


def check_storage() -> Check:
    """The last retention run and its archive writes succeeded and tomorrow's partitions
    exist; the detail gives the database and archive sizes, their growth per day and the
    oldest day kept of each kind of data."""
    from marketdata.footprint import lifecycle_health

    try:
        health = lifecycle_health()
    except DatabaseError as error:
        logger.warning("health: storage check failed: %s", error)
        return Check(False, "storage cannot be measured")
    return Check(health.ok, health.detail)


CHECKS: dict[str, Callable[[], Check]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "collectors": check_collectors,
    "storage": check_storage,
}


def system_health() -> HealthReport:
    return HealthReport({name: check() for name, check in CHECKS.items()})
