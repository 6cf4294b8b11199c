"""A symbol the exchange does not have: refused when a pair is added (admin, configuration
files) by asking the exchange's instrument list, which the simulators serve; and, when it
gets through anyway, a permanent error that is not restarted until the configuration
changes and is never counted healthy."""

import json
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from collectors.exchanges.listing import check_symbols
from collectors.factory import ExchangeFactory
from collectors.health_rule import restart_cause
from collectors.manager import CollectorManager
from collectors.models import Exchange, TradingPair
from collectors.simulators.market import LISTED_BASES
from collectors.types import DataType
from tests.helpers import free_port, run, simulated_market, simulator_connection, wait_until


@pytest.fixture
def okx():
    with simulated_market("okx", seed=7, rate=50.0) as running:
        yield running


def get(simulator, path):
    import urllib.request

    with urllib.request.urlopen(simulator.rest_url + path, timeout=5) as response:
        return json.loads(response.read())


# the simulators list their instruments ------------------------------------------------------


def test_the_okx_simulator_lists_every_instrument_it_serves_by_type(okx):
    spot = get(okx.simulator, "/api/v5/public/instruments?instType=SPOT")
    assert spot["code"] == "0"
    listed = {item["instId"] for item in spot["data"]}
    assert {"BTC-USDT", "ETH-USDT", "SOL-USDT", "DOGE-USDC"} <= listed
    assert {f"{base}-USDT" for base in LISTED_BASES} <= listed
    assert all(item["state"] == "live" and item["instType"] == "SPOT" for item in spot["data"])
    sol = next(item for item in spot["data"] if item["instId"] == "SOL-USDT")
    assert (sol["baseCcy"], sol["quoteCcy"], sol["tickSz"]) == ("SOL", "USDT", "0.01")
    swaps = get(okx.simulator, "/api/v5/public/instruments?instType=SWAP")["data"]
    assert "UNI-USD-SWAP" in {item["instId"] for item in swaps}
    one = get(okx.simulator, "/api/v5/public/instruments?instType=SPOT&instId=SOL-USDT")
    assert [item["instId"] for item in one["data"]] == ["SOL-USDT"]
    missing = get(okx.simulator, "/api/v5/public/instruments?instType=SPOT&instId=NOPE-USDT")
    assert (missing["code"], missing["data"]) == ("51001", [])


def test_the_okx_simulator_trades_a_listed_market_nobody_asked_for_at_start(okx, sink):
    collector = ExchangeFactory.create_collector(okx.config("XRP-USDC"))
    collector.sink = sink
    assert run(collector.start()) is True
    wait_until(lambda: collector.last_data_time, 10, message="XRP-USDC trades")
    run(collector.stop())


def test_the_binance_simulator_lists_the_same_markets_in_its_exchange_info():
    with simulated_market("binance", seed=7, rate=10.0) as binance:
        info = get(binance.simulator, "/api/v3/exchangeInfo")
        listed = {item["symbol"] for item in info["symbols"]}
        assert {"BTCUSDT", "BNBUSDT", "SOLUSDT", "DOGEUSDC"} <= listed
        assert {f"{base}USDC" for base in LISTED_BASES} <= listed


# the check before storing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "listed", "unlisted"),
    [("okx", ["SOL-USDT", "BTC-USD-220527"], ["SOL-USDX"]), ("binance", ["SOLUSDT"], ["SOLUSDX"])],
)
def test_it_asks_the_exchange_which_symbols_it_does_not_list(exchange, listed, unlisted):
    with simulated_market(exchange, seed=1, rate=1.0) as market:
        check = check_symbols(exchange, market.simulator.rest_url, [*listed, *unlisted])
    assert (check.unlisted, check.unchecked) == (unlisted, "")


def test_an_exchange_that_does_not_answer_leaves_the_symbols_unchecked_and_says_why():
    url = f"http://127.0.0.1:{free_port()}"
    check = check_symbols("okx", url, ["SOL-USDT"])
    assert check.unlisted == []
    assert check.unchecked.startswith(f"okx could not be asked for its instruments at {url}")
    assert "refused" in check.unchecked.lower()


def add_pair_form(exchange, symbol):
    return {
        "exchange": exchange.pk,
        "symbol": symbol,
        "enabled": "on",
        "data_types": '["trade"]',
        "channels": '{"trades": "trades"}',
    }


@pytest.mark.django_db
def test_the_admin_refuses_a_pair_the_exchange_does_not_list_and_adds_one_it_does(
    staff_client, okx
):
    exchange = Exchange.objects.create(name="okx", **simulator_connection(okx.simulator))
    url = reverse("admin:collectors_tradingpair_add")
    response = staff_client.post(url, add_pair_form(exchange, "SOL-USDX"))
    assert response.status_code == 200
    assert "okx does not list SOL-USDX" in response.content.decode()
    assert not TradingPair.objects.filter(symbol="SOL-USDX").exists()
    response = staff_client.post(url, add_pair_form(exchange, "SOL-USDT"), follow=True)
    assert TradingPair.objects.filter(symbol="SOL-USDT").exists()
    assert "not checked" not in response.content.decode()


