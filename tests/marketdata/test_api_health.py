"""GET /api/v1/health/: 200 when database, Redis, broker and collectors are fine, else 503."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from collectors.hosting import leases
from collectors.hosting.heartbeat import Heartbeat, publish
from collectors.models import Exchange, TradingPair
from marketdata.models import RetentionRun
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db

URL = "/api/v1/health/"


def health():
    """The detailed answer, as signed-in users get it (anonymous: test_api_security_health)."""
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get_or_create(username="watcher")[0])
    response = client.get(URL)
    return response.status_code, response.json()


def redis_db(client) -> int:
    return client.connection_pool.connection_kwargs["db"]


@pytest.fixture
def redis_port(redis_client) -> int:
    return redis_client.connection_pool.connection_kwargs["port"]


@pytest.fixture
def btc_pair():
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    return TradingPair.objects.create(exchange=okx, symbol="BTC-USDT")


def test_it_is_200_when_everything_answers(redis_client):
    code, body = health()
    assert code == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {
        "database",
        "redis",
        "broker",
        "collectors",
        "backups",
        "storage",
    }
    assert all(check["ok"] for check in body["checks"].values())


def test_it_is_503_when_redis_does_not_answer(settings, redis_client, redis_port):
    with TcpProxy("127.0.0.1", redis_port) as proxy:
        settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/{redis_db(redis_client)}"
        assert health()[0] == 200
        proxy.cut()
        code, body = health()
    assert code == 503
    assert body["status"] == "unhealthy"
    checks = body["checks"]
    assert checks["redis"] == {"ok": False, "detail": "Redis does not answer"}
    assert checks["collectors"]["ok"] is False
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert str(proxy.port) not in str(body)


def test_it_is_503_when_the_broker_does_not_answer(settings, redis_client, redis_port):
    with TcpProxy("127.0.0.1", redis_port) as proxy:
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{proxy.port}/{redis_db(redis_client)}"
        proxy.cut()
        code, body = health()
    assert code == 503
    assert body["checks"]["broker"] == {"ok": False, "detail": "the broker does not answer"}
    assert body["checks"]["redis"]["ok"]


def test_it_is_503_when_a_collector_that_should_run_does_not(redis_client, btc_pair):
    code, body = health()
    assert code == 503
    assert body["checks"]["collectors"] == {
        "ok": False,
        "detail": "1 unhealthy: okx:BTC-USDT: not running",
    }


def test_it_is_200_when_the_collectors_run_healthy(redis_client, btc_pair):
    client = leases.redis_client()
    leases.acquire(client, "okx:BTC-USDT", "f00:worker@host", ttl=60)
    beat = Heartbeat(
        name="okx:BTC-USDT",
        worker="worker@host",
        status={"status": "running", "statistics": {}, "health": {}},
        health={"is_healthy": True, "issues": [], "is_running": True},
    )
    publish(client, [beat], None, ttl=60)
    code, body = health()
    assert code == 200
    assert body["checks"]["collectors"] == {"ok": True, "detail": "1 of 1 healthy"}


def test_without_redis_configured_the_embedded_mode_is_healthy(settings, redis_client):
    settings.REDIS_URL = ""
    code, body = health()
    assert code == 200
    assert body["checks"]["redis"]["detail"] == "not configured (embedded mode)"


def test_a_signed_in_user_is_not_held_to_the_anonymous_health_rate(settings, redis_client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "100/minute", "anon": "1/minute", "health": "1/minute"},
    }
    assert [health()[0] for _ in range(3)] == [200, 200, 200]


def test_storage_says_how_much_is_stored_and_is_503_when_retention_failed(redis_client):
    earlier = datetime.now(UTC) - timedelta(days=1)
    RetentionRun.objects.create(
        started_at=earlier, finished_at=earlier, ok=True, database_bytes=10**6, archive_bytes=0
    )
    code, body = health()
    assert code == 200
    detail = body["checks"]["storage"]["detail"]
    assert detail.startswith("database ") and ", archive 0 B (" in detail
    now = datetime.now(UTC)
    RetentionRun.objects.create(
        started_at=now,
        finished_at=now,
        ok=False,
        error="trade: archive write failed (no space left on device)",
        database_bytes=3 * 10**6,
        archive_bytes=5000,
    )
    code, body = health()
    assert code == 503
    storage = body["checks"]["storage"]
    assert storage["ok"] is False
    assert "archive write failed (no space left on device)" in storage["detail"]
    assert "(2.0 MB/day)" in storage["detail"]  # database growth over the last day
