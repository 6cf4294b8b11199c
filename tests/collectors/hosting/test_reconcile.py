"""The health check: desired state in the database against leases and heartbeats.

The deciding functions are tested on plain data; reconciliation against a real collector
worker process, the OKX simulator, PostgreSQL and Redis.
"""

import importlib
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from collectors.hosting import heartbeat, leases
from collectors.hosting.heartbeat import Heartbeat, config_key
from collectors.hosting.reconcile import Action, plan, reconcile, restart_reason, states
from collectors.models import CollectorStatus, TradingPair
from collectors.types import DataType, ExchangeCollectorConfig
from tests.collectors.hosting.processes import (
    BTC,
    ETH,
    celery_processes,
    configure_exchange,
    hosted_on,
    running_heartbeat,
    stored_trade_ids,
)
from tests.helpers import wait_until

# deciding ---------------------------------------------------------------------------------


def config(symbol="BTC-USDT", auto_restart=True, **params):
    return ExchangeCollectorConfig(
        "okx", symbol, [DataType.TRADE], auto_restart=auto_restart, custom_params=params or None
    )


def beat_of(cfg, worker="w1@host", status="running", since_data=1.0, uptime=100.0, **health):
    return Heartbeat(
        name=cfg.name,
        worker=worker,
        status={
            "status": status,
            "health": {
                "time_since_heartbeat": 0.1,
                "time_since_data": since_data,
                "max_silence_duration": 60.0,
            },
            "statistics": {"uptime_seconds": uptime, "restarts": 0, "last_error": "boom"},
        },
        health={"is_healthy": True, "issues": [], "is_running": True, **health},
        config=config_key(cfg),
    )


def test_a_stream_that_should_run_and_has_no_lease_is_started():
    btc = config()

    assert plan({btc.name: btc}, {}, {}) == [Action("start", BTC, reason="should run and does not")]


def test_a_healthy_running_stream_is_left_alone():
    btc = config()

    assert plan({btc.name: btc}, {btc.name: beat_of(btc)}, {btc.name: "w1@host"}) == []


def test_a_stream_that_should_not_run_is_stopped_where_it_runs():
    btc = config()

    actions = plan({}, {btc.name: beat_of(btc)}, {btc.name: "w2@host"})

    assert actions == [Action("stop", BTC, "w2@host", "should not run")]


def test_a_leased_stream_without_its_first_heartbeat_is_left_to_start():
    btc = config()
    old_beat = beat_of(btc, worker="dead@host", status="error")

    assert plan({btc.name: btc}, {}, {btc.name: "w1@host"}) == []
    assert plan({btc.name: btc}, {btc.name: old_beat}, {btc.name: "w1@host"}) == []


def test_a_stream_silent_past_max_silence_duration_is_restarted():
    btc = config()
    silent = beat_of(btc, since_data=61.0)

    actions = plan({btc.name: btc}, {btc.name: silent}, {btc.name: "w1@host"})

    assert actions == [
        Action("restart", BTC, "w1@host", "no data for 61s (max_silence_duration 60s)")
    ]


def test_silence_counts_from_the_last_restart_not_from_before_it():
    btc = config()

    assert restart_reason(btc, beat_of(btc, since_data=500.0, uptime=5.0)) is None


def test_a_stream_in_error_is_restarted():
    btc = config()

    assert restart_reason(btc, beat_of(btc, status="error")) == "in error: boom"


def test_an_unhealthy_stream_is_not_restarted_without_auto_restart():
    btc = config(auto_restart=False)

    assert restart_reason(btc, beat_of(btc, status="error", since_data=999.0)) is None


def test_a_stream_running_an_old_configuration_is_restarted_even_without_auto_restart():
    running = config(auto_restart=False)
    changed = config(auto_restart=False, max_silence_duration=5.0)

    assert restart_reason(changed, beat_of(running)) == "configuration changed"


