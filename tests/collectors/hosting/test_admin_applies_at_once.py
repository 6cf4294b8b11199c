"""Saving a pair or an exchange in the admin reconciles at once: a real collector worker
starts or stops the stream with no health check (no beat) running, and the admin's
message says what was done."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from collectors.hosting import leases
from collectors.models import Exchange, TradingPair
from tests.collectors.hosting.processes import (
    BTC,
    celery_processes,
    configure_exchange,
    hosted_on,
    running_heartbeat,
    stored_trade_ids,
)
from tests.helpers import wait_until


@pytest.fixture
def worker(transactional_db, hosting_redis, tmp_path):
    with celery_processes(tmp_path) as processes:
        node = processes.collector_worker("adm")
        processes.wait_ready(node)
        yield node


@pytest.fixture
def operator(client, transactional_db):
    user = get_user_model().objects.create_user(
        "operator", password="a-long-password", is_staff=True, is_superuser=True
    )
    client.force_login(user)
    return client


def tick_enabled(operator, pair: TradingPair, enabled: bool) -> list[str]:
    """The trading-pair list's Enabled checkbox, saved as an operator does."""
    form = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(pair.pk),
        "_save": "Save",
    }
    if enabled:
        form["form-0-enabled"] = "on"
    url = reverse("admin:collectors_tradingpair_changelist")
    response = operator.post(url, form, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_ticking_enabled_starts_the_stream_at_once_and_says_so(
    simulator, worker, hosting_redis, operator
):
    configure_exchange(simulator, {"BTC-USDT": False})
    messages = tick_enabled(operator, TradingPair.objects.get(), True)
    assert "Saved; applied now: start okx:BTC-USDT (should run and does not)." in messages
    wait_until(lambda: running_heartbeat(hosting_redis, BTC, worker), 30, message="BTC runs")
    wait_until(lambda: stored_trade_ids("BTC-USDT"), 30, message="BTC trades stored")


def test_unticking_enabled_stops_the_stream_at_once_and_says_so(
    simulator, worker, hosting_redis, operator
):
    configure_exchange(simulator, {"BTC-USDT": False})
    tick_enabled(operator, TradingPair.objects.get(), True)
    wait_until(lambda: hosted_on(hosting_redis, worker) == [BTC], 30, message="BTC runs")
    messages = tick_enabled(operator, TradingPair.objects.get(), False)
    assert "Saved; applied now: stop okx:BTC-USDT (should not run)." in messages
    wait_until(lambda: hosted_on(hosting_redis, worker) == [], 30, message="BTC stops")
    assert leases.holder(hosting_redis, BTC) is None


def test_disabling_the_exchange_in_its_form_stops_its_streams(
    simulator, worker, hosting_redis, operator
):
    exchange = configure_exchange(simulator, {"BTC-USDT": False})
    tick_enabled(operator, TradingPair.objects.get(), True)
    wait_until(lambda: hosted_on(hosting_redis, worker) == [BTC], 30, message="BTC runs")
    url = reverse("admin:collectors_exchange_change", args=[exchange.pk])
    form = operator.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        {
            "trading_pairs-TOTAL_FORMS": "0",
            "trading_pairs-INITIAL_FORMS": "0",
            "retention-TOTAL_FORMS": "0",
            "retention-INITIAL_FORMS": "0",
        }
    )
    data.pop("enabled", None)
    if data.get("store_raw_data") is True:
        data["store_raw_data"] = "on"
    if data.get("auto_restart") is True:
        data["auto_restart"] = "on"
    response = operator.post(url, data, follow=True)
    messages = [str(message) for message in response.context["messages"]]
    assert not Exchange.objects.get().enabled, response.content.decode()[:2000]
    assert "Saved; applied now: stop okx:BTC-USDT (should not run)." in messages
    wait_until(lambda: hosted_on(hosting_redis, worker) == [], 30, message="BTC stops")


def test_with_nothing_to_change_the_message_says_so(simulator, worker, hosting_redis, operator):
    configure_exchange(simulator, {"BTC-USDT": False})
    messages = tick_enabled(operator, TradingPair.objects.get(), False)
    assert messages == []  # nothing changed, nothing saved
    pair = TradingPair.objects.get()
    url = reverse("admin:collectors_tradingpair_change", args=[pair.pk])
    form = operator.get(url).context["adminform"].form
    data = {
        "symbol": pair.symbol,
        "exchange": str(pair.exchange_id),
        "data_types": form["data_types"].value(),
        "channels": form["channels"].value(),
    }
    response = operator.post(url, data, follow=True)
    messages = [str(message) for message in response.context["messages"]]
    assert (
        "Saved; the running collectors already match the configuration: nothing to change."
        in messages
    ), messages
    assert stored_trade_ids("BTC-USDT") == []
