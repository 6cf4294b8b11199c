"""What operators see first: the admin's name, where "View site" and `/` lead, and a
trading-pairs list with each stream's message rate and the age of its last message."""

from datetime import timedelta

import pytest
from django.urls import reverse

from collectors.hosting import leases
from collectors.hosting.heartbeat import Heartbeat, publish, utc_now
from collectors.models import Exchange, TradingPair

pytestmark = pytest.mark.django_db


def test_the_admin_is_called_tcp_dashboard(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert "<title>Administration | TCP Dashboard</title>" in page
    assert ">TCP Dashboard</a>" in page
    assert "Django administration" not in page


def test_view_site_and_the_root_lead_to_the_dashboard(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert '<a href="/">View site</a>' in page
    response = staff_client.get("/")
    assert response.status_code == 200
    assert response.resolver_match.view_name == "dashboard:board"


def test_an_anonymous_visitor_of_the_root_is_asked_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("dashboard:login"))


def beat(name: str, received: int, uptime: float, since_data: float, seconds_ago: float):
    return Heartbeat(
        name=name,
        worker="worker@host",
        status={
            "status": "running",
            "health": {"time_since_data": since_data},
            "statistics": {
                "messages_received": received,
                "uptime_seconds": uptime,
                "last_message_time": "2026-11-27T10:00:00Z" if received else "",
                "last_error": "x" * 300,
            },
        },
        health={"is_healthy": True, "issues": [], "is_running": True},
        published_at=utc_now() - timedelta(seconds=seconds_ago),
    )


def test_the_pairs_list_shows_rate_and_last_message_age(staff_client, redis_client):
    okx = Exchange.objects.create(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
        TradingPair.objects.create(exchange=okx, symbol=symbol)
    client = leases.redis_client()
    for name in ("okx:BTC-USDT", "okx:ETH-USDT"):
        leases.acquire(client, name, "f00:worker@host", ttl=60)
    beats = [
        beat("okx:BTC-USDT", received=1250, uptime=100.0, since_data=0.4, seconds_ago=600.0),
        beat("okx:ETH-USDT", received=0, uptime=30.0, since_data=30.0, seconds_ago=1.0),
    ]
    publish(client, beats, None, ttl=60)
    response = staff_client.get(reverse("admin:collectors_tradingpair_changelist"))
    page = response.content.decode()
    headers = [column["text"] for column in response.context["result_headers"]]
    assert headers[1:] == [
        "symbol",
        "exchange",
        "enabled",
        "state",
        "msg/s",
        "last message",
        "worker",
        "restarts",
        "last error",
        "data types",
    ]
    rows = {row.symbol: row for row in response.context["cl"].result_list}
    assert set(rows) == {"BTC-USDT", "ETH-USDT", "SOL-USDT"}
    assert '<td class="field-rate">12.5</td>' in page
    assert '<td class="field-last_message">10 min ago</td>' in page
    assert '<td class="field-last_message">never</td>' in page
    assert '<td class="field-last_message">-</td>' in page  # SOL-USDT: no heartbeat
    assert "x" * 61 not in page.split('title="')[0]  # long errors are cut, whole on hover
    assert f'title="{"x" * 300}"' in page
