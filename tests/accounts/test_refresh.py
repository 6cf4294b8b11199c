"""A reconnect logs in again and refreshes the balances and positions over signed REST."""

from collectors.types import DataType
from tests.accounts.conftest import account_config
from tests.helpers import run, wait_until


def test_a_reconnect_logs_in_again_and_refreshes_from_rest(
    account_sim, api_key, credentials_env, collectors
):
    collector = collectors(account_config(account_sim))
    points = []
    for data_type in (DataType.BALANCE, DataType.POSITION):
        collector.add_data_callback(data_type, points.append)
    assert run(collector.start())
    account = account_sim.account(api_key.api_key)
    wait_until(lambda: account.position != 0, 10, message="a position to open")
    assert account_sim.stats()["rest_logins"] == {"0": 2}  # balance and positions, once
    account_sim.fault("drop")
    wait_until(lambda: account_sim.stats()["logins"] == {"0": 2}, 10, message="a second login")
    wait_until(lambda: account_sim.stats()["rest_logins"] == {"0": 4}, 10, message="a refresh")
    wait_until(lambda: collector.status == "running", 10, message="running again")
    refreshed = [p for p in points if p.data["source"] == "rest"]
    positions = [p for p in refreshed if p.data_type is DataType.POSITION]
    balances = {p.symbol for p in refreshed if p.data_type is DataType.BALANCE}
    assert balances == {"BTC", "USDT"}
    assert positions and positions[-1].symbol == "BTC-USDT-SWAP"
    assert collector.get_status()["statistics"]["errors"] >= 1  # the dropped connection


def test_rest_signing_errors_are_okx_codes(account_sim, api_key):
    from collectors.exchanges.okx_account import Credentials, fetch_private

    good = Credentials(api_key.api_key, api_key.secret, api_key.passphrase)
    [item] = fetch_private(account_sim.rest_url, "/api/v5/account/balance", good, demo=False)
    assert {d["ccy"] for d in item["details"]} == {"BTC", "USDT"}
    cases = {
        "50111": Credentials("nobody", api_key.secret, api_key.passphrase),
        "50105": Credentials(api_key.api_key, api_key.secret, "wrong"),
        "50113": Credentials(api_key.api_key, "wrong", api_key.passphrase),
    }
    for code, credentials in cases.items():
        try:
            fetch_private(account_sim.rest_url, "/api/v5/account/balance", credentials, demo=False)
        except ValueError as error:
            assert f"error {code}" in str(error)
            assert api_key.secret not in str(error) and api_key.passphrase not in str(error)
        else:
            raise AssertionError(f"{code} not refused")
    try:  # a live key used as a demo-trading one
        fetch_private(account_sim.rest_url, "/api/v5/account/balance", good, demo=True)
    except ValueError as error:
        assert "error 50101" in str(error)
    else:
        raise AssertionError("demo switch not checked")


def test_a_position_closed_while_disconnected_is_recorded_closed_after_the_refresh(
    api_key, credentials_env, collectors
):
    from decimal import Decimal

    from collectors.simulators.okx import OkxSimulator

    sim = OkxSimulator(seed=4, rate=5.0, api_keys=[api_key], account_interval=3600)
    sim.start()
    try:
        account = sim.account(api_key.api_key)
        sim.in_loop(lambda: setattr(account, "position", Decimal(3)))
        collector = collectors(account_config(sim, data_types=[DataType.POSITION]))
        positions = []
        collector.add_data_callback(DataType.POSITION, positions.append)
        assert run(collector.start())
        wait_until(lambda: positions, 10, message="the open position")
        assert positions[0].data["position"] == Decimal(3)
        sim.in_loop(lambda: setattr(account, "position", Decimal(0)))  # closed elsewhere
        sim.fault("drop")
        wait_until(lambda: sim.stats()["logins"] == {"0": 2}, 10, message="a second login")
        closed = wait_until(
            lambda: [p for p in positions if p.data["position"] == 0], 10, message="closed"
        )
        assert closed[0].symbol == "BTC-USDT-SWAP" and closed[0].data["source"] == "rest"
    finally:
        sim.stop()
