"""The health check: reconcile the desired state (database) with the actual one (Redis).

Desired: every enabled trading pair of an enabled exchange. Actual: the leases (who runs
what) and the heartbeats (how it is doing). Each run starts what should run and does
not, restarts what is unhealthy (in error, or silent past max_silence_duration) when
auto_restart is on or runs with a configuration that changed since, stops what should
not run, and records one `collector_status` row per stream. It only sends tasks and
never waits for them, so it takes milliseconds whatever the collectors do.

The tasks it sends are those of collectors.hosting.control, which also holds the
operators' start, stop and restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import kombu.exceptions
import redis
from celery.result import AsyncResult
from django.db import transaction

from collectors.config.store import collector_configs_from_db
from collectors.health_rule import restart_cause
from collectors.hosting import embedded, leases
from collectors.hosting.control import send_start, send_to_worker
from collectors.hosting.heartbeat import Heartbeat, config_key, read_heartbeats
from collectors.hosting.schedule import sync_health_check_schedule
from collectors.models import CollectorStatus, ExchangeAccount, TradingPair
from collectors.types import COLLECTOR_DEFAULTS, ExchangeCollectorConfig

logger = logging.getLogger(__name__)

MIN_TASK_EXPIRY = 30.0  # seconds an unconsumed control task stays valid, at least


@dataclass(slots=True, frozen=True)
class Action:
    """One thing a reconciliation does: start, restart or stop a stream."""

    kind: str
    name: str
    worker: str = ""  # the worker holding the lease, for restart and stop
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "worker": self.worker, "reason": self.reason}


# deciding: pure functions over plain data ---------------------------------------------------


def restart_reason(config: ExchangeCollectorConfig, beat: Heartbeat) -> str | None:
    """Why a running collector should be restarted now, or None when it should not: a
    changed configuration, or (with auto_restart) a trouble a restart cures, by the same
    rule the collector judges its own health with (collectors.health_rule)."""
    if beat.config and beat.config != config_key(config):
        return "configuration changed"
    if not config.auto_restart:
        return None
    is_running = bool(beat.health.get("is_running", True))
    return restart_cause(beat.status, is_running=is_running, should_run=True)


def plan(
    desired: dict[str, ExchangeCollectorConfig],
    heartbeats: dict[str, Heartbeat],
    holders: dict[str, str],
) -> list[Action]:
    """The actions that bring the actual state (holders: stream -> worker) to the desired one."""
    actions = []
    for name, config in sorted(desired.items()):
        worker = holders.get(name)
        if worker is None:
            actions.append(Action("start", name, reason="should run and does not"))
            continue
        beat = heartbeats.get(name)
        if beat is None or beat.worker != worker:
            continue  # just started, its first heartbeat is on its way
        reason = restart_reason(config, beat)
        if reason:
            actions.append(Action("restart", name, worker, reason))
    running = set(holders) | set(heartbeats)
    for name in sorted(running - set(desired)):
        worker = holders.get(name) or heartbeats[name].worker
        actions.append(Action("stop", name, worker, "should not run"))
    return actions


@dataclass(slots=True)
class CollectorState:
    """One stream's current state: what the admin shows and `collector_status` records."""

    name: str
    exchange: str
    symbol: str
    status: str
    should_be_running: bool
    is_healthy: bool
    worker: str = ""
    restarts: int = 0
    last_error: str = ""
    issues: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    collector_status: dict[str, Any] = field(default_factory=dict)  # the spec's status dict

    def as_model(self) -> CollectorStatus:
        return CollectorStatus(
            name=self.name,
            exchange=self.exchange,
            symbol=self.symbol,
            status=self.status,
            should_be_running=self.should_be_running,
            is_healthy=self.is_healthy,
            worker=self.worker,
            restarts=self.restarts,
            last_error=self.last_error,
            issues=self.issues,
            statistics=self.statistics,
            health=self.health,
        )


def state_of(
    name: str,
    config: ExchangeCollectorConfig | None,
    beat: Heartbeat | None,
    worker: str | None,
) -> CollectorState:
    exchange, _, symbol = name.partition(":")
    should_run = config is not None
    if beat is None:
        status = "starting" if worker else "stopped"
        issues = ["not running"] if should_run and not worker else []
        if worker and not should_run:
            issues = ["running but should be stopped"]
        return CollectorState(
            name, exchange, symbol, status, should_run, not issues, worker or "", issues=issues
        )
    issues = list(beat.health.get("issues", []))
    if not should_run and "running but should be stopped" not in issues:
        issues.append("running but should be stopped")
    return CollectorState(
        name=name,
        exchange=exchange,
        symbol=symbol,
        status=str(beat.status.get("status", "")),
        should_be_running=should_run,
        is_healthy=not issues,
        worker=beat.worker,
        restarts=beat.restarts,
        last_error=beat.last_error,
        issues=issues,
        statistics=dict(beat.status.get("statistics", {})),
        health=dict(beat.status.get("health", {})),
        collector_status=beat.status,
    )


