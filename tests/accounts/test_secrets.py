"""A full run with DEBUG logging leaves none of an account's three secrets anywhere: log
files, console, log records, status, API answers, admin pages or the dumped configuration."""

import io
import json
import logging
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from collectors.config.store import collector_configs_from_db
from collectors.factory import ExchangeFactory
from collectors.models import AccountAccess, Exchange, ExchangeAccount
from collectors.simulators.okx import OkxSimulator
from collectors.simulators.okx_account import ApiKey
from marketdata.models import MarketData
from tests.helpers import ROOT, run, service_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

KEY = ApiKey(
    api_key="7a3e51c0-acct-key-4d9b-b2f1-6e0c8a4d2f95",
    secret="C0FFEE5EC12E7D4B9A8F7E6D5C4B3A2F",
    passphrase="Wh1sper-acct-Pa55phrase",
)
ENV = {"ACCT_OKX_KEY": KEY.api_key, "ACCT_OKX_SECRET": KEY.secret, "ACCT_OKX_PASS": KEY.passphrase}
# the second account's key is known but its passphrase is wrong: the login error path
WRONG_ENV = {
    "SUB_OKX_KEY": KEY.api_key,
    "SUB_OKX_SECRET": KEY.secret,
    "SUB_OKX_PASS": "Nope-wrong-9f2c",
}
SECRETS = {**ENV, **WRONG_ENV}


def exchange_config(sim) -> dict:
    return {
        "exchange": "okx",
        "connection": {
            "public_ws_url": sim.public_url,
            "private_ws_url": sim.private_url,
            "rest_url": sim.rest_url,
            "reconnect_delay": 0.2,
            "ping_interval": 2.0,
        },
        "credentials": [
            {
                "account": "main",
                "api_key_env": "ACCT_OKX_KEY",
                "secret_env": "ACCT_OKX_SECRET",
                "passphrase_env": "ACCT_OKX_PASS",
            },
            {
                "account": "sub1",
                "api_key_env": "SUB_OKX_KEY",
                "secret_env": "SUB_OKX_SECRET",
                "passphrase_env": "SUB_OKX_PASS",
            },
        ],
        "account_data_types": ["balance", "position", "order"],
        "data_collection": {"buffer_size": 50},
        "trading_pairs": [{"symbol": "BTC-USDT", "data_types": ["trade"]}],
    }


@pytest.fixture
def sim():
    simulator = OkxSimulator(seed=5, rate=20.0, api_keys=[KEY], account_interval=0.1)
    simulator.start()
    yield simulator
    simulator.stop()


def assert_no_secret(text: str, where: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name} in {where}"


def test_a_collect_run_with_debug_logging_writes_no_secret(tmp_path, sim):
    path = tmp_path / "okx.json"
    path.write_text(json.dumps(exchange_config(sim)))
    logs = tmp_path / "logs"
    env = service_env(
        LOG_LEVEL="DEBUG",
        LOG_FILE_OUTPUT="true",
        LOG_DIRECTORY=str(logs),
        COLLECTORS_LOG_LEVEL="DEBUG",
        COLLECTORS_LOG_VERBOSE="true",
        WEBSOCKET_LOG_LEVEL="DEBUG",
        WEBSOCKET_LOG_VERBOSE="true",
        LOG_TRACE_PER_SECOND="100",
        **SECRETS,
    )
    console = (tmp_path / "console.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "collect", "--config", str(path)],
        cwd=ROOT,
        env=env,
        stdout=console,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: sim.stats()["logins"].get("0") == 1, 60, message="a login")
        wait_until(lambda: sim.account(KEY.api_key).steps >= 6, 30, message="account steps")
        sim.fault("drop")  # a reconnect: a second login and a REST refresh
        wait_until(lambda: sim.stats()["rest_logins"].get("0", 0) >= 4, 30, message="a refresh")
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0
        console.close()
    written = "".join(p.read_text() for p in sorted(logs.glob("*.log")))
    output = (tmp_path / "console.txt").read_text()
    assert_no_secret(written, "a log file")
    assert_no_secret(output, "the console")
    # the run logged what could have leaked: the account's pushes, its login answers, the
    # refused login of sub1, and the connection's frames at DEBUG
    assert " DEBUG " in written and "websocket_clients.frames" in written
    assert "okx:account:main" in written and '"event":"login"' in written
    assert "okx login of account 'sub1' refused, code 60024: wrong passphrase" in written
    assert sim.stats()["logins"]["60024"] == 1


