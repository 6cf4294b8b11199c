"""Control of hosted collectors: the tasks that start, stop and restart a stream, and the
operators' services behind the admin's actions, the API and `manage.py collectors`.

An operator's start and stop also set the pair's `enabled`, so the next reconciliation
keeps what the operator asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import current_app
from celery.result import AsyncResult

from collectors.hosting import leases
from collectors.hosting.queues import COLLECTORS_QUEUE, control_queue
from collectors.models import ExchangeAccount, TradingPair
from collectors.types import account_of


def send_start(name: str, *, expires: float = 300.0) -> AsyncResult:
    """Ask the collector workers to run a stream: whichever takes the task takes the lease."""
    return current_app.send_task(
        "collectors.start", args=[name], queue=COLLECTORS_QUEUE, expires=expires
    )


def send_to_worker(
    kind: str, name: str, worker: str, reason: str, *, expires: float = 300.0
) -> AsyncResult:
    """Send a stop or restart to the worker that runs the stream."""
    return current_app.send_task(
        f"collectors.{kind}",
        args=[name, reason],
        queue=control_queue(worker),
        expires=expires,
    )


def hosting_worker(name: str, client: redis.Redis | None = None) -> str | None:
    """The worker that holds the stream's lease, None when nobody runs it."""
    owner = leases.holder(client or leases.redis_client(), name)
    return leases.worker_of(owner) if owner else None


class ControlError(ValueError):
    """An operator's request that cannot be done; the message says why."""


@dataclass(slots=True)
class SentControl:
    """What a control request sent: the task's result handle, None when nothing was sent."""

    name: str
    action: str
    worker: str
    result: AsyncResult | None
    note: str = ""


def trading_pair(name: str) -> TradingPair | ExchangeAccount:
    """The trading pair, or the account ("okx:account:main"), a stream name stands for."""
    exchange, _, symbol = name.partition(":")
    account = account_of(symbol)
    try:
        if account is not None:
            return ExchangeAccount.objects.select_related("exchange").get(
                exchange__name=exchange, name=account
            )
        return TradingPair.objects.select_related("exchange").get(
            exchange__name=exchange, symbol=symbol
        )
    except (TradingPair.DoesNotExist, ExchangeAccount.DoesNotExist):
        raise ControlError(
            f"no trading pair or account {name!r} (names are exchange:symbol, e.g. "
            "okx:BTC-USDT, or exchange:account:name, e.g. okx:account:main)"
        ) from None


def start_collector(name: str) -> SentControl:
    """Enable the pair (or account) and ask a collector worker to run it now."""
    pair = trading_pair(name)
    if not pair.exchange.enabled:
        raise ControlError(f"exchange {pair.exchange.name} is disabled; enable it first")
    note = ""
    if not pair.enabled:
        pair.enabled = True
        pair.save(update_fields=["enabled"])
        note = "enabled"
    return SentControl(name, "start", "", send_start(name), note)


def stop_collector(name: str) -> SentControl:
    """Disable the pair or account (if configured) and stop it on the worker that runs it."""
    exchange, _, symbol = name.partition(":")
    account = account_of(symbol)
    if account is not None:
        streams = ExchangeAccount.objects.filter(exchange__name=exchange, name=account)
    else:
        streams = TradingPair.objects.filter(exchange__name=exchange, symbol=symbol)
    updated = streams.filter(enabled=True).update(enabled=False)
    note = "disabled" if updated else ""
    worker = hosting_worker(name)
    if worker is None:
        return SentControl(name, "stop", "", None, note or "not running")
    return SentControl(name, "stop", worker, send_to_worker("stop", name, worker, "operator"), note)


def restart_collector(name: str) -> SentControl:
    """Restart it where it runs; start it when it should run and does not."""
    pair = trading_pair(name)
    worker = hosting_worker(name)
    if worker is not None:
        sent = send_to_worker("restart", name, worker, "operator")
        return SentControl(name, "restart", worker, sent)
    if not (pair.enabled and pair.exchange.enabled):
        raise ControlError(f"{name} is not running and is disabled; start it instead")
    return SentControl(name, "start", "", send_start(name), "was not running")
