"""GET /api/v1/trades/: filters, point-in-time reads, keyset pages, permissions and the 400s."""

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.models import RawTrade

pytestmark = pytest.mark.django_db

URL = "/api/v1/trades/"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
_ids = count(1)


def add_trade(
    seconds: float,
    *,
    symbol: str = "BTC-USDT",
    side: str = "buy",
    price: str = "50000.5",
    received: datetime | None = None,
) -> RawTrade:
    moment = T0 + timedelta(seconds=seconds)
    return RawTrade.objects.create(
        exchange="okx",
        symbol=symbol,
        trade_id=str(next(_ids)),
        price=Decimal(price),
        size=Decimal("0.001"),
        side=side,
        timestamp=moment,
        created_at=received or moment + timedelta(milliseconds=50),
    )


@pytest.fixture
def user():
    return get_user_model().objects.create_user("reader", password="a-long-password")


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def get(api, **params):
    response = api.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def trade_ids(body) -> list[str]:
    return [row["trade_id"] for row in body["results"]]


def test_it_refuses_anonymous_clients_with_401():
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_it_refuses_a_wrong_token():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert client.get(URL).status_code == 401


def test_it_answers_a_signed_in_session(user):
    client = APIClient()
    client.force_login(user)
    assert client.get(URL).status_code == 200


def test_public_reads_let_anonymous_clients_read(settings):
    settings.API_PUBLIC_READ = True
    add_trade(1)
    response = APIClient().get(URL)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_a_trade_has_decimal_strings_and_utc_times(api):
    add_trade(1.25, price="50000.5", received=T0 + timedelta(seconds=2))
    [row] = get(api)["results"]
    assert row == {
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "trade_id": row["trade_id"],
        "price": "50000.50000000",
        "size": "0.00100000",
        "side": "buy",
        "timestamp": "2024-01-01T00:00:01.250000Z",
        "received_at": "2024-01-01T00:00:02Z",
    }


def test_it_filters_by_pair_side_and_time_range(api):
    inside = add_trade(10)
    add_trade(10, side="sell")
    add_trade(10, symbol="ETH-USDT")
    add_trade(5)  # before start
    add_trade(20)  # at end: the range is [start, end)
    body = get(
        api,
        exchange="okx",
        symbol="BTC-USDT",
        side="buy",
        start="2024-01-01T00:00:06Z",
        end=str(int((T0 + timedelta(seconds=20)).timestamp() * 1000)),
    )
    assert trade_ids(body) == [inside.trade_id]


def test_a_time_without_offset_is_utc(api):
    trade = add_trade(10)
    body = get(api, start="2024-01-01T00:00:10", end="2024-01-01T00:00:11")
    assert trade_ids(body) == [trade.trade_id]


def test_it_answers_newest_first_or_oldest_first(api):
    first, second, third = add_trade(1), add_trade(2), add_trade(3)
    assert trade_ids(get(api)) == [third.trade_id, second.trade_id, first.trade_id]
    assert trade_ids(get(api, order="asc")) == [first.trade_id, second.trade_id, third.trade_id]


def test_as_of_keeps_only_what_was_received_by_then(api):
    known = add_trade(1, received=T0 + timedelta(seconds=1.1))
    add_trade(2, received=T0 + timedelta(seconds=30))  # traded before as_of, received after
    add_trade(40)
    body = get(api, as_of="2024-01-01T00:00:10Z")
    assert trade_ids(body) == [known.trade_id]


