"""Anonymous callers of /api/v1/health/ get the status and counts, throttled per address;
the per-collector detail is for signed-in users."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collectors.models import Exchange, TradingPair
from tcp_dashboard.health import SHARED_SUMMARY

pytestmark = pytest.mark.django_db

URL = "/api/v1/health/"


@pytest.fixture(autouse=True)
def fresh_answer():
    SHARED_SUMMARY.clear()
    yield
    SHARED_SUMMARY.clear()


@pytest.fixture
def many_pairs(redis_client):
    """Fifty pairs that should run and do not: the collectors check fails with their names."""
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    TradingPair.objects.bulk_create(
        TradingPair(exchange=okx, symbol=f"HLT{n}-USDT") for n in range(50)
    )


def test_an_anonymous_caller_gets_the_status_and_counts_only(many_pairs):
    response = APIClient().get(URL)
    body = response.json()
    assert response.status_code == 503
    assert body == {
        "status": "unhealthy",
        "checks": {"total": 6, "failing": 1, "names": ["collectors"]},
        "collectors": {"expected": 50, "unhealthy": 50},
    }
    assert b"HLT" not in response.content


def test_a_signed_in_caller_gets_each_collectors_detail(many_pairs):
    user = get_user_model().objects.create_user("watcher", password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.get(URL)
    assert response.status_code == 503
    detail = response.json()["checks"]["collectors"]
    assert detail["ok"] is False
    assert detail["detail"].startswith("50 unhealthy: ")
    assert "okx:HLT0-USDT" in detail["detail"]


def test_anonymous_callers_are_throttled_per_address(settings, redis_client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "9/minute", "anon": "9/minute", "health": "3/minute"},
    }

    def status(address: str, forwarded: str = "") -> int:
        client = APIClient(REMOTE_ADDR=address)
        return client.get(URL, HTTP_X_FORWARDED_FOR=forwarded).status_code

    assert [status("10.1.0.1", f"192.0.2.{n}") for n in range(5)] == [200, 200, 200, 429, 429]
    assert status("10.1.0.2") == 200


def test_the_anonymous_answer_is_small_with_thousands_of_pairs(redis_client):
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    TradingPair.objects.bulk_create(
        TradingPair(exchange=okx, symbol=f"BIG{n}-USDT") for n in range(2000)
    )
    response = APIClient().get(URL)
    assert response.json()["collectors"] == {"expected": 2000, "unhealthy": 2000}
    assert len(response.content) < 200


def test_anonymous_callers_share_one_check_for_a_few_seconds(settings, redis_client):
    settings.API_HEALTH_CACHE_SECONDS = 60
    first = APIClient().get(URL)
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    TradingPair.objects.create(exchange=okx, symbol="NEW-USDT")
    again = APIClient(REMOTE_ADDR="10.2.0.2").get(URL)
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()
    settings.API_HEALTH_CACHE_SECONDS = 0
    fresh = APIClient(REMOTE_ADDR="10.2.0.3").get(URL)
    assert fresh.status_code == 503
    assert fresh.json()["collectors"] == {"expected": 1, "unhealthy": 1}
