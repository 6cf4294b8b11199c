"""Failover between real collector workers: a killed worker's streams move, none runs twice.

Beat sends the health check every second to a default worker; leases live two seconds. The
trades a killed worker received and never stored come back from OKX's REST recent trades,
which the new host fetches when it subscribes.
"""

import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from collectors.hosting import heartbeat, leases
from collectors.hosting.reconcile import reconcile
from marketdata.models import MarketData, RawTrade
from tests.collectors.hosting.processes import (
    BTC,
    ETH,
    LEASE_TTL,
    configure_exchange,
    hosted_on,
    running_heartbeat,
    stored_trade_ids,
    wait_for_quiet,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_CHECK_INTERVAL = 1.0


def schedule_health_check(every: float) -> None:
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=every, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.update_or_create(
        name="collectors: health check",
        defaults={"task": "collectors.health_check", "interval": interval, "enabled": True},
    )


def generated_trade_ids(simulator, symbol: str) -> list[str]:
    """Every trade the simulator made for the symbol, sent on some connection or not."""
    return sorted(trade["tradeId"] for trade in simulator.generated_trades(symbol))


def test_a_killed_workers_streams_move_to_another_worker_without_gaps_or_duplicates(
    processes, simulator, hosting_redis
):
    configure_exchange(simulator, {"BTC-USDT": True, "ETH-USDT": True})
    schedule_health_check(HEALTH_CHECK_INTERVAL)
    first = processes.collector_worker("first")
    checker = processes.default_worker()
    processes.beat()
    processes.wait_ready(first, checker)
    wait_until(lambda: hosted_on(hosting_redis, first) == [BTC, ETH], timeout=20, message="up")
    second = processes.collector_worker("second")
    processes.wait_ready(second)
    wait_until(lambda: len(simulator.sent_trades("ETH-USDT")) >= 20, timeout=15, message="ETH")
    # BTC is quiet when the worker dies, so everything sent for it was stored before.
    paused_at = datetime.now(UTC)
    simulator.fault("pause", inst_id="BTC-USDT")
    wait_for_quiet(hosting_redis, BTC, since=paused_at)
    wait_until(lambda: stored_trade_ids("BTC-USDT"), timeout=5, message="BTC stored")

    killed_at = time.monotonic()
    processes.kill(first, signal.SIGKILL)
    wait_until(
        lambda: all(running_heartbeat(hosting_redis, name, second) for name in (BTC, ETH)),
        timeout=2 * LEASE_TTL + HEALTH_CHECK_INTERVAL + 10,
        interval=0.05,
        message="both streams on the second worker",
    )
    moved_after = time.monotonic() - killed_at

    simulator.fault("resume", inst_id="BTC-USDT")
    more = len(simulator.sent_trades("BTC-USDT")) + 20
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= more, timeout=15, message="BTC")
    for symbol in ("BTC-USDT", "ETH-USDT"):
        simulator.fault("pause", inst_id=symbol)
    paused_at = datetime.now(UTC)
    for name in (BTC, ETH):
        wait_for_quiet(hosting_redis, name, since=paused_at)
    assert processes.stop(second) == 0  # a warm shutdown flushes what it received

    assert moved_after <= 2 * LEASE_TTL + HEALTH_CHECK_INTERVAL
    pairs = RawTrade.objects.values_list("symbol", "trade_id")
    assert RawTrade.objects.count() == len(set(pairs))
    # ETH was trading when its worker died, which took with it the trades it had received
    # and not yet committed; the second worker fetched them over REST on subscribing.
    for symbol in ("BTC-USDT", "ETH-USDT"):
        stored = sorted(stored_trade_ids(symbol))
        assert stored == generated_trade_ids(simulator, symbol), symbol


def test_two_workers_never_run_the_same_stream_at_once(processes, simulator, hosting_redis):
    symbols = ["BTC-USDT", "ETH-USDT", "UNI-USD-SWAP"]
    configure_exchange(simulator, dict.fromkeys(symbols, True), data_types=("trade", "ticker"))
    names = [f"okx:{symbol}" for symbol in symbols]
    first, second = processes.collector_worker("one"), processes.collector_worker("two")
    processes.wait_ready(first, second)

    for _ in range(3):  # every start task is sent three times; both workers take some
        reconcile()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        on_first, on_second = hosted_on(hosting_redis, first), hosted_on(hosting_redis, second)
        assert not set(on_first) & set(on_second)
        for name, owner in leases.holders(hosting_redis).items():
            beat = heartbeat.read_heartbeat(hosting_redis, name)
            assert beat is None or beat.worker == leases.worker_of(owner)
        assert simulator.stats()["active_subscriptions"] <= 2 * len(symbols)
        time.sleep(0.05)
    assert sorted(hosted_on(hosting_redis, first) + hosted_on(hosting_redis, second)) == names

    # A frozen worker loses its lease; when it wakes up, its sockets still hold frames
    # the new host received too, and it must store none of them.
    frozen = leases.worker_of(leases.holder(hosting_redis, BTC))
    other = second if frozen == first else first
    processes.kill(frozen, signal.SIGSTOP)
    wait_until(
        lambda: reconcile() and running_heartbeat(hosting_redis, BTC, other),
        timeout=2 * LEASE_TTL + 10,
        interval=0.5,
        message="BTC to move to the other worker",
    )
    tickers_before = MarketData.objects.filter(symbol="BTC-USDT", data_type="ticker").count()
    wait_until(
        lambda: (
            MarketData.objects.filter(symbol="BTC-USDT", data_type="ticker").count()
            >= tickers_before + 2
        ),
        timeout=10,
        message="the new host to store tickers while the old one is frozen",
    )
    processes.kill(frozen, signal.SIGCONT)
    wait_until(
        lambda: (
            BTC not in hosted_on(hosting_redis, frozen)
            and frozen in heartbeat.read_workers(hosting_redis)
        ),
        timeout=LEASE_TTL + 5,
        message="the woken worker to stop BTC",
    )
    assert running_heartbeat(hosting_redis, BTC, other)
    assert leases.worker_of(leases.holder(hosting_redis, BTC)) == other
    for node in (first, second):
        assert processes.stop(node) == 0

    tickers = MarketData.objects.filter(symbol="BTC-USDT", data_type="ticker")
    copies = Counter((row.timestamp, str(row.data)) for row in tickers)
    assert copies and max(copies.values()) == 1
