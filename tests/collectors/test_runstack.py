"""`manage.py runstack` (the README's `make run`) brings the platform up and down."""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import redis

from collectors.management.commands.runstack import (
    Child,
    Simulated,
    Supervisor,
    parts,
    service_lines,
)
from tests.helpers import ROOT, free_port, wait_until

OKX = Simulated("okx", 8765, Path("okx.json"), ["BTC-USDT", "SOL-USDT"])
BINANCE = Simulated("binance", 8766, Path("binance.json"), ["BTCUSDT"])


def test_with_redis_the_collectors_run_in_celery_workers():
    names = [name for name, _ in parts({"REDIS_URL": "redis://x"}, "127.0.0.1:1", 5, [OKX])]
    assert names == ["okx-simulator", "web", "collector-worker", "worker", "beat", "flower"]


def test_without_redis_the_collectors_run_in_one_process():
    found = dict(parts({"REDIS_URL": ""}, "127.0.0.1:1", 5, [OKX]))
    assert set(found) == {"okx-simulator", "web", "collectors"}
    assert found["collectors"][-1] == "collect"


def test_each_configured_exchange_gets_its_simulator_serving_the_configured_symbols():
    found = dict(parts({"REDIS_URL": ""}, "127.0.0.1:1", 5, [OKX]))
    simulator = found["okx-simulator"]
    assert simulator[simulator.index("simulate_exchange") + 1] == "okx"
    assert simulator[simulator.index("--port") + 1] == "8765"
    assert simulator[simulator.index("--instruments") + 1] == "BTC-USDT,SOL-USDT"


def test_both_shipped_simulator_configurations_get_a_simulator_each():
    found = dict(parts({"REDIS_URL": ""}, "127.0.0.1:1", 5, [BINANCE, OKX]))
    simulator = found["binance-simulator"]
    assert simulator[simulator.index("simulate_exchange") + 1] == "binance"
    assert simulator[simulator.index("--port") + 1] == "8766"
    assert "okx-simulator" in found


