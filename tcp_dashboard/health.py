"""The platform's health: database, Redis, broker and collectors, each checked in seconds;
and the view that answers it at /api/v1/health/.

Anyone (a load balancer, an uptime service) gets the overall status and counts, throttled
per address; signed-in users get every check's detail, one line per unhealthy collector.
What a check says never holds a host, a password or an exception's text; those go to the
log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from drf_spectacular.utils import extend_schema
from kombu import Connection
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collectors.hosting.reconcile import collector_states
from marketdata.api.throttles import HealthThrottle, UserThrottle
from marketdata.backups.status import backup_status
from marketdata.footprint import lifecycle_health
from tcp_dashboard.postgresql.base import answer_within

logger = logging.getLogger(__name__)

TIMEOUT = 2.0  # seconds each network check may take


@dataclass(slots=True, frozen=True)
class Check:
    ok: bool
    detail: str
    counts: dict[str, int] | None = None  # shown to anyone, unlike the detail


@dataclass(slots=True, frozen=True)
class HealthReport:
    checks: dict[str, Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    @property
    def status(self) -> str:
        return "ok" if self.ok else "unhealthy"

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in self.checks.items()},
        }

    def summary(self) -> dict:
        """What anyone may see: the status, the counts and which of the fixed checks
        (database, redis, ...) fail; no collector names and no details. The names let an
        operator see a database outage even when signing in needs that database."""
        failing = [name for name, check in self.checks.items() if not check.ok]
        answer = {
            "status": self.status,
            "checks": {"total": len(self.checks), "failing": len(failing), "names": failing},
        }
        for name, check in self.checks.items():
            if check.counts is not None:
                answer[name] = check.counts
        return answer


def check_database() -> Check:
    """The database answers a query within TIMEOUT seconds (once it has a connection, which
    takes at most DATABASE_CONNECT_TIMEOUT, or DB_POOL_TIMEOUT from the pool)."""
    try:
        with connection.cursor() as cursor, answer_within(cursor.connection, TIMEOUT):
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
    """Every collector that should run is running and healthy (by its heartbeat in Redis,
    or without Redis by the embedded host's status file)."""
    try:
        states = collector_states()
    except (redis.RedisError, DatabaseError, ImproperlyConfigured) as error:
        logger.warning("health: collector check failed: %s", error)
        return Check(False, "collector states cannot be read")
    expected = [state for state in states if state.should_be_running]
    troubled = [state for state in states if not state.is_healthy]
    counts = {"expected": len(expected), "unhealthy": len(troubled)}
    if troubled:
        issues = "; ".join(f"{s.name}: {', '.join(s.issues) or s.status}" for s in troubled)
        return Check(False, f"{len(troubled)} unhealthy: {issues}", counts)
    return Check(True, f"{len(expected)} of {len(expected)} healthy", counts)


def check_backups() -> Check:
    """A verified backup within BACKUP_MAX_AGE_HOURS and a passing restore drill
    (marketdata/backups/status.py); a fresh install gets that long for its first."""
    if connection.vendor != "postgresql":
        return Check(True, "not checked: backups need PostgreSQL (embedded SQLite mode)")
    try:
        status = backup_status()
    except DatabaseError as error:
        logger.warning("health: backup check failed: %s", error)
        return Check(False, "backup records cannot be read")
    return Check(status.ok, status.detail)


# Data lifecycle (docs/data-lifecycle.md) --------------------------------------------


def check_storage() -> Check:
    """The last retention run and its archive writes succeeded and tomorrow's partitions
    exist; the detail gives the database and archive sizes, their growth per day and the
    oldest day kept of each kind of data."""
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
    "backups": check_backups,
    "storage": check_storage,
}


# Checks that read the database: while it does not answer, each would wait out its own
# timeout to say so again.
NEED_DATABASE = ("collectors", "backups", "storage")


def system_health() -> HealthReport:
    checks: dict[str, Check] = {}
    for name, check in CHECKS.items():
        if name in NEED_DATABASE and not checks["database"].ok:
            checks[name] = Check(False, "not checked: the database does not answer")
        else:
            checks[name] = check()
    return HealthReport(checks)


HEALTH = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unhealthy"]},
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                "required": ["ok", "detail"],
            },
        },
    },
    "required": ["status", "checks"],
}
COUNT = {"type": "integer", "minimum": 0}
HEALTH_SUMMARY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unhealthy"]},
        "checks": {
            "type": "object",
            "properties": {
                "total": COUNT,
                "failing": COUNT,
                "names": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["total", "failing", "names"],
        },
        "collectors": {
            "type": "object",
            "properties": {"expected": COUNT, "unhealthy": COUNT},
            "required": ["expected", "unhealthy"],
        },
    },
    "required": ["status", "checks"],
}
HEALTH_ANSWER = {"oneOf": [HEALTH, HEALTH_SUMMARY]}


class Health(APIView):
    """For load balancers and uptime checks, with no credentials: the status and counts,
    throttled per address. Signed-in users (a token or a session) get the details."""

    permission_classes = [AllowAny]
    throttle_classes = [UserThrottle, HealthThrottle]

    @extend_schema(
        operation_id="health",
        summary="Platform health",
        description=(
            "Database, Redis, broker, collectors, backups and storage (retention, archive, "
            "partitions): 200 when all are healthy, else 503. Anonymous callers get the "
            "status, the number of checks failing and the number of collectors expected and "
            "unhealthy, throttled per address (API_THROTTLE_HEALTH); signed-in users get "
            "each check's detail."
        ),
        responses={200: HEALTH_ANSWER, 503: HEALTH_ANSWER},
        tags=["health"],
    )
    def get(self, request: Request) -> Response:
        if request.user and request.user.is_authenticated:
            report = system_health()
            return Response(report.as_dict(), status=200 if report.ok else 503)
        body = anonymous_answer()
        return Response(body, status=200 if body["status"] == "ok" else 503)


class SharedSummary:
    """The anonymous answer, computed at most once per API_HEALTH_CACHE_SECONDS in this
    process for all anonymous callers together: many callers cost one check. Kept in the
    process, not in Redis, so that it works the same when Redis is down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.summary: dict | None = None
        self.expires = 0.0

    def get(self) -> dict:
        seconds = settings.API_HEALTH_CACHE_SECONDS
        with self.lock:  # callers that arrive during a check wait for its answer
            if self.summary is None or time.monotonic() >= self.expires or seconds <= 0:
                self.summary = system_health().summary()
                self.expires = time.monotonic() + seconds
            return self.summary

    def clear(self) -> None:
        with self.lock:
            self.summary = None


SHARED_SUMMARY = SharedSummary()


def anonymous_answer() -> dict:
    return SHARED_SUMMARY.get()
