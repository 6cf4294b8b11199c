"""The API keeps its OpenAPI schema: schemathesis fuzzes every operation through the WSGI app.

No answer may be a 5xx, and every answer must be documented: its status code, its
content type and its body's schema. The run is deterministic and bounded.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from collectors.hosting import leases
from collectors.hosting.heartbeat import Heartbeat, publish
from collectors.models import Exchange, TradingPair
from marketdata.models import Candle, MarketData, RawTrade
from tcp_dashboard.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    missing_required_header,
    unsupported_method,
]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def store_some_of_everything() -> None:
    """Rows for every endpoint to answer with, so bodies (not only errors) are checked."""
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    TradingPair.objects.create(exchange=okx, symbol="BTC-USDT")
    TradingPair.objects.create(exchange=okx, symbol="ETH-USDT", enabled=False)
    for n in range(5):
        moment = T0 + timedelta(seconds=n)
        RawTrade.objects.create(
            exchange="okx",
            symbol="BTC-USDT",
            trade_id=str(n),
            price=Decimal("50000.5"),
            size=Decimal("0.001"),
            side="buy",
            timestamp=moment,
        )
        Candle.objects.create(
            exchange="okx",
            symbol="BTC-USDT",
            timeframe="1m",
            timestamp=T0 + timedelta(minutes=n + 1),
            open=Decimal(1),
            high=Decimal(2),
            low=Decimal("0.5"),
            close=Decimal("1.5"),
            volume=Decimal(0),
            quote_volume=Decimal(0),
            vwap=Decimal("1.25"),
            trade_count=n,
            is_final=n < 4,
        )
        book = {"channel": "books5", "action": "snapshot", "seq_id": n, "checksum": 0}
        book |= {"bids": [["49999.5", "1", "0", "1"]], "asks": [["50000.5", "2", "0", "1"]]}
        MarketData.objects.create(
            exchange="okx", symbol="BTC-USDT", data_type="orderbook", timestamp=moment, data=book
        )
        MarketData.objects.create(
            exchange="okx",
            symbol="BTC-USDT",
            data_type="ticker",
            timestamp=moment,
            data={"last": "50000.5", "bid": "50000", "ask": "50001", "raw": {"instId": "BTC"}},
        )
    client = leases.redis_client()
    leases.acquire(client, "okx:BTC-USDT", "c0ffee:worker@host", ttl=120)
    beat = Heartbeat(
        name="okx:BTC-USDT",
        worker="worker@host",
        status={"status": "running", "symbols": ["BTC-USDT"], "statistics": {"errors": 2}},
        health={"is_healthy": True, "issues": [], "is_running": True},
    )
    publish(client, [beat], None, ttl=120)


@pytest.fixture
def keep_the_test_transaction():
    """Requests through the WSGI app keep the test's connection, as Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(redis_client, settings, keep_the_test_transaction):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "100000/minute", "anon": "100000/minute"},
    }
    cache.clear()
    user = get_user_model().objects.create_user("fuzzer", password="a-long-password", is_staff=True)
    store_some_of_everything()
    return Token.objects.create(user=user).key


def test_the_schema_and_its_docs_page_are_public(client):
    schema_response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert schema_response.status_code == 200
    paths = schema_response.json()["paths"]
    assert {"/api/v1/trades/", "/api/v1/candles/", "/api/v1/health/"} <= set(paths)
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_answer_is_documented_and_none_is_a_server_error(case, staff_token):
    case.call_and_validate(headers={"Authorization": f"Token {staff_token}"}, checks=CHECKS)
