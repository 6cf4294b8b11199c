"""GET /api/v1/market-data/, /orderbook/latest/ and /ticker/latest/."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.models import MarketData

pytestmark = pytest.mark.django_db

URL = "/api/v1/market-data/"
BOOK_URL = "/api/v1/orderbook/latest/"
TICKER_URL = "/api/v1/ticker/latest/"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
PAIR = {"exchange": "okx", "symbol": "BTC-USDT"}


def book(bid: str, seq_id: int = 1) -> dict:
    return {
        "channel": "books5",
        "action": "snapshot",
        "bids": [[bid, "0.5", "0", "2"], ["49999", "1.25", "0", "1"]],
        "asks": [["50001", "0.75", "0", "3"]],
        "seq_id": seq_id,
        "checksum": -12345,
    }


def ticker(last: str) -> dict:
    return {"last": last, "bid": "49999.9", "ask": "50000.1", "volume_24h": "1234.5", "raw": {}}


def add(
    seconds: float,
    data_type: str,
    data: dict,
    *,
    symbol: str = "BTC-USDT",
    received: datetime | None = None,
) -> MarketData:
    moment = T0 + timedelta(seconds=seconds)
    return MarketData.objects.create(
        exchange="okx",
        symbol=symbol,
        data_type=data_type,
        timestamp=moment,
        data=data,
        created_at=received or moment + timedelta(milliseconds=20),
    )


@pytest.fixture
def api():
    user = get_user_model().objects.create_user("reader", password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def ok(response):
    assert response.status_code == 200, response.content
    return response.json()


def test_anonymous_clients_get_401_everywhere():
    client = APIClient()
    for url, params in ((URL, {"data_type": "ticker"}), (BOOK_URL, PAIR), (TICKER_URL, PAIR)):
        assert client.get(url, params).status_code == 401


def test_it_lists_points_by_data_type_newest_first(api):
    older = add(1, "ticker", ticker("1"))
    newer = add(2, "ticker", ticker("2"), symbol="ETH-USDT")
    add(3, "orderbook", book("50000"))
    body = ok(api.get(URL, {"data_type": "ticker"}))
    assert [row["data"]["last"] for row in body["results"]] == ["2", "1"]
    assert body["results"][0] == {
        "exchange": "okx",
        "symbol": "ETH-USDT",
        "data_type": "ticker",
        "timestamp": "2024-01-01T00:00:02Z",
        "received_at": "2024-01-01T00:00:02.020000Z",
        "data": newer.data,
    }
    assert older.data == body["results"][1]["data"]


def test_it_lists_points_of_one_pair_in_a_time_range(api):
    add(1, "ticker", ticker("1"))
    add(5, "orderbook", book("50000"))
    add(5, "ticker", ticker("5"), symbol="ETH-USDT")
    add(9, "ticker", ticker("9"))
    body = ok(
        api.get(URL, {**PAIR, "start": "2024-01-01T00:00:02Z", "end": "2024-01-01T00:00:10Z"})
    )
    assert [(row["data_type"], row["timestamp"]) for row in body["results"]] == [
        ("ticker", "2024-01-01T00:00:09Z"),
        ("orderbook", "2024-01-01T00:00:05Z"),
    ]


def test_as_of_keeps_only_points_received_by_then(api):
    add(1, "ticker", ticker("1"))
    add(2, "ticker", ticker("late"), received=T0 + timedelta(minutes=5))
    body = ok(api.get(URL, {"data_type": "ticker", "as_of": "2024-01-01T00:01:00Z"}))
    assert [row["data"]["last"] for row in body["results"]] == ["1"]


def test_pages_hold_while_points_arrive(api):
    for second in range(10):
        add(second // 2, "ticker", ticker(str(second)))
    seen, url = [], None
    while True:
        response = api.get(url) if url else api.get(URL, {"data_type": "ticker", "limit": 3})
        body = ok(response)
        seen += [row["data"]["last"] for row in body["results"]]
        if (url := body["next"]) is None:
            break
        add(60 + len(seen), "ticker", ticker(f"new{len(seen)}"))
    assert sorted(seen) == sorted(str(n) for n in range(10))


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ({}, "data_type", "give data_type, or exchange and symbol"),
        ({"data_type": "trade"}, "data_type", "/api/v1/trades/"),
        ({"data_type": "news"}, "data_type", "unknown data_type 'news'"),
        ({"exchange": "okx", "data_type": "ticker"}, "symbol", "required with exchange"),
        ({"data_type": "ticker", "start": "1 Jan"}, "start", "is not a time"),
    ],
)
def test_a_bad_market_data_parameter_is_a_400_that_names_it(api, params, parameter, words):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert any(words in message for message in response.json()[parameter])


def test_the_latest_order_book_is_the_newest_one_as_price_and_size_strings(api):
    add(1, "orderbook", book("49000", seq_id=1))
    add(2, "orderbook", book("50000", seq_id=2))
    add(3, "ticker", ticker("1"))
    add(4, "orderbook", book("1"), symbol="ETH-USDT")
    body = ok(api.get(BOOK_URL, PAIR))
    assert body == {
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "timestamp": "2024-01-01T00:00:02Z",
        "received_at": "2024-01-01T00:00:02.020000Z",
        "channel": "books5",
        "action": "snapshot",
        "bids": [["50000", "0.5"], ["49999", "1.25"]],
        "asks": [["50001", "0.75"]],
        "seq_id": 2,
        "checksum": -12345,
    }


def test_the_latest_order_book_as_of_a_time_is_the_one_known_then(api):
    add(1, "orderbook", book("49000", seq_id=1))
    add(2, "orderbook", book("50000", seq_id=2), received=T0 + timedelta(minutes=1))
    body = ok(api.get(BOOK_URL, {**PAIR, "as_of": "2024-01-01T00:00:30Z"}))
    assert body["seq_id"] == 1


def test_the_latest_ticker_has_decimal_strings_and_nulls_for_what_is_missing(api):
    add(1, "ticker", ticker("49000"))
    add(2, "ticker", ticker("50000.5"))
    body = ok(api.get(TICKER_URL, PAIR))
    assert body["last"] == "50000.5"
    assert body["bid"] == "49999.9" and body["ask"] == "50000.1"
    assert body["volume_24h"] == "1234.5"
    assert body["open_24h"] is None
    assert body["timestamp"] == "2024-01-01T00:00:02Z"
    assert "raw" not in body


def test_a_pair_with_nothing_stored_is_a_404(api):
    for url in (BOOK_URL, TICKER_URL):
        response = api.get(url, PAIR)
        assert response.status_code == 404
        assert "BTC-USDT" in response.json()["detail"]


@pytest.mark.parametrize("url", [BOOK_URL, TICKER_URL])
def test_latest_needs_a_known_exchange_and_a_symbol(api, url):
    response = api.get(url, {"exchange": "kraken"})
    assert response.status_code == 400
    body = response.json()
    assert "unknown exchange 'kraken'" in body["exchange"][0]
    assert body["symbol"] == ["symbol is required"]


def test_stored_json_beyond_64_bit_integers_comes_back_exactly(api):
    add(1, "candle", {"units": 2**70 + 1, "currency": "BTC"})
    body = ok(api.get(URL, {"data_type": "candle"}))
    assert body["results"][0]["data"] == {"units": 2**70 + 1, "currency": "BTC"}
