"""/api/v1/collectors/: status and health from real Redis heartbeats; staff start/stop/restart."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collectors.hosting import leases
from collectors.hosting.heartbeat import Heartbeat, publish
from collectors.models import Exchange, TradingPair
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db

URL = "/api/v1/collectors/"
WORKER = "collectors-1@host"


def client_for(**flags) -> APIClient:
    user = get_user_model().objects.create_user(
        f"user-{len(flags)}-{sorted(flags)}", password="a-long-password", **flags
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api():
    return client_for()


@pytest.fixture
def staff():
    return client_for(is_staff=True)


@pytest.fixture
def pairs():
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    return {
        symbol: TradingPair.objects.create(exchange=okx, symbol=symbol, enabled=enabled)
        for symbol, enabled in (("BTC-USDT", True), ("ETH-USDT", True), ("SOL-USDT", False))
    }


def status(messages: int) -> dict:
    return {
        "exchange": "okx",
        "status": "running",
        "should_be_running": True,
        "symbols": ["BTC-USDT"],
        "data_types": ["trade", "orderbook"],
        "auto_restart": True,
        "health": {
            "time_since_heartbeat": 0.5,
            "time_since_data": 0.25,
            "max_silence_duration": 60.0,
        },
        "statistics": {
            "messages_received": messages,
            "messages_processed": messages,
            "errors": 0,
            "restarts": 1,
            "uptime_seconds": 120.0,
            "reconnect_attempts": 0,
            "last_message_time": "2024-01-01T00:00:00+00:00",
            "connection_uptime": "2024-01-01T00:00:00+00:00",
            "last_error": "",
            "last_restart_time": "",
        },
    }


HEALTHY = {
    "is_healthy": True,
    "issues": [],
    "status": "running",
    "last_heartbeat": "2024-01-01T00:00:00+00:00",
    "last_data_received": "2024-01-01T00:00:00+00:00",
    "should_be_running": True,
    "is_running": True,
}


@pytest.fixture
def running(redis_client, pairs):
    """okx:BTC-USDT runs on WORKER (its lease and heartbeat are in Redis); ETH-USDT does not."""
    client = leases.redis_client()
    assert leases.acquire(client, "okx:BTC-USDT", f"a1b2c3:{WORKER}", ttl=60)
    beat = Heartbeat(name="okx:BTC-USDT", worker=WORKER, status=status(42), health=HEALTHY)
    publish(client, [beat], None, ttl=60)
    return client


def by_name(body) -> dict:
    return {row["name"]: row for row in body}


def test_the_list_has_the_spec_status_of_every_collector(api, running):
    response = api.get(URL)
    assert response.status_code == 200, response.content
    collectors = by_name(response.json())
    assert sorted(collectors) == ["okx:BTC-USDT", "okx:ETH-USDT", "okx:SOL-USDT"]
    btc = collectors["okx:BTC-USDT"]
    assert btc["worker"] == WORKER and btc["status"] == "running" and btc["is_healthy"]
    assert btc["statistics"]["messages_received"] == 42
    assert btc["data_types"] == ["trade", "orderbook"]
    # Seen from now: the heartbeat's ages grow by how old the heartbeat is.
    assert btc["health"]["time_since_data"] >= 0.25
    assert btc["health"]["max_silence_duration"] == 60.0
    spec_keys = {"exchange", "status", "should_be_running", "symbols", "data_types"}
    spec_keys |= {"auto_restart", "health", "statistics"}
    assert spec_keys <= set(btc)


def test_a_collector_that_should_run_and_does_not_is_unhealthy(api, running):
    eth = by_name(api.get(URL).json())["okx:ETH-USDT"]
    assert eth["status"] == "stopped"
    assert eth["should_be_running"] is True
    assert eth["is_healthy"] is False and eth["issues"] == ["not running"]
    assert eth["health"]["time_since_heartbeat"] is None
    assert eth["statistics"]["messages_received"] == 0


def test_a_disabled_pair_is_listed_as_stopped_and_fine(api, running):
    sol = by_name(api.get(URL).json())["okx:SOL-USDT"]
    assert (sol["status"], sol["should_be_running"], sol["is_healthy"]) == ("stopped", False, True)


def test_a_collectors_health_is_the_spec_health_dict(api, running):
    response = api.get(URL + "okx:BTC-USDT/health/")
    assert response.status_code == 200
    assert response.json() == {**HEALTHY, "name": "okx:BTC-USDT", "worker": WORKER}


def test_an_unknown_collector_is_a_404(api, running):
    response = api.get(URL + "okx:DOGE-USDT/health/")
    assert response.status_code == 404
    assert "okx:DOGE-USDT" in response.json()["detail"]


def test_reading_collectors_needs_a_user(running):
    assert APIClient().get(URL).status_code == 401


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_control_is_for_staff_only(api, running, action):
    assert APIClient().post(URL + f"okx:BTC-USDT/{action}/").status_code == 401
    response = api.post(URL + f"okx:BTC-USDT/{action}/")
    assert response.status_code == 403


def test_public_reads_do_not_open_control(settings, running):
    settings.API_PUBLIC_READ = True
    assert APIClient().get(URL).status_code == 200
    assert APIClient().post(URL + "okx:ETH-USDT/start/").status_code == 401


def test_staff_start_enables_the_pair_and_sends_a_start_task(staff, running, redis_client):
    pair = TradingPair.objects.get(symbol="SOL-USDT")
    response = staff.post(URL + "okx:SOL-USDT/start/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["name"], body["action"], body["worker"]) == ("okx:SOL-USDT", "start", "")
    assert body["task_id"]
    pair.refresh_from_db()
    assert pair.enabled
    assert redis_client.llen("collectors") == 1


def test_staff_stop_disables_the_pair_and_asks_its_worker(staff, running):
    response = staff.post(URL + "okx:BTC-USDT/stop/")
    assert response.status_code == 202
    body = response.json()
    assert (body["action"], body["worker"]) == ("stop", WORKER)
    assert body["task_id"]
    assert not TradingPair.objects.get(symbol="BTC-USDT").enabled


def test_staff_restart_goes_to_the_worker_running_it(staff, running):
    body = staff.post(URL + "okx:BTC-USDT/restart/").json()
    assert (body["action"], body["worker"]) == ("restart", WORKER)


def test_restarting_a_disabled_stopped_pair_is_a_conflict(staff, running):
    response = staff.post(URL + "okx:SOL-USDT/restart/")
    assert response.status_code == 409
    assert "start it instead" in response.json()["detail"]


def test_controlling_an_unknown_collector_is_a_404(staff, running):
    assert staff.post(URL + "okx:DOGE-USDT/start/").status_code == 404


def test_collectors_are_a_503_when_redis_does_not_answer(api, pairs, settings, redis_client):
    with TcpProxy("127.0.0.1", redis_client.connection_pool.connection_kwargs["port"]) as proxy:
        database = redis_client.connection_pool.connection_kwargs["db"]
        settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/{database}"
        assert api.get(URL).status_code == 200
        proxy.cut()
        response = api.get(URL)
    assert response.status_code == 503
    assert "Redis" in response.json()["detail"]
    assert "127.0.0.1" not in response.content.decode()
