"""The dashboard's pages: who may see them, what they hold, where the admin leads."""

import json
import re

import pytest
from django.contrib.auth.models import User

from collectors.models import Exchange, TradingPair

pytestmark = pytest.mark.django_db

PAGES = ["/", "/collectors/", "/markets/okx/BTC-USDT/"]


@pytest.fixture
def pair():
    exchange = Exchange.objects.create(name="okx", public_ws_url="ws://127.0.0.1:1/ws")
    return TradingPair.objects.create(exchange=exchange, symbol="BTC-USDT")


@pytest.fixture
def staff():
    return User.objects.create_user("operator", password="pw-operator-1", is_staff=True)


@pytest.fixture
def trader():
    return User.objects.create_user("trader", password="pw-trader-1")


def embedded(response, name: str):
    found = re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', response.text)
    return json.loads(found.group(1))


@pytest.mark.parametrize("page", PAGES)
def test_pages_send_anonymous_visitors_to_the_dashboards_own_login_page(client, pair, page):
    response = client.get(page)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={page}"


def test_signing_in_on_the_login_page_leads_to_the_board(client, pair, trader):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "trader", "password": "pw-trader-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    board = client.get("/")
    assert board.status_code == 200
    rows = embedded(board, "board-data")["board"]["rows"]
    assert [row["market"] for row in rows] == ["okx:BTC-USDT"]


def test_a_wrong_password_stays_on_the_login_page(client, trader):
    response = client.post("/login/", {"username": "trader", "password": "wrong"})
    assert response.status_code == 200
    assert "did not match" in response.text


@pytest.mark.parametrize("page", PAGES)
def test_with_public_reads_anonymous_visitors_see_the_pages(client, pair, settings, page):
    settings.API_PUBLIC_READ = True
    response = client.get(page)
    assert response.status_code == 200
    assert "Sign in" in response.text


def test_only_staff_get_start_stop_and_restart(client, pair, staff, trader):
    client.force_login(trader)
    assert 'data-can-control="false"' in client.get("/collectors/").text
    client.force_login(staff)
    assert 'data-can-control="true"' in client.get("/collectors/").text


def test_an_unknown_market_is_not_found(client, pair, trader):
    client.force_login(trader)
    assert client.get("/markets/okx/NOPE-USDT/").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/markets/okx/BTC%00USDT/",
        "/markets/%00/BTC-USDT/",
        "/live/markets/okx/%00/",
        f"/markets/okx/{'A' * 65}/",
        "/markets/okx/BTC%2FUSDT/",
    ],
)
def test_a_malformed_market_name_is_not_found_not_an_error(client, pair, trader, path):
    client.force_login(trader)
    assert client.get(path).status_code == 404


def test_a_market_page_holds_its_recent_trades_and_the_chosen_timeframe(client, pair, trader):
    from datetime import UTC, datetime
    from decimal import Decimal

    from marketdata.models import RawTrade

    moment = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    RawTrade.objects.create(
        exchange="okx", symbol="BTC-USDT", trade_id="7", price=Decimal("42000.5"),
        size=Decimal("0.25"), side="sell", timestamp=moment,
    )  # fmt: skip
    client.force_login(trader)
    initial = embedded(client.get("/markets/okx/BTC-USDT/?timeframe=5m"), "market-data")
    assert initial["timeframe"] == "5m"
    assert initial["trades"] == [
        {
            "id": "7",
            "price": "42000.50000000",
            "size": "0.25000000",
            "side": "sell",
            "ts": 1704164645678,
        }
    ]
    assert initial["book"] is None
    unknown = embedded(client.get("/markets/okx/BTC-USDT/?timeframe=7m"), "market-data")
    assert unknown["timeframe"] == "1m"


def test_the_admin_is_titled_tcp_dashboard_and_view_site_leads_to_the_board(client, staff):
    client.force_login(staff)
    page = client.get("/admin/")
    assert "<title>Administration | TCP Dashboard</title>" in page.text
    assert '<a href="/admin/">TCP Dashboard</a>' in page.text
    assert "Django administration" not in page.text
    assert 'href="/"' in page.text  # "View site"
