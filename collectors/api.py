"""API views for collectors: their status and health (from heartbeats), and staff control.

Desired state comes from the database (trading pairs), actual state from Redis (leases and
heartbeats), both through collectors.health. Start, stop and restart send the same tasks
the admin and `manage.py collectors` send, and answer 202 with the task's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kombu.exceptions
import redis
from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from collectors import health
from collectors.heartbeat import Heartbeat
from collectors.models import TradingPair
from marketdata.api.permissions import IsStaff
from marketdata.api.views import ApiView, error_responses, read_responses

STATISTICS = {
    "messages_received": int,
    "messages_processed": int,
    "errors": int,
    "restarts": int,
    "uptime_seconds": float,
    "reconnect_attempts": int,
    "last_message_time": str,
    "connection_uptime": str,
    "last_error": str,
    "last_restart_time": str,
}
HEALTH_TIMES = ("time_since_heartbeat", "time_since_data")
NAME = OpenApiParameter(
    "name",
    {"type": "string", "pattern": r"^[a-z0-9_-]{1,50}:[A-Za-z0-9][A-Za-z0-9._-]{0,49}$"},
    OpenApiParameter.PATH,
    description="exchange:symbol, e.g. okx:BTC-USDT",
)


class Unavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Collector state cannot be read or changed now: Redis does not answer."
    default_code = "unavailable"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def _typed(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value is not None else kind()
    except (TypeError, ValueError):
        return kind()


def _seconds(value: Any, plus: float) -> float | None:
    try:
        return round(float(value) + plus, 3)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True, frozen=True)
class Collector:
    """One stream as the API shows it: its judged state, its last heartbeat, its pair."""

    state: health.CollectorState
    beat: Heartbeat | None
    pair: TradingPair | None


def status_dict(collector: Collector) -> dict[str, Any]:
    """The spec's Collector Status, with the stream's name, host, health and issues."""
    state, beat, pair = collector.state, collector.beat, collector.pair
    reported = beat.status if beat is not None else {}
    age = beat.age() if beat is not None else 0.0
    times = reported.get("health", {})
    statistics = reported.get("statistics", {})
    exchange = pair.exchange if pair is not None else None
    default_silence = exchange.max_silence_duration if exchange is not None else None
    return {
        "name": state.name,
        "worker": state.worker,
        "is_healthy": state.is_healthy,
        "issues": [str(issue) for issue in state.issues],
        "exchange": state.exchange,
        "status": state.status,
        "should_be_running": state.should_be_running,
        "symbols": [str(s) for s in reported.get("symbols", [state.symbol])],
        "data_types": [str(t) for t in reported.get("data_types", pair.data_types if pair else [])],
        "auto_restart": bool(
            reported.get("auto_restart", exchange.auto_restart if exchange else False)
        ),
        "health": {
            **{name: _seconds(times.get(name), age) for name in HEALTH_TIMES},
            "max_silence_duration": _seconds(
                times.get("max_silence_duration", default_silence), 0.0
            ),
        },
        "statistics": {
            name: _typed(statistics.get(name), kind) for name, kind in STATISTICS.items()
        },
    }


def health_dict(collector: Collector) -> dict[str, Any]:
    """The spec's Health Status; healthy and issues as the health check judges them."""
    state, beat = collector.state, collector.beat
    reported = beat.health if beat is not None else {}
    return {
        "name": state.name,
        "worker": state.worker,
        "is_healthy": state.is_healthy,
        "issues": [str(issue) for issue in state.issues],
        "status": state.status,
        "last_heartbeat": str(reported.get("last_heartbeat", "")),
        "last_data_received": str(reported.get("last_data_received", "")),
        "should_be_running": state.should_be_running,
        "is_running": bool(reported.get("is_running", False)),
    }


def current_collectors() -> list[Collector]:
    """Every configured or running stream, disabled pairs included, by name."""
    try:
        seen = health.observe()
    except ImproperlyConfigured as error:
        raise Unavailable("Collector state lives in Redis, and REDIS_URL is not set.") from error
    except redis.RedisError as error:
        raise Unavailable() from error
    pairs = {pair.collector_name: pair for pair in TradingPair.objects.select_related("exchange")}
    states = {
        state.name: state for state in health.states(seen.desired, seen.heartbeats, seen.holders)
    }
    for name in pairs.keys() - states.keys():
        states[name] = health.state_of(name, None, None, None)
    return [
        Collector(states[name], seen.heartbeats.get(name), pairs.get(name))
        for name in sorted(states)
    ]


def one_collector(name: str) -> Collector:
    for collector in current_collectors():
        if collector.state.name == name:
            return collector
    raise NotFound(f"no collector {name[:60]!r} (names are exchange:symbol, e.g. okx:BTC-USDT)")


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
        return Response([status_dict(collector) for collector in current_collectors()])


class CollectorHealth(ApiView):
    @extend_schema(
        operation_id="collectors_health",
        summary="One collector's health",
        parameters=[NAME],
        responses=read_responses(COLLECTOR_HEALTH, 404),
        tags=["collectors"],
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(health_dict(one_collector(name)))


class CollectorControl(ApiView):
    """Send start, stop or restart for one stream (staff only)."""

    permission_classes = [IsStaff]
    action = ""
    send = None

    def control(self, name: str) -> Response:
        exchange, _, symbol = name.partition(":")
        known = TradingPair.objects.filter(exchange__name=exchange, symbol=symbol).exists()
        try:
            # A stream that runs without a pair (deleted in the admin) can still be stopped.
            if not known and (self.action != "stop" or health.hosting_worker(name) is None):
                raise NotFound(f"no collector {name[:60]!r} (names are exchange:symbol)")
            sent = self.send(name)
        except health.ControlError as error:
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
    "start", health.start_collector, "Enable a collector and start it (staff)."
)
CollectorStop = control_view(
    "stop", health.stop_collector, "Disable a collector and stop it (staff)."
)
CollectorRestart = control_view(
    "restart", health.restart_collector, "Restart a collector where it runs (staff)."
)
