"""API views for collectors: their status and health (from heartbeats), and staff control.

Desired state comes from the database (trading pairs), actual state from Redis (leases and
heartbeats) or, without Redis, from the embedded host's status file, both through
collectors.hosting.status. Start, stop and restart do what the admin and `manage.py
collectors` do (collectors.hosting.control) and answer 202 with the task's id; in embedded
mode nothing is sent (task_id null) and the note says what the embedded host will do.
"""

from __future__ import annotations

import re
from typing import Any

import kombu.exceptions
import redis
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from collectors.hosting import control
from collectors.hosting.status import (
    STATISTICS,
    current_collectors,
    health_dict,
    one_collector,
    status_dict,
)
from marketdata.api.permissions import IsStaff
from marketdata.api.views import ApiView, error_responses, read_responses

# A stream's name: exchange:symbol, or exchange:account:name for an account's stream.
# Anything else names no collector, whatever it holds.
COLLECTOR_NAME = re.compile(
    r"[a-z0-9_-]{1,50}:(?:account:[A-Za-z0-9_.-]{1,40}|[A-Za-z0-9][A-Za-z0-9._-]{0,49})"
)
NAME = OpenApiParameter(
    "name",
    {"type": "string", "pattern": f"^{COLLECTOR_NAME.pattern}$"},
    OpenApiParameter.PATH,
    description="exchange:symbol, e.g. okx:BTC-USDT",
)


class Unavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Collector state cannot be read or changed now: Redis does not answer."
    default_code = "unavailable"


def no_collector(name: str) -> NotFound:
    return NotFound(f"no collector {name[:60]!r} (names are exchange:symbol, e.g. okx:BTC-USDT)")


def checked_name(name: str) -> str:
    """The name, if it can name a collector; else a 404 before it reaches a store."""
    if not COLLECTOR_NAME.fullmatch(name):
        raise no_collector(name)
    return name


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def read_collectors(name: str | None = None) -> Any:
    """Every collector, or the one named (None if unknown); 503 while Redis is away."""
    try:
        return current_collectors() if name is None else one_collector(name)
    except ImproperlyConfigured as error:
        raise Unavailable("Collector state lives in Redis, and REDIS_URL is not set.") from error
    except redis.RedisError as error:
        raise Unavailable() from error


SECONDS = serializers.FloatField(allow_null=True)
FIELD_OF = {
    int: serializers.IntegerField,
    float: serializers.FloatField,
    str: lambda: serializers.CharField(allow_blank=True),
}
COLLECTOR_STATUS_LIST = inline_serializer(
    "CollectorStatus",
    many=True,
    fields={
        "name": serializers.CharField(),
        "worker": serializers.CharField(help_text="The worker running it; empty when none."),
        "is_healthy": serializers.BooleanField(),
        "issues": serializers.ListField(child=serializers.CharField()),
        "exchange": serializers.CharField(),
        "status": serializers.CharField(help_text="running, stopped, error, ..."),
        "should_be_running": serializers.BooleanField(),
        "symbols": serializers.ListField(child=serializers.CharField()),
        "data_types": serializers.ListField(child=serializers.CharField()),
        "auto_restart": serializers.BooleanField(),
        "health": inline_serializer(
            "CollectorHealthTimes",
            {
                "time_since_heartbeat": SECONDS,
                "time_since_data": SECONDS,
                "max_silence_duration": SECONDS,
            },
        ),
        "statistics": inline_serializer(
            "CollectorStatistics",
            {name: FIELD_OF[kind]() for name, kind in STATISTICS.items()},
        ),
    },
)
COLLECTOR_HEALTH = inline_serializer(
    "CollectorHealth",
    {
        "name": serializers.CharField(),
        "worker": serializers.CharField(),
        "is_healthy": serializers.BooleanField(),
        "issues": serializers.ListField(child=serializers.CharField()),
        "status": serializers.CharField(),
        "last_heartbeat": serializers.CharField(allow_blank=True),
        "last_data_received": serializers.CharField(allow_blank=True),
        "should_be_running": serializers.BooleanField(),
        "is_running": serializers.BooleanField(),
    },
)
CONTROL_ANSWER = inline_serializer(
    "CollectorControl",
    {
        "name": serializers.CharField(),
        "action": serializers.CharField(help_text="What was sent: start, stop or restart."),
        "worker": serializers.CharField(help_text="The worker it was sent to; empty: any."),
        "task_id": serializers.CharField(allow_null=True, help_text="Null when nothing was sent."),
        "note": serializers.CharField(allow_blank=True),
    },
)


class CollectorList(ApiView):
    @extend_schema(
        operation_id="collectors_list",
        summary="Collectors and their status",
        responses=read_responses(COLLECTOR_STATUS_LIST),
        tags=["collectors"],
    )
    def get(self, request: Request) -> Response:
        return Response([status_dict(collector) for collector in read_collectors()])


class CollectorHealth(ApiView):
    @extend_schema(
        operation_id="collectors_health",
        summary="One collector's health",
        parameters=[NAME],
        responses=read_responses(COLLECTOR_HEALTH, 404),
        tags=["collectors"],
    )
    def get(self, request: Request, name: str) -> Response:
        collector = read_collectors(checked_name(name))
        if collector is None:
            raise no_collector(name)
        return Response(health_dict(collector))


class CollectorControl(ApiView):
    """Send start, stop or restart for one stream (staff only)."""

    permission_classes = [IsStaff]
    action = ""
    send = None

    def control(self, name: str) -> Response:
        checked_name(name)
        try:
            known = control.trading_pair(name) is not None
        except control.ControlError:
            known = False
        try:
            # A stream that runs without a pair (deleted in the admin) can still be stopped.
            if not known and (self.action != "stop" or control.hosting_worker(name) is None):
                raise no_collector(name)
            sent = self.send(name)
        except control.ControlError as error:
            raise Conflict(str(error)) from error
        except (redis.RedisError, kombu.exceptions.OperationalError, ImproperlyConfigured) as error:
            raise Unavailable() from error
        body = {
            "name": sent.name,
            "action": sent.action,
            "worker": sent.worker,
            "task_id": sent.result.id if sent.result is not None else None,
            "note": sent.note,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


def control_view(action: str, send, summary: str) -> type[CollectorControl]:
    @extend_schema(
        summary=summary,
        operation_id=f"collectors_{action}",
        parameters=[NAME],
        request=None,
        responses={202: CONTROL_ANSWER, **error_responses(401, 403, 404, 409, 429, 503)},
        tags=["collectors"],
    )
    def post(self, request: Request, name: str) -> Response:
        return self.control(name)

    return type(
        f"Collector{action.title()}",
        (CollectorControl,),
        {"action": action, "send": staticmethod(send), "post": post, "__doc__": summary},
    )


CollectorStart = control_view(
    "start", control.start_collector, "Enable a collector and start it (staff)."
)
CollectorStop = control_view(
    "stop", control.stop_collector, "Disable a collector and stop it (staff)."
)
CollectorRestart = control_view(
    "restart", control.restart_collector, "Restart a collector where it runs (staff)."
)