def states(
    desired: dict[str, ExchangeCollectorConfig],
    heartbeats: dict[str, Heartbeat],
    holders: dict[str, str],
    configured: set[str] = frozenset(),
) -> list[CollectorState]:
    """Every stream that is configured (enabled or not), wanted or running."""
    names = sorted(set(configured) | set(desired) | set(heartbeats) | set(holders))
    return [
        state_of(name, desired.get(name), heartbeats.get(name), holders.get(name)) for name in names
    ]


# observing and acting ----------------------------------------------------------------------


@dataclass(slots=True)
class Observation:
    desired: dict[str, ExchangeCollectorConfig]
    heartbeats: dict[str, Heartbeat]
    holders: dict[str, str]  # stream -> worker holding its lease
    configured: set[str]  # every trading pair and account in the database, enabled or not

    def states(self) -> list[CollectorState]:
        return states(self.desired, self.heartbeats, self.holders, self.configured)


def observe(client: redis.Redis | None = None) -> Observation:
    """Desired state from the database; actual state from Redis, or without Redis from the
    embedded host's status file (collectors.hosting.embedded)."""
    desired = {config.name: config for config in collector_configs_from_db()}
    pairs = TradingPair.objects.values_list("exchange__name", "symbol")
    configured = {f"{exchange}:{symbol}" for exchange, symbol in pairs}
    accounts = ExchangeAccount.objects.select_related("exchange")
    configured |= {account.collector_name for account in accounts}
    if client is None and embedded.is_embedded():
        found = embedded.read_status()
        if found is None:
            return Observation(desired, {}, {}, configured)
        return Observation(desired, found.heartbeats, found.holders, configured)
    client = client or leases.redis_client()
    holders = {name: leases.worker_of(owner) for name, owner in leases.holders(client).items()}
    return Observation(desired, read_heartbeats(client), holders, configured)


def task_expiry(desired: dict[str, ExchangeCollectorConfig]) -> float:
    """A control task not taken within two check intervals is stale: the next check resends it."""
    default = COLLECTOR_DEFAULTS["health_check_interval"]
    interval = min((c.health_check_interval for c in desired.values()), default=default)
    return max(MIN_TASK_EXPIRY, 2 * interval)


def send(action: Action, expires: float) -> AsyncResult:
    if action.kind == "start":
        return send_start(action.name, expires=expires)
    return send_to_worker(action.kind, action.name, action.worker, action.reason, expires=expires)


def record(collector_states: list[CollectorState]) -> list[CollectorStatus]:
    """One `collector_status` row per stream."""
    with transaction.atomic():
        return CollectorStatus.objects.bulk_create(state.as_model() for state in collector_states)


def reconcile(client: redis.Redis | None = None) -> dict[str, Any]:
    """One health check: act on the difference, record the states; a summary for the result."""
    seen = observe(client)
    actions = plan(seen.desired, seen.heartbeats, seen.holders)
    expires = task_expiry(seen.desired)
    for action in actions:
        logger.info("health check: %s %s (%s)", action.kind, action.name, action.reason)
        send(action, expires)
    current = seen.states()
    record(current)
    return {
        "desired": len(seen.desired),
        "running": len(seen.holders),
        "healthy": sum(1 for state in current if state.is_healthy and state.should_be_running),
        "actions": [action.as_dict() for action in actions],
        "every": sync_health_check_schedule(),
    }


@dataclass(slots=True, frozen=True)
class Applied:
    """What applying a configuration change at once did, for the operator."""

    message: str
    level: int = logging.INFO
    actions: tuple[Action, ...] = ()


def apply_configuration_now(what: str = "Saved") -> Applied:
    """Reconcile now, after an operator changed the configuration (the admin's save);
    the message, starting with `what`, says what that did."""
    if embedded.is_embedded():
        message = (
            f"{what}; the embedded collectors (manage.py collect) follow the database and "
            f"apply it within {embedded.pickup_within():g} s"
        )
        if embedded.read_status() is None:
            message += ", but no embedded collector process runs now"
        return Applied(message + ".")
    try:
        summary = reconcile()
    except (redis.RedisError, kombu.exceptions.OperationalError, OSError) as error:
        return Applied(
            f"{what}, but the collectors cannot be reached now ({error}); the next health "
            "check applies it.",
            logging.WARNING,
        )
    actions = tuple(Action(**action) for action in summary["actions"])
    if not actions:
        return Applied(
            f"{what}; the running collectors already match the configuration: nothing to change."
        )
    done = "; ".join(f"{a.kind} {a.name} ({a.reason})" for a in actions)
    return Applied(f"{what}; applied now: {done}.", actions=actions)


def collector_states(client: redis.Redis | None = None) -> list[CollectorState]:
    """Every configured or running stream as it is now (for the admin and the command)."""
    return observe(client).states()
