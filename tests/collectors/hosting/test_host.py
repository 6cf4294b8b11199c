"""CollectorHost: collectors under Redis leases, in this process and in a real Celery worker."""

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from collectors.hosting import heartbeat, leases
from collectors.hosting.control import send_start
from collectors.hosting.heartbeat import config_key
from collectors.hosting.host import CollectorHost, Hosted, LeaseFence
from collectors.types import DataType
from marketdata.models import RawTrade
from tests.collectors.hosting.processes import (
    BTC,
    ETH,
    HEARTBEAT_INTERVAL,
    LEASE_TTL,
    QUIET_WORKER,
    configure_exchange,
    running_heartbeat,
    sent_trade_ids,
    stored_trade_ids,
    wait_for_quiet,
)
from tests.helpers import make_config, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# the host in this process -----------------------------------------------------------------


@pytest.fixture
def configs(simulator):
    return {
        BTC: make_config(simulator, "BTC-USDT"),
        ETH: make_config(simulator, "ETH-USDT"),
    }


@pytest.fixture
def host(hosting_redis, sink, configs, transactional_db):
    host = CollectorHost(
        "host-a@tests",
        sink=sink,
        lease_ttl=LEASE_TTL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        load_config=configs.get,
    )
    host.start()
    yield host
    host.stop(timeout=30)


def test_a_started_collector_holds_its_lease_and_publishes_its_status(host, hosting_redis):
    result = host.start_collector(BTC)

    assert (result.outcome, result.running, result.worker) == ("started", True, "host-a@tests")
    assert leases.holder(hosting_redis, BTC) == host.owner
    beat = wait_until(lambda: running_heartbeat(hosting_redis, BTC), timeout=5, message="beat")
    assert beat.worker == "host-a@tests"
    assert beat.status["symbols"] == ["BTC-USDT"]
    assert beat.health["is_healthy"] is True
    assert heartbeat.read_workers(hosting_redis)["host-a@tests"].streams == [BTC]
    wait_until(lambda: stored_trade_ids("BTC-USDT"), timeout=10, message="stored trades")


def test_starting_a_running_stream_again_changes_nothing(host):
    host.start_collector(BTC)
    collector = host.manager.get_collector(BTC)

    again = host.start_collector(BTC)

    assert (again.outcome, again.running) == ("already running", True)
    assert host.manager.get_collector(BTC) is collector
    assert collector.restarts == 0


def test_a_stream_another_worker_holds_is_not_started_here(host, hosting_redis):
    leases.acquire(hosting_redis, BTC, leases.new_owner("host-b@tests"), ttl=30)

    result = host.start_collector(BTC)

    assert (result.outcome, result.running, result.detail) == (
        "held elsewhere",
        False,
        "host-b@tests",
    )
    assert host.hosted() == []


def test_a_stream_that_is_not_configured_is_not_started(host, hosting_redis):
    result = host.start_collector("okx:XRP-USDT")

    assert (result.outcome, result.running) == ("not configured", False)
    assert leases.holders(hosting_redis) == {}


def test_a_collector_whose_lease_is_taken_over_stops(host, hosting_redis, simulator):
    host.start_collector(BTC)
    collector = host.manager.get_collector(BTC)
    other = leases.new_owner("host-b@tests")

    hosting_redis.set(leases.lease_key(BTC), other, px=30_000)

    wait_until(lambda: host.hosted() == [], timeout=3, message="the collector to stop")
    assert collector.status == "stopped"
    assert leases.holder(hosting_redis, BTC) == other  # not released: it is not ours
    assert heartbeat.read_heartbeat(hosting_redis, BTC) is None


