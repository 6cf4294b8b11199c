"""The simulator's private endpoint checks a login exactly as OKX does: the signature over
timestamp + GET + /users/self/verify, a 30-second window, and OKX's error codes."""

import time

import orjson
import pytest
import websocket

from collectors.simulators.okx_account import ApiKey, okx_sign
from tests.helpers import wait_until


@pytest.fixture
def private(account_sim):
    sockets = []

    def connect():
        ws = websocket.create_connection(account_sim.private_url, timeout=5)
        sockets.append(ws)
        return ws

    yield connect
    for ws in sockets:
        ws.close()


def login(ws, api_key, secret, passphrase, stamp=None):
    stamp = str(int(time.time())) if stamp is None else stamp
    arg = {"apiKey": api_key, "passphrase": passphrase, "timestamp": stamp,
           "sign": okx_sign(secret, f"{stamp}GET/users/self/verify")}  # fmt: skip
    ws.send(orjson.dumps({"op": "login", "args": [arg]}))
    return orjson.loads(ws.recv())


def test_a_login_signed_as_okx_documents_is_accepted(private, api_key):
    ws = private()
    answer = login(ws, api_key.api_key, api_key.secret, api_key.passphrase)
    assert (answer["event"], answer["code"], answer["msg"]) == ("login", "0", "")
    assert answer["connId"]
    again = login(ws, api_key.api_key, api_key.secret, api_key.passphrase)
    assert (again["event"], again["code"]) == ("error", "60030")  # no repeated login


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"stamp_offset": 31}, "60006"),
        ({"stamp_offset": -31}, "60006"),
        ({"stamp": "yesterday"}, "60004"),
        ({"api_key": "unknown-key"}, "60005"),
        ({"passphrase": "wrong"}, "60024"),
        ({"secret": "wrong"}, "60007"),
    ],
)
def test_each_bad_login_gets_okxs_code_and_never_its_secret_back(
    private, api_key, account_sim, change, code
):
    stamp = change.get("stamp", str(int(time.time()) + change.get("stamp_offset", 0)))
    answer = login(
        private(),
        change.get("api_key", api_key.api_key),
        change.get("secret", api_key.secret),
        change.get("passphrase", api_key.passphrase),
        stamp,
    )
    assert (answer["event"], answer["code"]) == ("error", code)
    assert api_key.passphrase not in answer["msg"] and api_key.api_key not in answer["msg"]
    assert account_sim.stats()["logins"] == {code: 1}


def test_a_timestamp_within_the_window_is_accepted(private, api_key):
    stamp = str(int(time.time()) - 25)
    answer = login(private(), api_key.api_key, api_key.secret, api_key.passphrase, stamp)
    assert answer["code"] == "0"


def test_the_account_channel_sends_the_account_then_its_trades(private, api_key, account_sim):
    ws = private()
    assert login(ws, api_key.api_key, api_key.secret, api_key.passphrase)["code"] == "0"
    channels = [{"channel": "account"}, {"channel": "orders", "instType": "ANY"}]
    ws.send(orjson.dumps({"op": "subscribe", "args": channels}))
    acks = [orjson.loads(ws.recv()) for _ in range(2)]
    assert acks[0] == {
        "event": "subscribe",
        "arg": {"channel": "account"},
        "connId": acks[0]["connId"],
    }
    snapshot = acks[1]
    assert snapshot["arg"]["channel"] == "account"
    details = {d["ccy"]: d for d in snapshot["data"][0]["details"]}
    assert details["USDT"]["eq"] == "100000" and details["BTC"]["eq"] == "1.5"
    pushes = []
    wait_until(lambda: pushes.append(orjson.loads(ws.recv())) or len(pushes) >= 4, 10)
    channels = {push["arg"]["channel"] for push in pushes if "arg" in push}
    assert channels >= {"orders", "account"}
    order = next(p["data"][0] for p in pushes if p["arg"]["channel"] == "orders" and "data" in p)
    account = account_sim.account(api_key.api_key)
    assert order["ordId"] in {o["ordId"] for o in account.orders}
    assert order["instId"] == "BTC-USDT" and order["state"] in ("live", "filled")


def test_the_command_line_simulator_takes_keys_from_named_variables():
    from collectors.simulators.okx import OkxSimulator, api_key_from_env

    environ = {"K": "key-1", "S": "secret-1", "P": "phrase-1"}
    assert api_key_from_env("K,S,P", environ) == ApiKey("key-1", "secret-1", "phrase-1")
    with pytest.raises(ValueError, match="environment variable S is not set"):
        api_key_from_env("K,S,P", {"K": "key-1"})
    with pytest.raises(ValueError, match="KEY_ENV,SECRET_ENV,PASSPHRASE_ENV"):
        api_key_from_env("K,S", environ)
    simulator = OkxSimulator(api_keys=[ApiKey("key-1", "secret-1", "phrase-1")])
    assert "private ws://127.0.0.1:0/ws/v5/private (1 API keys)" in simulator.describe()
    assert "secret-1" not in simulator.describe()