def test_states_report_running_stopped_and_unwanted_streams():
    btc, eth = config(), config("ETH-USDT")
    xrp = config("XRP-USDT")

    found = states({btc.name: btc, eth.name: eth}, {xrp.name: beat_of(xrp)}, {xrp.name: "w1@host"})

    by_name = {state.name: state for state in found}
    assert by_name[BTC].status == "stopped"
    assert by_name[BTC].issues == ["not running"]
    assert not by_name[BTC].is_healthy
    assert by_name["okx:XRP-USDT"].should_be_running is False
    assert by_name["okx:XRP-USDT"].issues == ["running but should be stopped"]
    assert by_name["okx:XRP-USDT"].worker == "w1@host"
    assert by_name["okx:XRP-USDT"].collector_status["status"] == "running"


# the schedules ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_migrate_schedules_the_health_check_and_the_candle_rollup():
    tasks = {task.task: task for task in PeriodicTask.objects.all()}

    assert tasks["collectors.health_check"].interval.every == 30
    assert tasks["collectors.health_check"].interval.period == "seconds"
    assert tasks["marketdata.rollup_candles"].interval.every == 60
    assert tasks["collectors.health_check"].enabled


@pytest.mark.django_db
def test_the_schedules_migration_is_idempotent_and_reversible():
    migration = importlib.import_module("collectors.migrations.0002_periodic_tasks")
    task = PeriodicTask.objects.get(task="collectors.health_check")
    task.enabled = False  # an operator's edit survives running it again
    task.save()

    migration.create_schedules(apps, None)
    assert PeriodicTask.objects.filter(task="collectors.health_check").count() == 1
    assert not PeriodicTask.objects.get(task="collectors.health_check").enabled

    migration.remove_schedules(apps, None)
    assert not PeriodicTask.objects.filter(task__in=["collectors.health_check"]).exists()
    assert not PeriodicTask.objects.filter(task="marketdata.rollup_candles").exists()


# reconciling with a real collector worker ------------------------------------------------


@pytest.fixture
def worker(transactional_db, hosting_redis, tmp_path):
    with celery_processes(tmp_path) as processes:
        node = processes.collector_worker("hc")
        processes.wait_ready(node)
        yield node


def test_enabling_a_pair_makes_it_collect_within_one_reconciliation(
    simulator, worker, hosting_redis
):
    configure_exchange(simulator, {"BTC-USDT": True, "ETH-USDT": False})
    reconcile()
    wait_until(lambda: running_heartbeat(hosting_redis, BTC), timeout=15, message="BTC")
    assert stored_trade_ids("ETH-USDT") == []

    TradingPair.objects.filter(symbol="ETH-USDT").update(enabled=True)
    summary = reconcile()

    assert summary["actions"] == [
        {"kind": "start", "name": ETH, "worker": "", "reason": "should run and does not"}
    ]
    wait_until(lambda: stored_trade_ids("ETH-USDT"), timeout=15, message="ETH trades stored")
    assert running_heartbeat(hosting_redis, ETH, worker=worker)
    assert hosted_on(hosting_redis, worker) == [BTC, ETH]


def test_disabling_a_pair_stops_it_at_the_next_reconciliation(simulator, worker, hosting_redis):
    configure_exchange(simulator, {"BTC-USDT": True, "ETH-USDT": True})
    reconcile()
    wait_until(lambda: hosted_on(hosting_redis, worker) == [BTC, ETH], timeout=15, message="up")

    TradingPair.objects.filter(symbol="ETH-USDT").update(enabled=False)
    summary = reconcile()

    assert [action["kind"] for action in summary["actions"]] == ["stop"]
    wait_until(lambda: hosted_on(hosting_redis, worker) == [BTC], timeout=15, message="ETH stop")
    assert leases.holder(hosting_redis, ETH) is None
    assert heartbeat.read_heartbeat(hosting_redis, ETH) is None
    wait_until(
        lambda: simulator.stats()["active_subscriptions"] == 1, timeout=5, message="unsubscribe"
    )


