"""The API answers the same for days that left the database: they are read from the archive."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.models import Candle, MarketData, RawTrade
from marketdata.retention import apply_retention
from tests.marketdata.lifecycle import (
    NOW,
    WINDOWS,
    add_points,
    add_trades,
    days_ago,
    with_partitions,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    user = get_user_model().objects.create_user("reader", password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def every_page(api, url: str, **params) -> list[dict]:
    rows, page = [], api.get(url, params)
    while True:
        assert page.status_code == 200, page.content
        body = page.json()
        rows += body["results"]
        if body["next"] is None:
            return rows
        page = api.get(body["next"])


def add_candles(day, count: int) -> None:
    for n in range(count):
        Candle.objects.create(
            exchange="okx",
            symbol="BTC-USDT",
            timeframe="1h",
            timestamp=day + timedelta(hours=n),
            open=Decimal("1.5"),
            high=Decimal("2.12345678"),
            low=Decimal("1"),
            close=Decimal("1.75") + n,
            volume=Decimal("3"),
            quote_volume=Decimal("4.0000000000000001"),
            vwap=Decimal("1.6"),
            trade_count=n + 1,
            is_final=True,
        )


@pytest.fixture
def spanning(settings, archive_dir):
    """Rows on days that will be archived and on days that stay, with equal timestamps."""
    settings.RETENTION_DAYS = {**WINDOWS, "candles": 10}
    with_partitions(*(days_ago(n).date() for n in (13, 12, 11, 1)))
    for ago in (13, 12, 11, 1):
        add_trades(days_ago(ago), count=4, first_id=ago * 100)
        add_trades(days_ago(ago), count=2, symbol="ETH-USDT", first_id=ago * 100)
        add_points(days_ago(ago, 23), "ticker", count=3)
        add_candles(days_ago(ago, 0), 3)


QUERIES = [
    ("/api/v1/trades/", {"exchange": "okx", "symbol": "BTC-USDT", "limit": 3}),
    ("/api/v1/trades/", {"exchange": "okx", "symbol": "BTC-USDT", "limit": 5, "order": "asc"}),
    ("/api/v1/trades/", {"limit": 4, "order": "asc", "side": "buy"}),
    ("/api/v1/market-data/", {"data_type": "ticker", "limit": 2}),
    ("/api/v1/candles/", {"exchange": "okx", "symbol": "BTC-USDT", "timeframe": "1h", "limit": 4}),
]


@pytest.mark.parametrize(("url", "params"), QUERIES, ids=[f"{q[0]} {q[1]}" for q in QUERIES])
def test_pages_over_archived_days_are_the_same_as_before(api, spanning, url, params):
    params = {**params, "start": days_ago(14).isoformat(), "end": NOW.isoformat()}
    if "candles" in url:
        params.pop("start")
    before = every_page(api, url, **params)
    assert apply_retention(NOW).ok
    assert RawTrade.objects.count() == 6 and MarketData.objects.count() == 3
    assert Candle.objects.filter(timestamp__lt=days_ago(10)).count() == 0
    after = every_page(api, url, **params)
    assert after == before
    assert len(before) > 10


def test_a_filled_candle_series_over_archived_days_is_the_same(api, spanning):
    params = {
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "timeframe": "1h",
        "fill": "true",
        "start": days_ago(12, 0).isoformat(),
        "end": days_ago(11, 6).isoformat(),
    }
    before = every_page(api, "/api/v1/candles/", **params)
    assert apply_retention(NOW).ok
    assert every_page(api, "/api/v1/candles/", **params) == before


def test_rows_restored_into_the_database_are_not_served_twice(api, spanning):
    params = {"exchange": "okx", "symbol": "BTC-USDT", "limit": 3, "order": "asc"}
    before = every_page(api, "/api/v1/trades/", **params)
    assert apply_retention(NOW).ok
    call_command(
        "restore_archive",
        "--exchange=okx",
        "--symbol=BTC-USDT",
        "--data-type=trade",
        f"--start={days_ago(13, 0).isoformat()}",
        f"--end={days_ago(12, 13).isoformat()}",
    )
    assert every_page(api, "/api/v1/trades/", **params) == before


def test_an_unreadable_archive_file_is_a_503_naming_it_never_a_short_page(
    api, spanning, archive_dir
):
    assert apply_retention(NOW).ok
    (archive_dir / f"trade/okx/{days_ago(12):%Y-%m-%d}.parquet").unlink()
    params = {"exchange": "okx", "symbol": "BTC-USDT", "start": days_ago(14).isoformat()}
    response = api.get("/api/v1/trades/", params)
    assert response.status_code == 503
    assert f"trade/okx/{days_ago(12):%Y-%m-%d}.parquet" in response.json()["detail"]
