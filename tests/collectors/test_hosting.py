"""CollectorHost: collectors under Redis leases, in this process and in a real Celery worker.

Also holds the helpers the other hosting tests share: real worker and beat processes
(stopped at the end of every test, also on failure) and the simulator's exchange in the
database.
"""

import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from collectors import heartbeat, leases
from collectors.health import send_start
from collectors.heartbeat import config_key
from collectors.hosting import CollectorHost, Hosted, LeaseFence
from collectors.models import Exchange, TradingPair
from collectors.types import DataType
from marketdata.models import RawTrade
from tests.collectors.conftest import make_config
from tests.conftest import ROOT, service_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_TTL = 2.0
HEARTBEAT_INTERVAL = 0.25
HOSTING_ENV = {
    "COLLECTOR_LEASE_TTL": str(LEASE_TTL),
    "COLLECTOR_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
    "COLLECTOR_FLUSH_INTERVAL": "0.1",
    "LOG_LEVEL": "INFO",
}
BTC = "okx:BTC-USDT"
ETH = "okx:ETH-USDT"


# shared helpers ---------------------------------------------------------------------------


class Processes:
    """The Celery processes of one test; `stop_all()` ends every one still running."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def spawn(self, label: str, arguments: list[str], **env: str) -> subprocess.Popen:
        log_path = self.directory / f"{label}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tcp_dashboard", *arguments],
                cwd=ROOT,
                env=service_env(
                    COLLECTOR_SPILL_DIR=str(self.directory / "spill"), **{**HOSTING_ENV, **env}
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[label] = process
        self.logs[label] = log_path
        return process

    def collector_worker(self, label: str, **env: str) -> str:
        """A collector worker (collectors queue, threads pool); returns its node name."""
        node = f"{label}@h6tests"
        arguments = ["worker", "-Q", "collectors", "-n", node, "--pool", "threads"]
        self.spawn(label, [*arguments, *QUIET_WORKER], **env)
        return node

    def default_worker(self, label: str = "default") -> str:
        node = f"{label}@h6tests"
        self.spawn(label, ["worker", "-Q", "default", "-n", node, "--pool", "solo", *QUIET_WORKER])
        return node

    def beat(self) -> None:
        schedule = self.directory / "beat-schedule"
        self.spawn("beat", ["beat", "--loglevel", "INFO", "-s", str(schedule)])

    def wait_ready(self, *nodes: str, timeout: float = 60) -> None:
        from tcp_dashboard.celery import app

        def all_answer():
            for label, process in self.running.items():
                if process.poll() is not None:
                    raise AssertionError(f"{label} exited early:\n{self.log(label)[-3000:]}")
            replies = app.control.ping(destination=list(nodes), timeout=0.5)
            return {name for reply in replies for name in reply} >= set(nodes)

        wait_until(all_answer, timeout=timeout, interval=0.2, message=f"{nodes} to answer")

    def label_of(self, node: str) -> str:
        return node.partition("@")[0]

    def pid(self, node: str) -> int:
        return self.running[self.label_of(node)].pid

    def kill(self, node: str, signum: int = signal.SIGKILL) -> None:
        self.running[self.label_of(node)].send_signal(signum)

    def stop(self, node: str, timeout: float = 60) -> int:
        """Warm shutdown (SIGTERM); the exit code."""
        process = self.running.pop(self.label_of(node))
        process.terminate()
        return process.wait(timeout)

    def log(self, label: str) -> str:
        return self.logs[label].read_text()

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a frozen one cannot stop otherwise
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


QUIET_WORKER = ["--without-mingle", "--without-gossip", "--loglevel", "INFO"]


@contextmanager
def empty_redis():
    """The Redis of leases, heartbeats and the broker, empty before and after."""
    client = leases.redis_client()
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@contextmanager
def celery_processes(directory: Path):
    running = Processes(directory)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def hosting_redis():
    with empty_redis() as client:
        yield client


@pytest.fixture
def processes(transactional_db, hosting_redis, tmp_path):
    # Depending on transactional_db stops the processes before the database is flushed.
    with celery_processes(tmp_path) as running:
        yield running


def configure_exchange(simulator, pairs: dict[str, bool], data_types=("trade",), **settings):
    """The simulator as the stored exchange `okx` with these pairs (symbol -> enabled)."""
    fields = {
        "public_ws_url": simulator.public_url,
        "business_ws_url": simulator.business_url,
        "rest_url": simulator.rest_url,
        "ping_interval": 2.0,
        "pong_timeout": 1.0,
        "reconnect_delay": 0.1,
        "max_reconnect_attempts": 5,
        "health_check_interval": 1.0,
        "max_silence_duration": 30.0,
        "buffer_size": 100,
        **settings,
    }
    exchange = Exchange.objects.create(name="okx", **fields)
    for symbol, enabled in pairs.items():
        TradingPair.objects.create(
            exchange=exchange,
            symbol=symbol,
            enabled=enabled,
            data_types=list(data_types),
            channels={"trades": "trades", "ticker": "tickers", "orderbook": "books5"},
        )
    return exchange


def stored_trade_ids(symbol: str) -> list[str]:
    return list(
        RawTrade.objects.filter(exchange="okx", symbol=symbol)
        .order_by("trade_id")
        .values_list("trade_id", flat=True)
    )


def sent_trade_ids(simulator, symbol: str) -> list[str]:
    return sorted(trade["tradeId"] for trade in simulator.sent_trades(symbol))


def running_heartbeat(client, name: str, worker: str | None = None):
    """The stream's heartbeat when it says running (on `worker`, if given), else None."""
    beat = heartbeat.read_heartbeat(client, name)
    if beat is None or beat.status["status"] != "running":
        return None
    if worker is not None and beat.worker != worker:
        return None
    return beat


def wait_for_quiet(client, name: str, since: datetime, seconds: float = 0.5):
    """Wait until the stream's heartbeat shows no data for `seconds` after `since`."""

    def quiet():
        beat = heartbeat.read_heartbeat(client, name)
        return (
            beat is not None
            and (beat.published_at - since).total_seconds() > seconds
            and beat.status["health"]["time_since_data"] >= seconds
        )

    wait_until(quiet, timeout=15, message=f"{name} to go quiet")


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


def test_a_worker_stops_its_collectors_and_flushes_their_data_on_warm_shutdown(
    processes, simulator, hosting_redis
):
    configure_exchange(simulator, {"BTC-USDT": True})
    # Nothing is written before the shutdown unless the shutdown flushes it.
    node = processes.collector_worker("warm", COLLECTOR_FLUSH_INTERVAL="300")
    processes.wait_ready(node)
    assert send_start(BTC).get(timeout=30)["outcome"] == "started"
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= 20, timeout=10, message="trades")
    assert stored_trade_ids("BTC-USDT") == []
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