def test_a_silenced_stream_is_restarted_by_the_health_check_and_the_restart_counted(
    simulator, worker, hosting_redis
):
    configure_exchange(simulator, {"BTC-USDT": True}, max_silence_duration=1.0)
    reconcile()
    wait_until(lambda: running_heartbeat(hosting_redis, BTC), timeout=15, message="BTC running")
    assert reconcile()["actions"] == []

    simulator.fault("pause", inst_id="BTC-USDT")
    summary = wait_until(
        lambda: (result := reconcile())["actions"] and result,
        timeout=15,
        interval=0.3,
        message="a restart",
    )

    assert summary["actions"][0]["kind"] == "restart"
    assert summary["actions"][0]["reason"].startswith("no data for")
    restarted = wait_until(
        lambda: (beat := heartbeat.read_heartbeat(hosting_redis, BTC)) and beat.restarts and beat,
        timeout=15,
        message="the restart to be counted",
    )
    assert restarted.worker == worker
    simulator.fault("resume", inst_id="BTC-USDT")
    reconcile()
    last = CollectorStatus.objects.filter(name=BTC).order_by("-recorded_at", "-id").first()
    assert last.restarts >= 1
    assert last.worker == worker


def test_a_changed_trading_pair_takes_effect_at_the_next_reconciliation(
    simulator, worker, hosting_redis
):
    configure_exchange(simulator, {"BTC-USDT": True})
    reconcile()
    first = wait_until(lambda: running_heartbeat(hosting_redis, BTC), timeout=15, message="BTC")
    assert first.status["data_types"] == ["trade"]

    TradingPair.objects.filter(symbol="BTC-USDT").update(data_types=["trade", "ticker"])
    summary = reconcile()

    assert summary["actions"][0]["reason"] == "configuration changed"
    changed = wait_until(
        lambda: (
            (beat := running_heartbeat(hosting_redis, BTC))
            and beat.status["data_types"] == ["trade", "ticker"]
            and beat
        ),
        timeout=15,
        message="the new configuration",
    )
    assert changed.worker == worker


def test_each_reconciliation_records_one_status_row_per_stream(simulator, worker, hosting_redis):
    configure_exchange(simulator, {"BTC-USDT": True, "ETH-USDT": False})
    reconcile()
    wait_until(lambda: running_heartbeat(hosting_redis, BTC), timeout=15, message="BTC")

    reconcile()

    rows = list(CollectorStatus.objects.order_by("id"))
    assert [row.name for row in rows] == [BTC, ETH, BTC, ETH]
    latest = {row.name: row for row in rows[2:]}
    assert (latest[BTC].status, latest[BTC].is_healthy, latest[BTC].worker) == (
        "running",
        True,
        worker,
    )
    assert latest[BTC].statistics["messages_received"] > 0
    assert (latest[ETH].status, latest[ETH].should_be_running, latest[ETH].is_healthy) == (
        "stopped",
        False,
        True,
    )


def test_the_collectors_command_shows_and_controls_a_collector(simulator, worker, hosting_redis):
    configure_exchange(simulator, {"BTC-USDT": True})
    reconcile()
    wait_until(lambda: running_heartbeat(hosting_redis, BTC), timeout=15, message="BTC")

    def command(*args):
        out = StringIO()
        call_command("collectors", *args, stdout=out)
        return out.getvalue()

    status = command("status")
    assert f"{BTC}: running on {worker}, should run, healthy" in status
    assert '"messages_received"' in status

    assert f"{BTC}: restarted on {worker}" in command("restart", BTC)
    assert heartbeat.read_heartbeat(hosting_redis, BTC).restarts == 1

    assert f"{BTC}: stopped on {worker}" in command("stop", BTC)
    assert not TradingPair.objects.get(symbol="BTC-USDT").enabled
    assert reconcile()["actions"] == []  # the operator's stop holds

    assert f"{BTC}: started on {worker}" in command("start", BTC)
    assert TradingPair.objects.get(symbol="BTC-USDT").enabled
    assert f"{BTC}: already running on {worker}" in command("start", BTC)
