"""Collectors as operators see them: each stream's judged state, last heartbeat and pair,
shaped as the spec's Collector Status and Health Status dicts (the API's answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collectors.hosting import reconcile
from collectors.hosting.heartbeat import Heartbeat
from collectors.models import TradingPair

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

    state: reconcile.CollectorState
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
    """Every configured or running stream, disabled pairs included, by name.

    Raises redis.RedisError when Redis does not answer, ImproperlyConfigured without one.
    """
    seen = reconcile.observe()
    pairs = {pair.collector_name: pair for pair in TradingPair.objects.select_related("exchange")}
    states = {
        state.name: state for state in reconcile.states(seen.desired, seen.heartbeats, seen.holders)
    }
    for name in pairs.keys() - states.keys():
        states[name] = reconcile.state_of(name, None, None, None)
    return [
        Collector(states[name], seen.heartbeats.get(name), pairs.get(name))
        for name in sorted(states)
    ]


def one_collector(name: str) -> Collector | None:
    return next((c for c in current_collectors() if c.state.name == name), None)
