"""The embedded default (no Redis, SQLite): `make run` collects in one process that follows
the database, and the admin, the API and `manage.py collectors` show and control it.

One real stack (runstack, its simulators, web server and embedded collectors) in a child
process, operated from a second shell that has only the .env runstack wrote."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from collectors.hosting import embedded
from collectors.hosting.heartbeat import Heartbeat
from tests.collectors.test_runstack import simulator_ports
from tests.helpers import ROOT, free_port, wait_until

OKX_BTC, OKX_ETH, OKX_NEW = "okx:BTC-USDT", "okx:ETH-USDT", "okx:UNI-USD-SWAP"


class EmbeddedStack:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.database = tmp_path / "db.sqlite3"
        self.web = free_port()
        base = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
        # The second shell: nothing but where runstack's .env is.
        self.shell = {**base, "ENV_FILE": str(tmp_path / ".env")}
        env = {
            **self.shell,
            "VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": f"sqlite:///{self.database}",
            "REDIS_URL": "",
        }
        command = [sys.executable, "manage.py", "runstack", "--addr", f"127.0.0.1:{self.web}"]
        command += ["--simulator-port", str(simulator_ports()), "--rate", "20"]
        self.log_path = tmp_path / "runstack.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.shell,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def trades(self, symbol: str) -> int:
        with sqlite3.connect(self.database, timeout=20) as db:
            try:
                query = "SELECT count(*) FROM raw_trades WHERE symbol = ?"
                return db.execute(query, [symbol]).fetchone()[0]
            except sqlite3.OperationalError:
                return 0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        finally:
            self.log.close()


@pytest.fixture
def stack(tmp_path):
    running = EmbeddedStack(tmp_path)
    try:
        wait_until(lambda: "admin: http://" in running.output(), 180, 0.5, message="start-up")
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


def api(stack: EmbeddedStack, token: str, path: str, method: str = "get") -> requests.Response:
    url = f"http://127.0.0.1:{stack.web}/api/v1/{path}"
    return requests.request(method, url, headers={"Authorization": f"Token {token}"}, timeout=30)


def collector(stack, token, name) -> dict:
    found = {item["name"]: item for item in api(stack, token, "collectors/").json()}
    return found.get(name, {})


def admin_session(stack: EmbeddedStack) -> requests.Session:
    password = re.search(r"user admin  password (\S+)", stack.output())[1]
    session = requests.Session()
    login = f"http://127.0.0.1:{stack.web}/admin/login/"
    session.get(login, timeout=30)
    answer = session.post(
        login,
        {
            "username": "admin",
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=30,
    )
    assert answer.url.endswith("/admin/"), answer.text[:500]
    return session


def messages_of(html: str) -> list[str]:
    """The admin's messages (it capitalises their first letter)."""
    found = re.findall(r'<li class="(?:success|info|warning|error)">(.*?)</li>', html, re.S)
    return [message[:1].lower() + message[1:] for message in found]


