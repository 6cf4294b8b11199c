"""The health check's beat schedule follows the exchanges' health_check_interval."""

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from collectors.hosting.reconcile import reconcile
from collectors.hosting.schedule import HEALTH_CHECK_SCHEDULE, sync_health_check_schedule
from collectors.models import Exchange, TradingPair

pytestmark = pytest.mark.django_db


def health_check() -> PeriodicTask:
    return PeriodicTask.objects.select_related("interval").get(name=HEALTH_CHECK_SCHEDULE)


def every() -> tuple[int, str]:
    interval = health_check().interval
    return interval.every, interval.period


def exchange(name: str, interval: float, *pairs: tuple[str, bool], enabled=True) -> Exchange:
    created = Exchange.objects.create(
        name=name,
        enabled=enabled,
        public_ws_url="wss://ws.okx.com:8443/ws/v5/public",
        health_check_interval=interval,
    )
    for symbol, pair_enabled in pairs:
        TradingPair.objects.create(exchange=created, symbol=symbol, enabled=pair_enabled)
    return created


def test_the_schedule_takes_the_shortest_interval_of_the_exchanges_that_collect():
    assert every() == (30, "seconds")
    changed_before = PeriodicTasks.last_change()

    okx = exchange("okx", 10, ("BTC-USDT", True))
    assert sync_health_check_schedule() == 10
    assert every() == (10, "seconds")
    assert PeriodicTasks.last_change() > changed_before  # a running beat reloads

    binance = exchange("binance", 4, ("BTCUSDT", False))  # shorter, but collects nothing
    assert sync_health_check_schedule() == 10

    TradingPair.objects.filter(exchange=binance).update(enabled=True)
    assert sync_health_check_schedule() == 4
    assert every() == (4, "seconds")

    Exchange.objects.filter(name="binance").update(enabled=False)
    assert sync_health_check_schedule() == 10

    okx.health_check_interval = 2.5  # whole seconds, rounded up: never more often than asked
    okx.save()
    assert sync_health_check_schedule() == 3

    okx.delete()  # nothing collects now (binance is disabled): the shortest of all
    assert sync_health_check_schedule() == 4

    Exchange.objects.all().delete()
    assert sync_health_check_schedule() == 30
    assert every() == (30, "seconds")


def test_an_unchanged_interval_leaves_the_schedule_untouched():
    exchange("okx", 30, ("BTC-USDT", True))
    changed_before = PeriodicTasks.last_change()
    assert sync_health_check_schedule() == 30
    assert PeriodicTasks.last_change() == changed_before  # beat has nothing to reload


def test_a_health_check_an_operator_put_on_a_crontab_is_left_alone():
    task = health_check()
    task.interval = None
    task.crontab = CrontabSchedule.objects.create(minute="*/2")
    task.save()
    exchange("okx", 10, ("BTC-USDT", True))

    assert sync_health_check_schedule() is None
    task = health_check()
    assert task.interval is None
    assert task.crontab.minute == "*/2"


def test_each_health_check_applies_the_interval_the_exchanges_ask_for(redis_client):
    exchange("okx", 7, ("BTC-USDT", False))

    summary = reconcile()

    assert summary["every"] == 7
    assert every() == (7, "seconds")
    assert summary["actions"] == []
