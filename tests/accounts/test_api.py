"""balances/, positions/, orders/: stored account records, as of a moment, to those granted."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from collectors.models import AccountAccess, Exchange, ExchangeAccount
from marketdata.models import MarketData
from tests.accounts.conftest import account_config
from tests.helpers import run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(name, *, staff=False):
    user = get_user_model().objects.create_user(name, password="a-long-password", is_staff=staff)
    client = APIClient()
    client.force_authenticate(user)
    return user, client


def grant(user, account_name):
    exchange, _ = Exchange.objects.get_or_create(
        name="okx", defaults={"public_ws_url": "wss://x/ws"}
    )
    account, _ = ExchangeAccount.objects.get_or_create(
        exchange=exchange,
        name=account_name,
        defaults={"api_key_env": "A", "secret_env": "B", "passphrase_env": "C"},
    )
    AccountAccess.objects.create(user=user, account=account)


def collected(account_sim, sink, collectors):
    collector = collectors(account_config(account_sim), sink)
    assert run(collector.start())
    wait_until(
        lambda: (
            MarketData.objects.filter(data_type="order", data__state="filled").exists()
            and MarketData.objects.filter(data_type="position", data__source="ws").exists()
        ),
        20,
        message="orders and positions stored",
    )
    run(collector.stop())
    sink.flush(10)


def test_staff_and_granted_users_see_the_stored_balances_others_see_nothing(
    account_sim, api_key, credentials_env, sink, collectors
):
    collected(account_sim, sink, collectors)
    account = account_sim.account(api_key.api_key)
    _, staff = client_for("boss", staff=True)
    alice, granted = client_for("alice")
    grant(alice, "main")
    bob, other = client_for("bob")
    grant(bob, "sub9")

    answer = staff.get("/api/v1/balances/").json()
    assert answer["as_of"] is None
    rows = {row["symbol"]: row for row in answer["results"]}
    assert set(rows) == {"BTC", "USDT"}
    for ccy, cash in account.balances.items():
        assert rows[ccy]["account"] == "main" and rows[ccy]["exchange"] == "okx"
        assert Decimal(rows[ccy]["data"]["equity"]) == cash
        assert Decimal(rows[ccy]["data"]["frozen"]) == account.frozen.get(ccy, Decimal(0))
    assert granted.get("/api/v1/balances/").json()["results"] == answer["results"]
    assert other.get("/api/v1/balances/").json()["results"] == []
    assert other.get("/api/v1/positions/").json()["results"] == []
    assert APIClient().get("/api/v1/balances/").status_code in (401, 403)

    positions = granted.get("/api/v1/positions/").json()["results"]
    if account.position:  # the script opens and closes it in turn
        [position] = positions
        assert position["symbol"] == "BTC-USDT-SWAP"
        assert Decimal(position["data"]["position"]) == account.position
    else:
        assert positions == []  # closed: no longer a position
    orders = granted.get("/api/v1/orders/").json()["results"]
    by_id = {row["data"]["order_id"]: row["data"]["state"] for row in orders}
    for order in account.orders:
        assert by_id[order["ordId"]] == order["state"]
    # the generic market-data endpoint serves no account data to anyone
    generic = staff.get("/api/v1/market-data/?exchange=okx&symbol=BTC-USDT-SWAP").json()
    assert MarketData.objects.filter(symbol="BTC-USDT-SWAP").exists()
    assert generic["results"] == []
    assert staff.get("/api/v1/market-data/?data_type=balance").status_code == 400


def test_as_of_answers_with_what_the_platform_had_then(
    account_sim, credentials_env, sink, collectors
):
    collected(account_sim, sink, collectors)
    _, staff = client_for("boss", staff=True)
    first = MarketData.objects.filter(data_type="order").order_by("created_at", "id").first()
    as_of = first.created_at + timedelta(microseconds=1)
    answer = staff.get("/api/v1/orders/", {"as_of": as_of.isoformat()}).json()
    assert answer["as_of"] is not None
    states = {row["data"]["order_id"]: row["data"]["state"] for row in answer["results"]}
    later = staff.get("/api/v1/orders/").json()["results"]
    assert len(later) >= len(states)
    known = MarketData.objects.filter(data_type="order", created_at__lte=as_of)
    assert set(states) == {row.data["order_id"] for row in known}
    assert staff.get("/api/v1/orders/", {"as_of": "yesterday"}).status_code == 400
    assert staff.get("/api/v1/orders/", {"account": "nobody"}).json()["results"] == []
