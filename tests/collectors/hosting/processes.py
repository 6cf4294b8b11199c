"""Helpers of the hosting tests: real Celery worker and beat processes (stopped at the end of
every test, also on failure), the simulator's exchange in the database, and waits on
heartbeats."""

import signal
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from collectors.hosting import heartbeat, leases
from collectors.models import Exchange, TradingPair
from marketdata.models import RawTrade
from tests.helpers import ROOT, service_env, simulator_connection, wait_until

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


def configure_exchange(simulator, pairs: dict[str, bool], data_types=("trade",), **settings):
    """The simulator as the stored exchange `okx` with these pairs (symbol -> enabled)."""
    fields = {
        **simulator_connection(simulator),
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


def hosted_on(client, node):
    beat = heartbeat.read_workers(client).get(node)
    return beat.streams if beat else []