def test_embedded_collectors_follow_the_database_and_are_operated_like_hosted_ones(stack):
    wait_until(lambda: stack.trades("BTC-USDT") >= 5, 120, 0.5, message="BTC trades")
    assert "Redis: none (collector status kept in a file under VAR_DIR)" in stack.output()
    assert f"database: SQLite file {stack.database}\n" in stack.output()
    assert (
        "runstack: config/okx-simulator.json: exchange okx was not in the database; loaded it "
        "with 2 trading pairs\n" in stack.output()
    )

    # A second shell finds the same database and the collectors' status, without Redis.
    token_run = stack.manage("drf_create_token", "admin")
    assert token_run.returncode == 0, token_run.stderr
    token = token_run.stdout.split()[2]
    status = stack.manage("collectors", "status", OKX_BTC)
    assert status.returncode == 0, status.stderr
    assert re.match(r"okx:BTC-USDT: running on embedded@\S+, should run, healthy", status.stdout)

    # The API shows them as it shows hosted ones.
    answer = api(stack, token, "collectors/")
    assert answer.status_code == 200, answer.text
    btc = collector(stack, token, OKX_BTC)
    assert btc["status"] == "running" and btc["worker"].startswith("embedded@")
    assert btc["statistics"]["messages_received"] > 0
    # The health check reads the same status: every pair of both simulators' files counted.
    health = api(stack, token, "health/").json()["checks"]["collectors"]
    assert health["ok"] and health["detail"] == "4 of 4 healthy", health

    # Stop (the admin's action): the pair is disabled and the collector stops.
    session = admin_session(stack)
    changelist = f"http://127.0.0.1:{stack.web}/admin/collectors/tradingpair/"
    page = session.get(changelist, timeout=30)
    eth_pk = re.search(
        r'href="/admin/collectors/tradingpair/(\d+)/change/[^"]*">ETH-USDT', page.text
    )
    assert eth_pk, page.text[:3000]
    page = session.post(
        changelist,
        {
            "action": "stop_collectors",
            "_selected_action": eth_pk[1],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": changelist},
        timeout=30,
    )
    assert "okx:ETH-USDT: disabled; the embedded collectors stop it within 2 s" in messages_of(
        page.text
    )
    wait_until(
        lambda: collector(stack, token, OKX_ETH).get("status") == "stopped",
        30,
        0.5,
        message="ETH stopped",
    )
    assert collector(stack, token, OKX_ETH)["should_be_running"] is False
    stopped_at = stack.trades("ETH-USDT")
    status = stack.manage("collectors", "status", OKX_ETH)
    assert status.stdout.startswith("okx:ETH-USDT: stopped on no worker, should not run")

    # Start through the API: enabled again, collecting again.
    answer = api(stack, token, f"collectors/{OKX_ETH}/start/", "post")
    assert answer.status_code == 202, answer.text
    assert answer.json()["note"] == "enabled; the embedded collectors start it within 2 s"
    wait_until(lambda: stack.trades("ETH-USDT") > stopped_at, 60, 0.5, message="ETH again")

    # Restart with the command: the collector restarts in place and counts it.
    restart = stack.manage("collectors", "restart", OKX_BTC)
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.strip() == (
        "okx:BTC-USDT: requested; the embedded collectors restart it within 2 s"
    )
    wait_until(
        lambda: collector(stack, token, OKX_BTC)["statistics"]["restarts"] == 1,
        30,
        0.5,
        message="BTC restarted",
    )

    # A pair added while it runs is collected without a restart of anything.
    added = stack.manage(
        "shell",
        "-c",
        "from collectors.models import TradingPair;"
        "btc = TradingPair.objects.get(exchange__name='okx', symbol='BTC-USDT');"
        "TradingPair.objects.create(exchange=btc.exchange, symbol='UNI-USD-SWAP',"
        " data_types=['trade'], channels=btc.channels)",
    )
    assert added.returncode == 0, added.stderr
    wait_until(lambda: stack.trades("UNI-USD-SWAP") > 0, 60, 0.5, message="the new pair")

    # The admin's list shows the live state of each pair.
    page = session.get(changelist, timeout=30)
    assert '<td class="field-state">running</td>' in page.text

    # Unticking Enabled in the admin's list stops it, and the message says how.
    new_pk = re.search(
        r'href="/admin/collectors/tradingpair/(\d+)/change/[^"]*">UNI-USD-SWAP', page.text
    )[1]
    page = session.post(
        changelist,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": new_pk,
            "_save": "Save",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": changelist},
        timeout=30,
    )
    assert (
        "saved; the embedded collectors (manage.py collect) follow the database and apply "
        "it within 2 s." in messages_of(page.text)
    ), messages_of(page.text)
    wait_until(
        lambda: collector(stack, token, OKX_NEW).get("status") == "stopped",
        30,
        0.5,
        message="the new pair stopped",
    )

    assert stack.stop() == 0
    output = stack.output()
    assert "okx:BTC-USDT:" in output  # the collectors' summary on the way out
    assert "runstack: stopped" in output
    # Nothing runs any more: no status is shown as current.
    status = stack.manage("collectors", "status", OKX_BTC)
    assert status.stdout.startswith("okx:BTC-USDT: stopped on no worker, should run")


def test_a_stale_status_file_means_nothing_runs(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    beat = Heartbeat(OKX_BTC, "embedded@here", {"status": "running"}, {"is_healthy": True})
    embedded.write_status("embedded@here", [beat])
    assert embedded.read_status().holders == {OKX_BTC: "embedded@here"}
    path = tmp_path / "collectors" / embedded.STATUS_FILE
    data = json.loads(path.read_text())
    data["published_at"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))
    assert embedded.read_status() is None


def test_requests_are_taken_once_in_the_order_they_were_made(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    embedded.request("restart", OKX_BTC)
    embedded.request("start", OKX_ETH)
    taken = embedded.take_requests()
    assert [(r["action"], r["name"]) for r in taken] == [("restart", OKX_BTC), ("start", OKX_ETH)]
    assert embedded.take_requests() == []


def test_a_second_embedded_host_on_the_same_var_dir_refuses_to_start(tmp_path, settings):
    settings.VAR_DIR = tmp_path
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env.update(
        ENV_FILE="",
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL="",
    )
    manage = [sys.executable, "manage.py"]
    migrate = subprocess.run(
        [*manage, "migrate", "--skip-checks"], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    first = subprocess.Popen([*manage, "collect"], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        status_file = tmp_path / "collectors" / embedded.STATUS_FILE
        wait_until(status_file.exists, 60, 0.2, message="the first host's status")
        second = subprocess.run(
            [*manage, "collect", "--duration", "5"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        assert "another embedded collector process runs with" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0


# the host in this process, against the simulator -------------------------------------------


@pytest.fixture
def host_in_thread(transactional_db, tmp_path, settings):
    import threading

    from collectors.hosting.embedded import EmbeddedHost
    from collectors.storage.sink import StorageSink

    settings.VAR_DIR = tmp_path
    stop = threading.Event()
    sink = StorageSink(name="embedded-test", spill_dir=tmp_path / "spill")
    sink.start()
    host = EmbeddedHost("embedded@test", sink=sink, directory=tmp_path / "collectors")
    thread = threading.Thread(target=host.run, args=(stop,), daemon=True)
    thread.start()
    yield host
    stop.set()
    thread.join(60)
    sink.stop()


def status_of(name: str) -> dict:
    found = embedded.read_status()
    beat = found.heartbeats.get(name) if found else None
    return beat.status if beat else {}


def test_a_changed_configuration_replaces_the_collector_and_counts_a_restart(
    simulator, host_in_thread
):
    from collectors.models import TradingPair
    from tests.collectors.hosting.processes import configure_exchange

    configure_exchange(simulator, {"BTC-USDT": True})
    wait_until(lambda: status_of(OKX_BTC).get("status") == "running", 30, message="running")
    TradingPair.objects.filter(symbol="BTC-USDT").update(data_types=["trade", "ticker"])
    wait_until(
        lambda: status_of(OKX_BTC).get("data_types") == ["trade", "ticker"],
        30,
        message="the new configuration",
    )
    assert status_of(OKX_BTC)["statistics"]["restarts"] == 1


def test_disabling_the_exchange_stops_its_collectors(simulator, host_in_thread):
    from collectors.models import Exchange
    from tests.collectors.hosting.processes import configure_exchange

    configure_exchange(simulator, {"BTC-USDT": True, "ETH-USDT": True})
    wait_until(
        lambda: embedded.read_status() and len(embedded.read_status().heartbeats) == 2,
        30,
        message="both running",
    )
    Exchange.objects.update(enabled=False)
    wait_until(lambda: embedded.read_status().heartbeats == {}, 30, message="both stopped")
    assert [summary.name for summary in host_in_thread.finished] == [OKX_BTC, OKX_ETH]