def test_on_embedded_defaults_trades_reach_the_database_and_the_admin_answers(tmp_path):
    web, simulator = free_port(), simulator_ports()
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL="",
        ENV_FILE=str(tmp_path / ".env"),
    )
    command = [sys.executable, "manage.py", "runstack", "--addr", f"127.0.0.1:{web}"]
    command += ["--simulator-port", str(simulator), "--rate", "20"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def trades() -> int:
            if not (tmp_path / "db.sqlite3").exists():
                return 0
            with sqlite3.connect(tmp_path / "db.sqlite3") as db:
                try:
                    return db.execute("SELECT count(*) FROM raw_trades").fetchone()[0]
                except sqlite3.OperationalError:
                    return 0

        wait_until(lambda: trades() >= 10, 90, 0.5, message="trades in the database")
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/admin/login/", timeout=10) as page:
            assert page.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    assert process.returncode == 0, output
    assert "no Redis: collectors run in one process" in output
    assert "okx:BTC-USDT:" in output  # the collectors' summary on the way out
    assert "binance:BTCUSDT:" in output
    assert "runstack: stopped" in output


def test_it_names_the_database_broker_and_redis_it_uses_without_passwords():
    lines = service_lines(
        {
            "DATABASE_URL": "postgresql://trader:s3cret-pass@db.internal:6543/market",
            "REDIS_URL": "redis://:r3dis-pass@cache:6379/2",
            "VAR_DIR": "/srv/var",
        }
    )
    assert lines == [
        "database: PostgreSQL postgresql://trader:***@db.internal:6543/market",
        "broker: redis://:***@cache:6379/2",
        "Redis: redis://:***@cache:6379/2 (leases, heartbeats, live data)",
    ]


# supervision ---------------------------------------------------------------------------------


def supervise(children: list[Child], until, timeout: float) -> tuple[Supervisor, list[str], bool]:
    lines: list[str] = []
    supervisor = Supervisor(children, dict(os.environ), lines.append)
    supervisor.start_all()
    carry_on = True
    try:
        deadline = time.monotonic() + timeout
        while carry_on and not until(supervisor, lines) and time.monotonic() < deadline:
            carry_on = supervisor.step(time.monotonic())
            time.sleep(0.1)
    finally:
        for child in children:
            if child.process is not None and child.process.poll() is None:
                child.process.kill()
                child.process.wait()
    return supervisor, lines, carry_on


def test_a_part_that_exits_is_restarted_after_a_pause_with_one_line_each_way(tmp_path):
    marker = tmp_path / "ran-once"
    script = (
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch(); sys.exit(3)\n"
        "time.sleep(60)\n"
    )
    child = Child("flaky", [sys.executable, "-c", script])
    supervisor, lines, carry_on = supervise(
        [child], lambda s, _: child.restarts == 1 and child.process.poll() is None, timeout=30
    )
    assert carry_on and child.restarts == 1
    exits = [line for line in lines if "exited" in line]
    assert len(exits) == 1
    assert "flaky" in exits[0] and "exited with code 3; restarting it in 1s" in exits[0]
    assert [line for line in lines if line.startswith("restarted")] == [
        f"restarted flaky (pid {child.process.pid}, restart 1)"
    ]
    assert supervisor.failed == ""


def test_no_part_outlives_runstack_even_when_it_is_killed(tmp_path):
    script = (
        "import subprocess, sys, time\n"
        "from collectors.management.commands.runstack import Child, Supervisor\n"
        "child = Child('sleeper', [sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "Supervisor([child], {}, print).start_all()\n"
        "sys.stdout.flush()\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    line = parent.stdout.readline()
    child_pid = int(re.search(r"pid (\d+)", line)[1])
    parent.kill()
    parent.wait()

    def gone() -> bool:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return True
        return open(f"/proc/{child_pid}/stat").read().split()[2] == "Z"

    wait_until(gone, 30, 0.1, message="the part to end with its parent")


def test_a_part_that_keeps_failing_fast_stops_the_platform_with_a_clear_message():
    child = Child("broken", [sys.executable, "-c", "import sys; sys.exit(2)"])
    steady = Child("steady", [sys.executable, "-c", "import time; time.sleep(120)"])
    supervisor, lines, carry_on = supervise([child, steady], lambda s, _: False, timeout=60)
    assert not carry_on
    assert supervisor.failed == (
        "broken exited 5 times within 60s (last exit code 2); giving up: stopping everything "
        "(see its output above)"
    )
    waits = [line.rsplit(" ", 1)[-1] for line in lines if "restarting it in" in line]
    assert waits == ["1s", "2s", "4s", "8s"]
    assert steady.restarts == 0


def simulator_ports() -> int:
    """The first of two consecutive free ports (runstack gives the second exchange the next)."""
    for _ in range(50):
        first = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first
    raise AssertionError("no two consecutive free ports")


def stack_env(tmp_path, database_url: str, redis_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ENV_FILE=str(tmp_path / ".env"),
        COLLECTOR_LEASE_TTL="3",
        COLLECTOR_HEARTBEAT_INTERVAL="0.5",
        DB_POOL="0",
    )
    return env


class Stack:
    """`manage.py runstack` in a child process, its output collected line by line."""

    def __init__(self, env: dict[str, str], tmp_path) -> None:
        self.web, self.simulator, self.flower = free_port(), simulator_ports(), free_port()
        command = [sys.executable, "manage.py", "runstack", "--addr", f"127.0.0.1:{self.web}"]
        command += ["--simulator-port", str(self.simulator), "--rate", "20"]
        command += ["--flower-port", str(self.flower)]
        self.log_path = tmp_path / "runstack.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def child_pid(self, name: str) -> int | None:
        pids = re.findall(rf"(?:started|restarted) {re.escape(name)} \(pid (\d+)", self.output())
        return int(pids[-1]) if pids else None

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=120)
        finally:
            self.log.close()

    def kill(self) -> None:
        """After a failure: stop it as Ctrl-C would, and only then by force."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def stack_database():
    name = f"tcp_run12_stack_{os.getpid()}"
    server = "postgresql://postgres@127.0.0.1:5432"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def stored_trades(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM raw_trades").fetchone()[0]


def test_a_killed_collector_worker_is_restarted_and_trades_flow_again(tmp_path, stack_database):
    redis_url = "redis://127.0.0.1:6379/5"
    redis.Redis.from_url(redis_url).flushdb()
    env = stack_env(tmp_path, stack_database, redis_url)
    stack = Stack(env, tmp_path)
    try:
        wait_until(lambda: "admin: http://" in stack.output(), 180, 0.5, message="start-up")
        wait_until(
            lambda: stored_trades(stack_database) >= 10, 180, 0.5, message="the first trades"
        )
        victim = stack.child_pid("collector-worker")
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (stack.child_pid("collector-worker") or victim) != victim,
            60,
            0.2,
            message="the collector worker's restart",
        )
        after_kill = stored_trades(stack_database)
        wait_until(
            lambda: stored_trades(stack_database) >= after_kill + 10,
            180,
            0.5,
            message="trades from the restarted worker",
        )
        # A second shell with nothing set finds the same services through .env.
        shell = {key: env[key] for key in ("PATH", "HOME", "LANG", "ENV_FILE") if key in env}

        def status() -> str:
            done = subprocess.run(
                [sys.executable, "manage.py", "collectors", "status", "okx:BTC-USDT"],
                cwd=ROOT,
                env=shell,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        wait_until(
            lambda: status().startswith("okx:BTC-USDT: running on collectors@"),
            90,
            1,
            message="okx:BTC-USDT running again, seen from a second shell",
        )
        code = stack.interrupt()
    finally:
        stack.kill()
    output = stack.output()
    assert code == 0, output[-3000:]
    assert f"collector-worker (pid {victim}) exited with code -9; restarting it in 1s" in output
    assert "restarted collector-worker" in output
    assert "after the collector worker's restart: Health check;" in output
    assert "giving up" not in output
    assert f"database: PostgreSQL {stack_database}" in output
    assert f"broker: {redis_url}" in output
    assert f"Redis: {redis_url} (leases, heartbeats, live data)" in output
    assert "runstack: stopped" in output
    for name in ("web", "worker", "beat", "flower", "okx-simulator"):
        pid = stack.child_pid(name)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