@pytest.mark.django_db
def test_the_admin_saves_a_pair_while_the_exchange_is_unreachable_and_says_it_is_unchecked(
    staff_client,
):
    dead = f"127.0.0.1:{free_port()}"
    exchange = Exchange.objects.create(
        name="okx", public_ws_url=f"ws://{dead}/ws/v5/public", rest_url=f"http://{dead}"
    )
    response = staff_client.post(
        reverse("admin:collectors_tradingpair_add"),
        add_pair_form(exchange, "SOL-USDT"),
        follow=True,
    )
    page = response.content.decode()
    assert TradingPair.objects.filter(symbol="SOL-USDT").exists()
    assert "Symbol SOL-USDT of okx not checked: okx could not be asked for its instruments" in page
    # Editing something else of the pair does not ask again.
    pair = TradingPair.objects.get(symbol="SOL-USDT")
    assert pair.symbol_is_new() is False


def config_file(tmp_path, simulator, symbols):
    config = {
        "exchange": "okx",
        "connection": {
            "public_ws_url": simulator.public_url,
            "rest_url": simulator.rest_url,
        },
        "trading_pairs": [{"symbol": symbol, "data_types": ["trade"]} for symbol in symbols],
    }
    path = tmp_path / "okx.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.django_db
def test_a_configuration_file_with_a_symbol_the_exchange_lacks_is_not_stored(okx, tmp_path):
    path = config_file(tmp_path, okx.simulator, ["BTC-USDT", "SOL-USDX"])
    with pytest.raises(CommandError, match=r"okx does not list SOL-USDX"):
        call_command("load_exchange_config", str(path))
    assert not Exchange.objects.exists()
    call_command("load_exchange_config", str(config_file(tmp_path, okx.simulator, ["SOL-USDT"])))
    assert list(TradingPair.objects.values_list("symbol", flat=True)) == ["SOL-USDT"]


# the exchange's "does not exist" is permanent -----------------------------------------------


def test_okx_60018_stops_the_collector_in_error_with_okx_message_and_no_restart(okx, sink):
    collector = ExchangeFactory.create_collector(okx.config("SOL-USDX", (DataType.TRADE,)))
    manager = CollectorManager(sink=sink, check_interval=0.2)
    manager.add_collector(collector)
    run(manager.start())
    wait_until(lambda: collector.status == "error", 10, message="the error")
    assert collector.last_error.startswith("permanent: public: okx error 60018: ")
    assert "instId:SOL-USDX doesn't exist" in collector.last_error
    assert restart_cause(collector.get_status(), is_running=collector.is_running) is None
    health = collector.get_health_status()
    assert not health["is_healthy"]
    time.sleep(1.0)  # five of the manager's checks
    assert collector.restarts == 0 and collector.status == "error"
    assert okx.simulator.stats()["connections"] == 1
    run(manager.stop())


def new_exchange_form(simulator, symbols):
    form = {
        "name": "okx",
        "enabled": "on",
        "public_ws_url": simulator.public_url,
        "business_ws_url": "",
        "rest_url": simulator.rest_url,
        "ping_interval": "25",
        "pong_timeout": "10",
        "max_reconnect_attempts": "5",
        "reconnect_delay": "5",
        "store_raw_data": "on",
        "health_check_interval": "30",
        "auto_restart": "on",
        "buffer_size": "1000",
        "max_silence_duration": "60",
        "trading_pairs-TOTAL_FORMS": str(len(symbols)),
        "trading_pairs-INITIAL_FORMS": "0",
        "accounts-TOTAL_FORMS": "0",
        "accounts-INITIAL_FORMS": "0",
        "retention-TOTAL_FORMS": "0",
        "retention-INITIAL_FORMS": "0",
    }
    for index, symbol in enumerate(symbols):
        form[f"trading_pairs-{index}-symbol"] = symbol
        form[f"trading_pairs-{index}-enabled"] = "on"
        form[f"trading_pairs-{index}-data_types"] = '["trade"]'
        form[f"trading_pairs-{index}-channels"] = '{"trades": "trades"}'
    return form


@pytest.mark.django_db
def test_pairs_added_with_a_new_exchange_are_checked_against_its_instrument_list(staff_client, okx):
    url = reverse("admin:collectors_exchange_add")
    response = staff_client.post(url, new_exchange_form(okx.simulator, ["SOL-USDT", "SOL-USDX"]))
    assert response.status_code == 200
    assert "okx does not list SOL-USDX" in response.content.decode()
    assert not Exchange.objects.exists()
    response = staff_client.post(url, new_exchange_form(okx.simulator, ["SOL-USDT", "XRP-USDC"]))
    assert response.status_code == 302
    assert sorted(TradingPair.objects.values_list("symbol", flat=True)) == ["SOL-USDT", "XRP-USDC"]
