"""GET /api/v1/candles/: final vs partial candles, point-in-time reads, CSV, pages, 400s."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.models import Candle

pytestmark = pytest.mark.django_db

URL = "/api/v1/candles/"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
PAIR = {"exchange": "okx", "symbol": "BTC-USDT", "timeframe": "1m"}


def add_candle(
    minute: int = 0,
    *,
    at: datetime | None = None,
    timeframe: str = "1m",
    final: bool = True,
    volume: str = "1.5",
    updated: datetime | None = None,
) -> Candle:
    end = at or T0 + timedelta(minutes=minute)
    return Candle.objects.create(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe=timeframe,
        timestamp=end,
        open=Decimal("100"),
        high=Decimal("110.5"),
        low=Decimal("99"),
        close=Decimal("105"),
        volume=Decimal(volume),
        quote_volume=Decimal("157.5"),
        vwap=Decimal("105.12345678"),
        trade_count=3,
        is_final=final,
        created_at=end,
        updated_at=updated or end + timedelta(seconds=1),
    )


def candle_value(minute: int) -> Candle:
    end = T0 + timedelta(minutes=minute)
    price = Decimal("100")
    return Candle(
        exchange="okx",
        symbol="BTC-USDT",
        timeframe="1m",
        timestamp=end,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal(1),
        quote_volume=price,
        vwap=price,
        trade_count=1,
        is_final=True,
    )


@pytest.fixture
def api():
    user = get_user_model().objects.create_user("reader", password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def get(api, **params):
    response = api.get(URL, {**PAIR, **params})
    assert response.status_code == 200, response.content
    return response.json()


def stamps(body) -> list[str]:
    return [row["timestamp"] for row in body["results"]]


def test_anonymous_clients_get_401():
    assert APIClient().get(URL, PAIR).status_code == 401


def test_a_candle_has_decimal_strings_and_its_end_time(api):
    add_candle(1, volume="0")
    [row] = get(api)["results"]
    assert row == {
        "timestamp": "2024-01-01T00:01:00Z",
        "open": "100.00000000",
        "high": "110.50000000",
        "low": "99.00000000",
        "close": "105.00000000",
        "volume": "0.00000000",
        "quote_volume": "157.5000000000000000",
        "vwap": "105.12345678",
        "trade_count": 3,
        "is_final": True,
    }


def test_only_final_candles_unless_partial_ones_are_asked_for(api):
    add_candle(1)
    add_candle(2, final=False)
    assert stamps(get(api)) == ["2024-01-01T00:01:00Z"]
    body = get(api, include_partial="true")
    assert [(row["timestamp"], row["is_final"]) for row in body["results"]] == [
        ("2024-01-01T00:01:00Z", True),
        ("2024-01-01T00:02:00Z", False),
    ]


def test_start_and_end_select_the_candles_whose_interval_lies_between(api):
    for minute in range(5):
        add_candle(minute)
    # Intervals [00:01, 00:02), [00:02, 00:03) and [00:03, 00:04) are inside [00:01, 00:04].
    body = get(api, start="2024-01-01T00:01:00Z", end="2024-01-01T00:04:00Z")
    assert stamps(body) == [
        "2024-01-01T00:02:00Z",
        "2024-01-01T00:03:00Z",
        "2024-01-01T00:04:00Z",
    ]


def test_it_serves_only_the_asked_timeframe(api):
    add_candle(1)
    add_candle(5, timeframe="5m")
    assert stamps(get(api, timeframe="5m")) == ["2024-01-01T00:05:00Z"]


def test_as_of_serves_the_candles_final_by_then_and_not_revised_since(api):
    add_candle(1)  # final at 00:01:01
    add_candle(2, updated=T0 + timedelta(minutes=9))  # revised (a late trade) after as_of
    add_candle(3, final=False)  # still open
    add_candle(10)  # closes after as_of
    body = get(api, as_of="2024-01-01T00:05:00Z")
    assert stamps(body) == ["2024-01-01T00:01:00Z"]


def test_as_of_cannot_be_combined_with_partial_candles(api):
    response = api.get(URL, {**PAIR, "as_of": "2024-01-01", "include_partial": "true"})
    assert response.status_code == 400
    assert "as_of" in response.json()["include_partial"][0]


def test_csv_has_a_header_and_the_next_page_in_the_link_header(api):
    for minute in range(1, 4):
        add_candle(minute)
    response = api.get(URL, {**PAIR, "format": "csv", "limit": 2})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "vwap",
        "trade_count",
        "is_final",
    ]
    assert rows[1][0] == "2024-01-01T00:01:00Z" and rows[1][-1] == "true"
    assert len(rows) == 3
    next_url = response["Link"].removeprefix("<").split(">;")[0]
    rest = api.get(next_url)
    assert list(csv.reader(io.StringIO(rest.content.decode())))[1][0] == "2024-01-01T00:03:00Z"


def test_csv_is_chosen_by_the_accept_header_too(api):
    add_candle(1)
    response = api.get(URL, PAIR, HTTP_ACCEPT="text/csv")
    assert response["Content-Type"].startswith("text/csv")


def test_a_bad_parameter_in_csv_mode_is_explained_in_json(api):
    response = api.get(URL, {**PAIR, "timeframe": "2m", "format": "csv"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "unknown timeframe '2m'" in response.json()["timeframe"][0]


@pytest.mark.parametrize("missing", ["exchange", "symbol", "timeframe"])
def test_exchange_symbol_and_timeframe_are_required(api, missing):
    params = {name: value for name, value in PAIR.items() if name != missing}
    response = api.get(URL, params)
    assert response.status_code == 400
    assert response.json()[missing] == [f"{missing} is required"]


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ({"exchange": "kraken"}, "exchange", "unknown exchange"),
        ({"include_partial": "maybe"}, "include_partial", "true or false"),
        ({"start": "2024-01-01T00:00:00Z", "end": "2023-12-31"}, "end", "later than start"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "end", "the most is 366 days"),
        ({"end": "12:00"}, "end", "is not a time"),
    ],
)
def test_a_bad_parameter_is_a_400_that_names_it(api, params, parameter, words):
    response = api.get(URL, {**PAIR, **params})
    assert response.status_code == 400
    assert any(words in message for message in response.json()[parameter])


def test_the_range_limit_follows_the_setting(api, settings):
    settings.API_MAX_RANGE_DAYS = 1
    response = api.get(URL, {**PAIR, "start": "2024-01-01", "end": "2024-01-03"})
    assert response.status_code == 400
    assert "the most is 1 days" in response.json()["end"][0]


def test_pages_follow_each_other_while_new_candles_close(api):
    for minute in range(1, 8):
        add_candle(minute)
    seen, url = [], None
    while True:
        response = api.get(url) if url else api.get(URL, {**PAIR, "limit": 3})
        body = response.json()
        seen += stamps(body)
        url = body["next"]
        if url is None:
            break
        add_candle(len(seen) + 100)  # a new candle closes between pages
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert seen[:7] == [f"2024-01-01T00:0{m}:00Z" for m in range(1, 8)]


def test_a_day_of_one_minute_candles_comes_in_one_page(api):
    Candle.objects.bulk_create(candle_value(minute) for minute in range(1, 1441))
    body = get(api, start="2024-01-01", end="2024-01-02", limit=1440)
    assert len(body["results"]) == 1440
    assert body["results"][-1]["timestamp"] == "2024-01-02T00:00:00Z"


# fill=true: every closed interval, empty ones at the previous close ------------------------


def minute(n: int) -> str:
    return (T0 + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")


def test_fill_gives_every_interval_and_empty_ones_flat_at_the_previous_close(api):
    add_candle(2)
    add_candle(5)
    body = get(api, start=minute(0), end=minute(7), fill="true")

    assert body["next"] is None
    # nothing before the first stored candle: no close to carry
    assert stamps(body) == [minute(n) for n in range(2, 8)]
    stored, empty = body["results"][0], body["results"][1]
    assert stored["trade_count"] == 3 and stored["close"] == "105.00000000"
    assert empty == {
        "timestamp": minute(3),
        "open": "105.00000000",
        "high": "105.00000000",
        "low": "105.00000000",
        "close": "105.00000000",
        "volume": "0.00000000",
        "quote_volume": "0.0000000000000000",
        "vwap": "105.00000000",
        "trade_count": 0,
        "is_final": True,
    }
    assert body["results"][3]["trade_count"] == 3  # the stored 00:05 candle as it is
    # the same series without fill holds only what is stored
    assert stamps(get(api, start=minute(0), end=minute(7))) == [minute(2), minute(5)]


def test_fill_carries_the_close_from_before_the_range_and_can_run_newest_first(api):
    add_candle(1)
    body = get(api, start=minute(3), end=minute(6), fill="true", order="desc")
    assert stamps(body) == [minute(6), minute(5), minute(4)]
    assert {row["close"] for row in body["results"]} == {"105.00000000"}
    assert {row["trade_count"] for row in body["results"]} == {0}


def test_fill_stops_at_the_last_closed_interval(api, settings):
    def last_closed_hour(moment: datetime) -> datetime:
        return (moment - timedelta(seconds=settings.CANDLE_GRACE)).replace(
            minute=0, second=0, microsecond=0
        )

    before = datetime.now(UTC)
    stored_at = last_closed_hour(before) - timedelta(hours=2)
    add_candle(at=stored_at, timeframe="1h")
    start, end = stored_at - timedelta(hours=1), before + timedelta(days=1)
    body = get(api, timeframe="1h", start=start.isoformat(), end=end.isoformat(), fill="true")
    after = datetime.now(UTC)

    # the hour still open (and the ones to come) get no candle, filled or not
    newest = datetime.fromisoformat(stamps(body)[-1])
    assert newest in {last_closed_hour(before), last_closed_hour(after)}
    assert len(body["results"]) == 1 + (newest - stored_at) // timedelta(hours=1)


def test_fill_with_as_of_fills_from_what_was_final_then(api):
    add_candle(1)
    add_candle(3, updated=T0 + timedelta(hours=1))  # revised later: not known at as_of
    body = get(api, start=minute(0), end=minute(4), fill="true", as_of=minute(5))
    assert stamps(body) == [minute(1), minute(2), minute(3), minute(4)]
    assert [row["trade_count"] for row in body["results"]] == [3, 0, 0, 0]


def test_fill_answers_csv_too(api):
    add_candle(1)
    response = api.get(
        URL, {**PAIR, "start": minute(0), "end": minute(3), "fill": "true"}, HTTP_ACCEPT="text/csv"
    )
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert [row[0] for row in rows[1:]] == [minute(1), minute(2), minute(3)]
    assert "Link" not in response


@pytest.mark.parametrize(
    ("extra", "parameter", "words"),
    [
        ({"end": minute(5)}, "start", "start is required with fill=true"),
        ({"start": minute(0)}, "end", "end is required with fill=true"),
        (
            {"start": minute(0), "end": minute(5), "include_partial": "true"},
            "include_partial",
            "closed intervals only",
        ),
        ({"start": minute(0), "end": minute(5), "limit": "10"}, "limit", "leave out limit"),
        (
            {"start": minute(0), "end": minute(5001)},
            "end",
            "at most 5000 candles; start to end holds 5001 1m intervals",
        ),
    ],
)
def test_fill_refuses_what_it_cannot_answer_whole(api, extra, parameter, words):
    response = api.get(URL, {**PAIR, "fill": "true", **extra})
    assert response.status_code == 400
    assert any(words in message for message in response.json()[parameter]), response.json()
