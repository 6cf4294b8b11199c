"""The health check's beat schedule follows the exchanges' health_check_interval."""

import pytest
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from collectors.models import Exchange, TradingPair
from collectors.schedule import HEALTH_CHECK_SCHEDULE

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the on-commit callbacks of each block, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


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


def test_the_schedule_takes_the_shortest_interval_of_the_exchanges_that_collect(committed):
    assert every() == (30, "seconds")
    changed_before = PeriodicTasks.last_change()

    with committed():
        okx = exchange("okx", 10, ("BTC-USDT", True))
    assert every() == (10, "seconds")
    assert PeriodicTasks.last_change() > changed_before  # a running beat reloads

    with committed():  # a shorter interval, but nothing to collect there
        binance = exchange("binance", 4, ("BTCUSDT", False))
    assert every() == (10, "seconds")

    with committed():
        TradingPair.objects.filter(exchange=binance).update(enabled=True)
        binance.trading_pairs.get().save()
    assert every() == (4, "seconds")

    with committed():
        binance.enabled = False
        binance.save()
    assert every() == (10, "seconds")

    with committed():  # whole seconds, rounded up: never more often than asked
        okx.health_check_interval = 2.5
        okx.save()
    assert every() == (3, "seconds")

    with committed():  # nothing collects now (binance is disabled): the shortest of all
        okx.delete()
    assert every() == (4, "seconds")

    with committed():
        Exchange.objects.all().delete()
    assert every() == (30, "seconds")


def test_a_health_check_an_operator_put_on_a_crontab_is_left_alone(committed):
    task = health_check()
    task.interval = None
    task.crontab = CrontabSchedule.objects.create(minute="*/2")
    task.save()

    with committed():
        exchange("okx", 10, ("BTC-USDT", True))

    task = health_check()
    assert task.interval is None
    assert task.crontab.minute == "*/2"


def test_nothing_changes_until_the_transaction_commits(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        exchange("okx", 10, ("BTC-USDT", True))
    assert every() == (30, "seconds")
    assert callbacks
    assert IntervalSchedule.objects.filter(every=10).count() == 0
