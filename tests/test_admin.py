"""The admin pages load for staff and refuse anonymous visitors; stored data is read-only."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from collectors.models import CollectorStatus, Exchange, ExchangeRetention, TradingPair
from marketdata.models import ArchiveFile, Candle, MarketData, RawTrade, RetentionRun
from marketdata.retention import apply_retention

pytestmark = pytest.mark.django_db

MODELS = [
    Exchange,
    TradingPair,
    CollectorStatus,
    RawTrade,
    MarketData,
    Candle,
    ArchiveFile,
    RetentionRun,
]


@pytest.fixture
def some_data():
    exchange = Exchange.objects.create(
        name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public"
    )
    TradingPair.objects.create(exchange=exchange, symbol="BTC-USDT")
    now = timezone.now()
    RawTrade.objects.create(
        exchange="okx",
        symbol="BTC-USDT",
        trade_id="1",
        price="50000.5",
        size="0.001",
        side="buy",
        timestamp=now,
    )
    MarketData.objects.create(
        exchange="okx", symbol="BTC-USDT", data_type="ticker", timestamp=now, data={"last": "1"}
    )
    CollectorStatus.objects.create(
        name="okx:BTC-USDT",
        exchange="okx",
        symbol="BTC-USDT",
        status="running",
        should_be_running=True,
        is_healthy=True,
    )
    return exchange


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_changelist_loads_for_staff(staff_client, some_data, model):
    response = staff_client.get(changelist(model))
    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_an_anonymous_visitor_is_sent_to_the_login_page(client, model):
    response = client.get(changelist(model))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_non_staff_user_is_refused(client):
    user = get_user_model().objects.create_user("viewer", password="a-long-password")
    client.force_login(user)
    response = client.get(changelist(RawTrade))
    assert response.status_code == 302


def test_trades_show_their_values_and_cannot_be_added(staff_client, some_data):
    response = staff_client.get(changelist(RawTrade))
    assert b"50000.50000000" in response.content
    assert staff_client.get(reverse("admin:marketdata_rawtrade_add")).status_code == 403


def test_the_exchange_page_edits_its_trading_pairs(staff_client, some_data):
    url = reverse("admin:collectors_exchange_change", args=[some_data.pk])
    response = staff_client.get(url)
    assert response.status_code == 200
    assert b"BTC-USDT" in response.content
    assert b"public_ws_url" in response.content


def test_the_admin_refuses_an_invalid_trading_pair_with_the_field_named(staff_client, some_data):
    url = reverse("admin:collectors_tradingpair_add")
    response = staff_client.post(
        url,
        {
            "exchange": some_data.pk,
            "symbol": "btc usdt",
            "enabled": "on",
            "data_types": '["trade"]',
            "channels": '{"trades": "trades"}',
        },
    )
    assert response.status_code == 200
    assert b"malformed symbol" in response.content
    assert not TradingPair.objects.filter(symbol="btc usdt").exists()


def test_the_admin_refuses_a_non_websocket_url(staff_client, some_data):
    url = reverse("admin:collectors_exchange_change", args=[some_data.pk])
    form = {
        "name": "okx",
        "enabled": "on",
        "public_ws_url": "http://ws.okx.com/ws/v5/public",
        "business_ws_url": "",
        "rest_url": "",
        "ping_interval": "25",
        "pong_timeout": "10",
        "max_reconnect_attempts": "5",
        "reconnect_delay": "5",
        "store_raw_data": "on",
        "health_check_interval": "30",
        "auto_restart": "on",
        "buffer_size": "1000",
        "max_silence_duration": "60",
        "trading_pairs-TOTAL_FORMS": "0",
        "trading_pairs-INITIAL_FORMS": "0",
    }
    response = staff_client.post(url, form)
    assert response.status_code == 200
    assert b"URL scheme must be wss or ws" in response.content
    some_data.refresh_from_db()
    assert some_data.public_ws_url.startswith("wss://")


def test_the_trading_pair_list_shows_each_collectors_state(staff_client, some_data, redis_client):
    response = staff_client.get(changelist(TradingPair))
    assert response.status_code == 200
    assert b'<td class="field-state">stopped</td>' in response.content


def test_the_stop_action_disables_the_pair(staff_client, some_data, redis_client):
    pair = TradingPair.objects.get()
    response = staff_client.post(
        changelist(TradingPair),
        {"action": "stop_collectors", "_selected_action": [pair.pk]},
        follow=True,
    )
    sent = [str(message) for message in response.context["messages"]]
    assert sent == ["okx:BTC-USDT: disabled, not running"]
    pair.refresh_from_db()
    assert pair.enabled is False


def test_a_retention_run_shows_the_storage_of_each_kind_of_data(
    staff_client, some_data, settings, tmp_path
):
    settings.ARCHIVE_DIR = tmp_path
    apply_retention()
    run = RetentionRun.objects.get()
    url = reverse("admin:marketdata_retentionrun_change", args=[run.pk])
    page = staff_client.get(url).content.decode().lower()
    for text in (
        "database",
        "archive",
        "growth per day",
        "oldest in database",
        "trade",
        "orderbook",
    ):
        assert text in page
    assert run.storage["trade"]["oldest_in_database"] == timezone.now().date().isoformat()


def test_an_exchange_keeps_its_own_retention_windows(staff_client, some_data):
    url = reverse("admin:collectors_exchange_change", args=[some_data.pk])
    form = staff_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        {
            "trading_pairs-TOTAL_FORMS": "0",
            "trading_pairs-INITIAL_FORMS": "0",
            "accounts-TOTAL_FORMS": "0",
            "accounts-INITIAL_FORMS": "0",
            "retention-TOTAL_FORMS": "1",
            "retention-INITIAL_FORMS": "0",
            "retention-0-kind": "orderbook",
            "retention-0-days": "1",
        }
    )
    response = staff_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ExchangeRetention.objects.get(exchange=some_data).days == 1