def test_a_collector_stops_when_its_lease_cannot_be_renewed_for_a_whole_ttl(host):
    host.start_collector(BTC)
    collector = host.manager.get_collector(BTC)
    started = time.monotonic()

    host.client = leases.redis_client("redis://127.0.0.1:1/0")  # nothing listens there

    wait_until(lambda: host.hosted() == [], timeout=LEASE_TTL + 3, message="the stop")
    assert time.monotonic() - started >= LEASE_TTL - HEARTBEAT_INTERVAL
    assert collector.status == "stopped"


class ListSink:
    def __init__(self):
        self.points = []

    def put(self, points):
        self.points.extend(points)

    def flush(self, timeout=None):
        return True


def test_a_fenced_sink_stores_only_while_the_lease_surely_holds():
    collector = SimpleNamespace(name=BTC)
    entry = Hosted(collector=collector, config="", lease_deadline=time.monotonic() + 60)
    sink = ListSink()
    fence = LeaseFence(sink, entry)

    fence.put(["a", "b"])
    entry.lease_deadline = time.monotonic() - 0.001
    fence.put(["c"])

    assert sink.points == ["a", "b"]
    assert entry.dropped == 1


def test_stopping_a_collector_stores_what_it_received_and_gives_up_its_lease(
    host, hosting_redis, simulator
):
    host.start_collector(BTC)
    collector = host.manager.get_collector(BTC)
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= 10, timeout=10, message="trades")
    simulator.fault("pause", inst_id="BTC-USDT")
    sent = sent_trade_ids(simulator, "BTC-USDT")
    wait_until(lambda: collector.counters()["points"] >= len(sent), timeout=5, message="receipt")

    result = host.stop_collector(BTC, "test")

    assert (result.outcome, result.running) == ("stopped", False)
    assert stored_trade_ids("BTC-USDT") == sent
    assert leases.holder(hosting_redis, BTC) is None
    assert heartbeat.read_heartbeat(hosting_redis, BTC) is None
    assert host.stop_collector(BTC).outcome == "not running"


def test_a_restart_with_a_changed_configuration_runs_it_and_counts_the_restart(
    host, hosting_redis, configs, simulator
):
    host.start_collector(BTC)
    configs[BTC] = make_config(simulator, "BTC-USDT", data_types=(DataType.TRADE, DataType.TICKER))

    result = host.restart_collector(BTC, "configuration changed")

    assert (result.outcome, result.running) == ("restarted", True)
    collector = host.manager.get_collector(BTC)
    assert collector.config.data_types == [DataType.TRADE, DataType.TICKER]
    assert collector.restarts == 1
    beat = heartbeat.read_heartbeat(hosting_redis, BTC)
    assert beat.config == config_key(configs[BTC])
    assert beat.status["data_types"] == ["trade", "ticker"]
    assert beat.restarts == 1


def test_restarting_a_stream_that_is_no_longer_configured_stops_it(host, hosting_redis, configs):
    host.start_collector(BTC)
    del configs[BTC]

    result = host.restart_collector(BTC)

    assert (result.outcome, result.running) == ("stopped", False)
    assert leases.holders(hosting_redis) == {}


def test_stopping_the_host_stops_every_collector_and_gives_up_its_leases(
    hosting_redis, sink, configs, transactional_db
):
    host = CollectorHost(
        "host-c@tests",
        sink=sink,
        lease_ttl=LEASE_TTL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        load_config=configs.get,
    )
    host.start()
    host.start_collector(BTC)
    host.start_collector(ETH)
    collectors = [host.manager.get_collector(name) for name in (BTC, ETH)]

    host.stop(timeout=30)

    assert [collector.status for collector in collectors] == ["stopped", "stopped"]
    assert leases.holders(hosting_redis) == {}
    assert heartbeat.read_heartbeats(hosting_redis) == {}
    assert heartbeat.read_workers(hosting_redis) == {}


def test_a_heartbeat_interval_longer_than_half_the_lease_is_refused(hosting_redis, sink):
    with pytest.raises(ValueError, match="at most half the lease TTL"):
        CollectorHost("host-d@tests", sink=sink, lease_ttl=2, heartbeat_interval=1.5)


