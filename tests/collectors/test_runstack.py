"""`manage.py runstack` (the README's `make run`) brings the platform up and down."""

import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

from collectors.management.commands.runstack import Simulated, parts
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
    web, simulator = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL="",
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
