"""Fixtures for the dashboard: users, a web server of our own, and a live stack.

The live stack is real: the OKX simulator, a Celery collector worker hosting the collectors
(publishing live candles, trades and books to Redis), and the web server as `make run`
starts it (gunicorn's ASGI workers), all against the test database and Redis. It is built
once per module and torn down after it, removing what it stored.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from collectors.hosting.control import send_start
from collectors.management.commands.runstack import web_server
from collectors.simulators.okx import OkxSimulator
from tests.collectors.hosting.processes import (
    HOSTING_ENV,
    celery_processes,
    configure_exchange,
    empty_redis,
)
from tests.helpers import ROOT, free_port, service_env, wait_until

PASSWORD = "a-long-test-password-1"
SCREENSHOTS = ROOT / "var" / "screenshots"
# Markets of their own: Redis pub/sub channels are server-wide, and other tests may publish
# candles of the simulator's default markets meanwhile.
SYMBOLS = ("DTA-USDT", "DTB-USDT")


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextmanager
def running_web_server(directory: Path, **env: str) -> Iterator[WebServer]:
    """The web server (one ASGI worker) on a free port, against the test database."""
    port = free_port()
    log = directory / f"web-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            web_server(f"127.0.0.1:{port}", workers=1),
            cwd=ROOT,
            # test settings: they know the fast password hasher the test users are made with
            env=service_env(DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.test", **env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = WebServer(f"http://127.0.0.1:{port}", process, log)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the web server exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{server.url}/healthz", timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(answers, 60, 0.2, message="the web server to answer")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_users():
    from django.contrib.auth.models import User

    staff = User.objects.create_user("operator", password=PASSWORD, is_staff=True)
    viewer = User.objects.create_user("trader", password=PASSWORD)
    return staff, viewer


HISTORY_MINUTES = (1, 2, 4)  # minutes before now of the stored 1m candles: 3 is a gap


def seed_history(symbol: str) -> datetime:
    """Three stored, final 1m candles before now, one minute missing between them: the
    chart's history on the 1m timeframe. Returns the end of the missing minute."""
    from marketdata.candles import CandleValue, floor_boundary, store_candles

    now = floor_boundary(datetime.now(UTC), "1m")
    price = Decimal("100.5")
    store_candles(
        [
            CandleValue(
                "okx", symbol, "1m", now - timedelta(minutes=step), price, price + 1,
                price - 1, price, Decimal(2), Decimal(2) * price, price, 4,
            )
            for step in HISTORY_MINUTES
        ]
    )  # fmt: skip
    return now - timedelta(minutes=3)


def forget_everything() -> None:
    """What a live stack stored: its rows go, so the next tests start from empty tables."""
    from django.contrib.auth.models import User

    from collectors.models import CollectorStatus, Exchange
    from marketdata.models import Candle, MarketData, RawTrade

    for model in (RawTrade, MarketData, Candle, CollectorStatus, Exchange, User):
        model.objects.all().delete()


@dataclass
class LiveStack:
    web: WebServer
    simulator: object
    worker: str
    gap: datetime  # the end of a minute without a stored candle in the first market's history


@pytest.fixture(scope="module")
def live_stack(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LiveStack]:
    directory = tmp_path_factory.mktemp("live-stack")
    simulator = OkxSimulator(seed=11, rate=20.0, instruments=SYMBOLS)
    simulator.start()
    worker_env = {**HOSTING_ENV, "CANDLE_GRACE": "0.3", "CANDLE_LIVE_TIMEFRAMES": "1s,1m,5m"}
    with django_db_blocker.unblock(), empty_redis():
        try:
            exchange_pairs = dict.fromkeys(SYMBOLS, True)
            configure_exchange(simulator, exchange_pairs, data_types=("trade", "orderbook"))
            make_users()
            gap = seed_history(SYMBOLS[0])
            with celery_processes(directory) as processes:
                worker = processes.collector_worker("dashboard", **worker_env)
                processes.wait_ready(worker)
                for symbol in SYMBOLS:
                    send_start(f"okx:{symbol}")
                with running_web_server(directory) as web:
                    yield LiveStack(web, simulator, worker, gap)
        finally:
            simulator.stop()
            forget_everything()


@pytest.fixture
def browser():
    """A fresh headless Chromium (Debian's binary) for one test.

    Playwright's synchronous API runs an event loop in this thread while it is up, and
    Django refuses database calls from a thread with a running loop: so it starts after the
    test's database transaction is opened and stops before it is rolled back.
    """
    from playwright.sync_api import sync_playwright

    from dashboard.browser import chromium

    with sync_playwright() as driver, chromium(driver) as context:
        context.set_default_timeout(60_000)  # a busy 2-core machine can be slow to load
        yield context


def sign_in(page, server: WebServer, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{server.url}/")
    page.wait_for_url("**/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")


def screenshot(page, name: str) -> Path:
    """Kept under var/screenshots (git-ignored) as the tests' artefacts."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def read_events(url: str, cookie: str, until, timeout: float = 20.0) -> list[tuple[str, str]]:
    """(event, data) of a live stream, read over plain HTTP until `until(events)` holds."""
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    connection.request("GET", path, headers={"Cookie": cookie, "Accept": "text/event-stream"})
    response = connection.getresponse()
    assert response.status == 200, response.read()[:500]
    events: list[tuple[str, str]] = []
    name = ""
    try:
        while not until(events):
            line = response.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, line[len("data: ") :]))
    finally:
        connection.close()
    return events
