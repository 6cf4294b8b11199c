"""Logging in to OKX's private WebSocket: a good login streams the account, a refused one is
reported and not hammered."""

from decimal import Decimal

import pytest

from collectors.simulators.market import wall_clock_ms
from collectors.simulators.okx import OkxSimulator
from collectors.simulators.okx_account import ApiKey
from collectors.types import DataType
from tests.accounts.conftest import account_config, new_key
from tests.helpers import run, wait_until


def received(collector, data_type):
    points = []
    collector.add_data_callback(data_type, points.append)
    return points


def test_a_good_login_streams_balances_that_match_the_simulated_account(
    account_sim, api_key, credentials_env, collectors
):
    collector = collectors(account_config(account_sim, data_types=[DataType.BALANCE]))
    balances = received(collector, DataType.BALANCE)
    assert run(collector.start())
    account = account_sim.account(api_key.api_key)
    wait_until(lambda: account.steps >= 4, 10, message="the account to trade")
    wait_until(
        lambda: [
            p
            for p in balances
            if p.data["source"] == "ws" and p.timestamp.timestamp() * 1000 >= account.u_time - 200
        ],
        10,
        message="a pushed balance",
    )
    run(collector.stop())
    latest = {}
    for point in balances:
        latest[point.symbol] = point
    for ccy, cash in account.balances.items():
        frozen = account.frozen.get(ccy, Decimal(0))
        point = latest[ccy]
        assert point.exchange == "okx"
        assert point.data["account"] == "main"
        assert point.data["equity"] == cash
        assert point.data["available"] == cash - frozen
        assert point.data["frozen"] == frozen
    assert account_sim.stats()["logins"] == {"0": 1}


def test_positions_and_orders_are_stored_as_their_own_types(
    account_sim, api_key, credentials_env, collectors
):
    collector = collectors(account_config(account_sim))
    positions = received(collector, DataType.POSITION)
    orders = received(collector, DataType.ORDER)
    assert run(collector.start())
    wait_until(lambda: len(orders) >= 4 and positions, 10, message="orders and positions")
    account = account_sim.account(api_key.api_key)
    assert {o.data["state"] for o in orders} == {"live", "filled"}
    assert all(o.symbol == "BTC-USDT" and o.data["account"] == "main" for o in orders)
    filled = [o for o in orders if o.data["state"] == "filled"]
    assert filled[0].data["filled_size"] == Decimal("0.01")
    assert positions[-1].symbol == "BTC-USDT-SWAP"
    assert positions[-1].data["position"] in {Decimal(n) for n in range(-5, 6)}
    ids = [o.data["order_id"] for o in orders]
    assert ids[:2] == [account.orders[0]["ordId"]] * 2


REFUSALS = {
    "60005": lambda key: ApiKey("kWRONG" + key.api_key[6:], key.secret, key.passphrase),
    "60024": lambda key: ApiKey(key.api_key, key.secret, key.passphrase + "x"),
    "60007": lambda key: ApiKey(key.api_key, "S" + key.secret, key.passphrase),
}


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_a_login_refused_for_good_is_reported_and_not_retried(
    account_sim, api_key, monkeypatch, collectors, code
):
    used = REFUSALS[code](api_key)
    monkeypatch.setenv("TEST_OKX_API_KEY", used.api_key)
    monkeypatch.setenv("TEST_OKX_API_SECRET", used.secret)
    monkeypatch.setenv("TEST_OKX_API_PASSPHRASE", used.passphrase)
    collector = collectors(account_config(account_sim))
    assert not run(collector.start())
    wait_until(lambda: collector.status == "error", 10, message="the collector to stop in error")
    wait_until(lambda: not collector.is_running and not collector._links, 10, message="links end")
    error = collector.get_status()["statistics"]["last_error"]
    assert error.startswith("permanent: ")
    assert f"code {code}" in error and "'main'" in error
    assert account_sim.stats()["logins"] == {code: 1}
    assert collector.restart_cause() is None  # the health check will not restart it


def test_an_ip_the_key_does_not_allow_is_refused_for_good(api_key, credentials_env, collectors):

    fenced = ApiKey(api_key.api_key, api_key.secret, api_key.passphrase, allowed_ips=("10.1.1.1",))
    sim = OkxSimulator(seed=3, rate=5.0, api_keys=[fenced])
    sim.start()
    try:
        collector = collectors(account_config(sim))
        assert not run(collector.start())
        wait_until(lambda: not collector._links, 10, message="the link to end")
        error = collector.get_status()["statistics"]["last_error"]
        assert "code 60009" in error and "IP" in error
        assert sim.stats()["logins"] == {"60009": 1}
    finally:
        sim.stop()


def test_an_expired_timestamp_is_retried_with_backoff_then_given_up(
    api_key, credentials_env, collectors
):

    sim = OkxSimulator(seed=3, rate=5.0, api_keys=[api_key], clock=lambda: wall_clock_ms() + 60_000)
    sim.start()
    try:
        collector = collectors(account_config(sim, max_reconnect_attempts=2))
        assert not run(collector.start())
        wait_until(
            lambda: collector.status == "error" and not collector._links,
            20,
            message="the collector to give up",
        )
        # the first login and one per reconnect attempt: no more
        assert sim.stats()["logins"] == {"60006": 3}
        assert "gave up after 2 reconnect attempts" in collector.last_error
    finally:
        sim.stop()


def test_a_missing_variable_is_named_and_stops_the_collector(
    account_sim, monkeypatch, collectors, credentials_env
):
    monkeypatch.delenv("TEST_OKX_API_SECRET")
    collector = collectors(account_config(account_sim))
    assert not run(collector.start())
    wait_until(lambda: not collector._links, 10, message="the link to end")
    error = collector.get_status()["statistics"]["last_error"]
    assert "environment variable TEST_OKX_API_SECRET is not set" in error
    assert error.startswith("permanent: ")
    assert account_sim.stats()["login_attempts"] == 0


def test_a_second_account_logs_in_beside_the_first(
    account_sim, api_key, credentials_env, monkeypatch, collectors
):
    other = new_key()
    account_sim.add_api_key(other)
    monkeypatch.setenv("TEST_SUB_KEY", other.api_key)
    monkeypatch.setenv("TEST_SUB_SECRET", other.secret)
    monkeypatch.setenv("TEST_SUB_PASSPHRASE", other.passphrase)
    names = {
        "api_key_env": "TEST_SUB_KEY",
        "secret_env": "TEST_SUB_SECRET",
        "passphrase_env": "TEST_SUB_PASSPHRASE",
    }
    main = collectors(account_config(account_sim, data_types=[DataType.BALANCE]))
    sub = collectors(account_config(account_sim, "sub1", names, data_types=[DataType.BALANCE]))
    main_points, sub_points = received(main, DataType.BALANCE), received(sub, DataType.BALANCE)
    assert run(main.start()) and run(sub.start())
    wait_until(lambda: main_points and sub_points, 10, message="balances of both")
    assert {p.data["account"] for p in main_points} == {"main"}
    assert {p.data["account"] for p in sub_points} == {"sub1"}
    assert account_sim.stats()["logins"] == {"0": 2}
    assert main.name == "okx:account:main" and sub.name == "okx:account:sub1"