def read_all_pages(api, between_pages=None, **params) -> list[str]:
    seen, url, pages = [], None, 0
    while True:
        response = api.get(url) if url else api.get(URL, params)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += trade_ids(body)
        pages += 1
        url = body["next"]
        if url is None:
            return seen
        assert response["Link"] == f'<{url}>; rel="next"'
        if between_pages:
            between_pages(pages)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pages_neither_repeat_nor_skip_rows_inserted_between_them(api, order):
    # Ties on timestamp are the hard case for a cursor: several trades per second.
    original = [add_trade(second // 3) for second in range(30)]
    inserted = []

    def insert(page: int) -> None:
        # Newer trades, and ones sharing the timestamp of rows already paged past.
        inserted.extend([add_trade(100 + page), add_trade(page)])

    seen = read_all_pages(api, insert, order=order, limit=4)
    assert len(seen) == len(set(seen)), "a row came twice"
    assert {t.trade_id for t in original} <= set(seen), "a row that was there was skipped"
    ordered = sorted(RawTrade.objects.filter(trade_id__in=seen), key=lambda t: (t.timestamp, t.id))
    expected = [t.trade_id for t in ordered]
    assert seen == (expected if order == "asc" else expected[::-1])


def test_the_last_page_has_no_next_link(api):
    for second in range(3):
        add_trade(second)
    body = get(api, limit=3)
    assert body["next"] is None
    assert len(body["results"]) == 3


def test_the_next_link_keeps_the_filters(api):
    for second in range(3):
        add_trade(second)
    body = get(api, exchange="okx", symbol="BTC-USDT", limit=2, order="asc")
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["exchange"] == ["okx"] and query["symbol"] == ["BTC-USDT"]
    assert query["limit"] == ["2"] and query["order"] == ["asc"]


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ({"exchange": "okx"}, "symbol", "required with exchange"),
        ({"symbol": "BTC-USDT"}, "exchange", "required with symbol"),
        ({"exchange": "nasdaq", "symbol": "BTC-USDT"}, "exchange", "unknown exchange 'nasdaq'"),
        ({"symbol": "BTC USDT", "exchange": "okx"}, "symbol", "not a trading symbol"),
        ({"start": "yesterday"}, "start", "is not a time"),
        ({"end": "2024-13-01T00:00:00Z"}, "end", "is not a time"),
        ({"start": "99999999999999999"}, "start", "is not a time"),
        ({"start": "999999999999999"}, "start", "out of range: give a time in 1970 to 2999"),
        ({"start": "2024-01-02", "end": "2024-01-01"}, "end", "later than start"),
        ({"start": "2020-01-01", "end": "2024-01-01"}, "end", "the most is 366 days"),
        ({"side": "long"}, "side", "unknown side 'long'"),
        ({"order": "newest"}, "order", "unknown order"),
        ({"limit": "0"}, "limit", "from 1 to 5000"),
        ({"limit": "5001"}, "limit", "from 1 to 5000"),
        ({"limit": "ten"}, "limit", "from 1 to 5000"),
        ({"cursor": "not-a-cursor"}, "cursor", "follow the `next` link"),
        ({"as_of": "0001-01-01T00:00:00+23:00"}, "as_of", "out of range"),
        ({"symbl": "BTC-USDT"}, "symbl", "unknown parameter"),
        ({"format": "xml"}, "format", "unknown format"),
    ],
)
def test_a_bad_parameter_is_a_400_that_names_it(api, params, parameter, words):
    response = api.get(URL, params)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    messages = response.json()[parameter]
    assert any(words in message for message in messages), messages


def test_every_bad_parameter_is_reported_at_once(api):
    response = api.get(URL, {"side": "long", "limit": "0", "start": "soon"})
    assert response.status_code == 400
    assert set(response.json()) == {"side", "limit", "start"}


def test_a_parameter_given_twice_is_a_400(api):
    response = api.get(URL + "?side=buy&side=sell")
    assert response.status_code == 400
    assert "once" in response.json()["side"][0]


def test_a_cursor_for_the_other_order_is_a_400(api):
    for second in range(3):
        add_trade(second)
    next_url = get(api, limit=1, order="desc")["next"]
    response = api.get(next_url.replace("order=desc", "order=asc"))
    assert response.status_code == 400
    assert "other order" in response.json()["cursor"][0]


def test_a_nul_character_in_a_parameter_is_a_400_not_a_database_error(api):
    response = api.get(URL, {"exchange": "okx", "symbol": "BTC\x00USDT"})
    assert response.status_code == 400
    assert "symbol" in response.json()


@pytest.mark.parametrize(
    "text", ["1.a.999999999999999999.1", "1.a.0.9999999999999999999", "2.a.0.1", "1.x.0.1"]
)
def test_a_forged_cursor_is_a_400_not_a_database_error(api, text):
    token = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    response = api.get(URL, {"cursor": token, "order": "asc"})
    assert response.status_code == 400
    assert "cursor" in response.json()
