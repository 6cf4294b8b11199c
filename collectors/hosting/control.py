"""Control of hosted collectors: the tasks that start, stop and restart a stream, and the
operators' services behind the admin's actions, the API and `manage.py collectors`.

An operator's start and stop also set the pair's `enabled`, so the next reconciliation
keeps what the operator asked for. Without Redis (the embedded default) nothing is sent:
the embedded host follows `enabled` by itself, and a restart is asked through its request
files (collectors.hosting.embedded); the note says what will happen.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import current_app
from celery.result import AsyncResult

from collectors.hosting import embedded, leases
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

    def summary(self) -> str:
        """One line on what was done, for the admin and the command."""
        note = f" ({self.note})" if self.note else ""
        if self.result is None:
            return self.note or f"nothing to {self.action}"
        target = f"worker {self.worker}" if self.worker else "the collector workers"
        return f"{self.action} sent to {target}{note}"


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


def embedded_running(name: str) -> tuple[bool, bool]:
    """(an embedded host runs, it runs this stream)."""
    found = embedded.read_status()
    return found is not None, found is not None and name in found.heartbeats


def embedded_note(done: str, then: str) -> str:
    host_runs, _ = embedded_running("")
    if not host_runs:
        return f"{done}; no embedded collector process runs now (make run, or manage.py collect)"
    return f"{done}; the embedded collectors {then} within {embedded.pickup_within():g} s"


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
    if embedded.is_embedded():
        _, runs = embedded_running(name)
        if runs:
            return SentControl(name, "start", "", None, note or "already running")
        embedded.request("start", name)
        return SentControl(name, "start", "", None, embedded_note(note or "requested", "start it"))
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
    if embedded.is_embedded():
        _, runs = embedded_running(name)
        if not runs:
            return SentControl(name, "stop", "", None, note or "not running")
        return SentControl(name, "stop", "", None, embedded_note(note or "requested", "stop it"))
    worker = hosting_worker(name)
    if worker is None:
        return SentControl(name, "stop", "", None, ", ".join(filter(None, [note, "not running"])))
    return SentControl(name, "stop", worker, send_to_worker("stop", name, worker, "operator"), note)


def restart_collector(name: str) -> SentControl:
    """Restart it where it runs; start it when it should run and does not."""
    pair = trading_pair(name)
    if embedded.is_embedded():
        return restart_embedded(name, pair)
    worker = hosting_worker(name)
    if worker is not None:
        sent = send_to_worker("restart", name, worker, "operator")
        return SentControl(name, "restart", worker, sent)
    if not (pair.enabled and pair.exchange.enabled):
        raise ControlError(f"{name} is not running and is disabled; start it instead")
    return SentControl(name, "start", "", send_start(name), "was not running")


def restart_embedded(name: str, pair: TradingPair) -> SentControl:
    host_runs, runs = embedded_running(name)
    if not runs and not (pair.enabled and pair.exchange.enabled):
        raise ControlError(f"{name} is not running and is disabled; start it instead")
    if not host_runs:
        return SentControl(name, "restart", "", None, embedded_note("not running", ""))
    embedded.request("restart" if runs else "start", name)
    then = "restart it" if runs else "start it"
    return SentControl(name, "restart", "", None, embedded_note("requested", then))