def test_status_api_admin_and_dump_show_no_secret(sim, monkeypatch, sink, caplog, client, tmp_path):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    raw = raw_log_messages(monkeypatch, caplog)
    config_path = tmp_path / "okx.json"
    config_path.write_text(json.dumps(exchange_config(sim)))
    call_command("load_exchange_config", str(config_path), stdout=io.StringIO())
    made = []
    for config in collector_configs_from_db():
        if config.symbol.startswith("account:"):
            collector = ExchangeFactory.create_collector(config)
            collector.sink = sink
            made.append(collector)
            run(collector.start())
    try:
        wait_until(
            lambda: MarketData.objects.filter(data_type="order").count() >= 4, 30, message="orders"
        )
        wait_until(lambda: not made[1]._links, 10, message="sub1 to stop on its refused login")
        statuses = [json.dumps(c.get_status()) + json.dumps(c.get_health_status()) for c in made]
    finally:
        for collector in made:
            run(collector.stop())
    sink.flush(10)
    assert "code 60024" in statuses[1]
    assert_no_secret("".join(statuses), "a status")

    staff = get_user_model().objects.create_superuser("boss", password="a-long-password")
    api = APIClient()
    api.force_authenticate(staff)
    answers = [
        api.get(f"/api/v1/{kind}/").content.decode() for kind in ("balances", "positions", "orders")
    ]
    answers.append(api.get("/api/v1/collectors/").content.decode())
    assert '"account":"main"' in answers[0].replace(" ", "")
    assert_no_secret("".join(answers), "an API answer")

    client.force_login(staff)
    exchange = Exchange.objects.get(name="okx")
    account = ExchangeAccount.objects.get(name="main")
    AccountAccess.objects.create(user=staff, account=account)
    balance = MarketData.objects.filter(data_type="balance").first()
    pages = [
        reverse("admin:collectors_exchange_change", args=[exchange.pk]),
        reverse("admin:collectors_accountaccess_changelist"),
        reverse("admin:marketdata_marketdata_changelist"),
        reverse("admin:marketdata_marketdata_change", args=[balance.pk]),
        "/accounts/",
        "/collectors/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode(), url)
    assert "ACCT_OKX_SECRET" in client.get(pages[0]).content.decode()  # the name, shown

    out = io.StringIO()
    call_command("dump_exchange_config", stdout=out)
    assert "ACCT_OKX_PASS" in out.getvalue()
    assert_no_secret(out.getvalue(), "dump_exchange_config")
    ours = "\n".join(
        message
        for name, message in raw
        if not name.startswith(("websockets", "collectors.simulators"))  # OKX's side
    )
    assert "okx:account:main" in ours and "login of account 'sub1' refused" in ours
    assert_no_secret(ours, "a log record (before redaction)")


def raw_log_messages(monkeypatch, caplog) -> list[tuple[str, str]]:
    """Every log message as the code wrote it, before any handler's redaction: the secrets
    must never reach the logging calls, not merely be masked on the way out."""
    for name in ("", "collectors", "websocket_clients", "data_collectors", "websocket"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[tuple[str, str]] = []
    handle = logging.Logger.handle

    def recording(logger, record):
        seen.append((record.name, record.getMessage()))
        return handle(logger, record)

    monkeypatch.setattr(logging.Logger, "handle", recording)
    return seen
