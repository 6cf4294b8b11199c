"""The dashboard's accounts page: the accounts a user may see, and no one else's."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from collectors.models import AccountAccess, Exchange, ExchangeAccount
from marketdata.models import MarketData

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def balance(account, ccy, equity):
    data = {"account": account, "currency": ccy, "equity": equity, "available": equity,
            "frozen": "0", "source": "ws"}  # fmt: skip
    MarketData.objects.create(
        exchange="okx", symbol=ccy, data_type="balance", timestamp=AT, data=data
    )


@pytest.fixture
def two_accounts():
    exchange = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com/ws/v5/public")
    names = {"api_key_env": "K", "secret_env": "S", "passphrase_env": "P"}
    main = ExchangeAccount.objects.create(exchange=exchange, name="main", **names)
    ExchangeAccount.objects.create(exchange=exchange, name="sub1", **names)
    balance("main", "USDT", "1234.5")
    balance("sub1", "BTC", "7.25")
    return main


def signed_in(client, name, staff=False):
    user = get_user_model().objects.create_user(name, password="a-long-password", is_staff=staff)
    client.force_login(user)
    return user


def test_a_granted_user_sees_their_account_and_not_the_others(client, two_accounts):
    AccountAccess.objects.create(user=signed_in(client, "alice"), account=two_accounts)
    page = client.get("/accounts/").content.decode()
    assert 'id="account-okx-main"' in page and "1234.5" in page
    assert "sub1" not in page and "7.25" not in page
    assert 'href="/accounts/" aria-current="page"' in page


def test_staff_see_every_account(client, two_accounts):
    signed_in(client, "boss", staff=True)
    page = client.get("/accounts/").content.decode()
    assert 'id="account-okx-main"' in page and 'id="account-okx-sub1"' in page


def test_a_user_without_a_grant_sees_none(client, two_accounts):
    signed_in(client, "bob")
    page = client.get("/accounts/").content.decode()
    assert 'id="no-accounts"' in page and "1234.5" not in page


def test_an_anonymous_visitor_signs_in_first_even_with_public_reads(client, two_accounts, settings):
    settings.API_PUBLIC_READ = True
    response = client.get("/accounts/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert "Accounts</a>" not in client.get("/").content.decode()