# the host in a real worker ----------------------------------------------------------------


def test_a_worker_stops_its_collectors_and_keeps_their_data_on_warm_shutdown(
    processes, simulator, hosting_redis
):
    configure_exchange(simulator, {"BTC-USDT": True})
    node = processes.collector_worker("warm")
    processes.wait_ready(node)
    assert send_start(BTC).get(timeout=30)["outcome"] == "started"
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= 20, timeout=10, message="trades")
    paused_at = datetime.now(UTC)
    simulator.fault("pause", inst_id="BTC-USDT")
    wait_for_quiet(hosting_redis, BTC, since=paused_at)

    assert processes.stop(node) == 0

    assert stored_trade_ids("BTC-USDT") == sent_trade_ids(simulator, "BTC-USDT")
    assert leases.holders(hosting_redis) == {}
    assert heartbeat.read_heartbeats(hosting_redis) == {}
    assert heartbeat.read_workers(hosting_redis) == {}


def test_a_worker_consuming_the_collectors_queue_refuses_a_process_pool(processes):
    node = "prefork@h6tests"
    process = processes.spawn(
        "prefork", ["worker", "-Q", "collectors", "-n", node, "--pool", "prefork", *QUIET_WORKER]
    )

    assert process.wait(60) != 0
    assert "start it with --pool threads" in processes.log("prefork")


def test_a_worker_not_consuming_the_collectors_queue_hosts_nothing(processes, hosting_redis):
    node = processes.default_worker()
    processes.wait_ready(node)

    assert heartbeat.read_workers(hosting_redis) == {}
    assert "collector host" not in processes.log("default")


def test_a_hosted_collector_of_either_exchange_starts_stores_and_stops(
    market, hosting_redis, sink, transactional_db
):
    config = market.config()
    host = CollectorHost(
        "host-x@tests",
        sink=sink,
        lease_ttl=LEASE_TTL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        load_config={config.name: config}.get,
    )
    host.start()
    try:
        assert host.start_collector(config.name).running
        wait_until(lambda: running_heartbeat(hosting_redis, config.name), 10, message="a heartbeat")
        assert leases.holder(hosting_redis, config.name) is not None
        wait_until(lambda: len(market.sent()) >= 10, timeout=10, message="trades")
        market.pause()
        collector = host.manager.get_collector(config.name)
        sent = sorted(trade["trade_id"] for trade in market.sent())
        wait_until(lambda: collector.counters()["points"] >= len(sent), 5, message="receipt")
        result = host.stop_collector(config.name, "test")
        assert (result.outcome, result.running) == ("stopped", False)
        assert leases.holder(hosting_redis, config.name) is None
    finally:
        host.stop(timeout=30)
    stored = RawTrade.objects.filter(exchange=market.exchange, symbol=market.symbol)
    assert sorted(stored.values_list("trade_id", flat=True)) == sent


def test_the_worker_sink_writes_at_the_largest_buffer_size_of_the_streams_it_runs(
    hosting_redis, simulator, settings, tmp_path
):
    settings.COLLECTOR_SPILL_DIR = tmp_path
    configs = {
        BTC: make_config(simulator, "BTC-USDT", buffer_size=5000),
        ETH: make_config(simulator, "ETH-USDT", buffer_size=300),
    }
    host = CollectorHost(
        "buffers@tests",
        lease_ttl=LEASE_TTL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        load_config=configs.get,
    )
    host.start()
    try:
        assert host.sink.buffer_size == 1000  # no stream yet: the default
        host.start_collector(ETH)
        assert host.sink.buffer_size == 300
        host.start_collector(BTC)
        assert host.sink.buffer_size == 5000
        host.stop_collector(BTC)
        assert host.sink.buffer_size == 300
        wait_until(lambda: stored_trade_ids("ETH-USDT"), timeout=10, message="stored trades")
    finally:
        host.stop(timeout=30)
