"""The dashboard in a real browser (headless Chromium) against a live stack: the simulator,
a collector worker and the web server, as an operator and a trader would use it."""

import json
import re

import pytest

from tests.conftest import wait_until
from tests.dashboard.conftest import SYMBOLS, screenshot, sign_in

# The live stack's data is stored once per module; each test only reads (and the database
# marker makes pytest-django set the test database up).
pytestmark = pytest.mark.django_db

MARKET = f"okx:{SYMBOLS[0]}"


def board_prices(page) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#board tbody tr')].map(
            (row) => [row.dataset.market, row.querySelector('[data-field=last_price]').textContent]))"""
    )


def test_signing_in_shows_the_board_filling_with_live_prices(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "trader")
    rows = page.locator("#board tbody tr")
    assert rows.count() == len(SYMBOLS)
    # Prices arrive from the collectors and keep changing without a reload.

    def priced() -> dict[str, str] | None:
        prices = board_prices(page)
        return prices if all(price not in ("", "–") for price in prices.values()) else None

    first = wait_until(priced, 30, 0.2, message="a price on every row")
    page.evaluate("window.notReloaded = true")
    wait_until(lambda: board_prices(page) != first, 30, 0.2, message="prices to move")
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#live-status").text_content() == "live"
    row = page.locator(f'#board tr[data-market="{MARKET}"]')
    wait_until(lambda: row.locator("[data-field=state]").text_content() == "running", 30, 0.2)
    assert row.locator("[data-field=health]").text_content() == "healthy"
    # times are UTC to the second, the local time on hover
    last_trade = row.locator("[data-field=last_trade] time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", last_trade.text_content())
    assert last_trade.get_attribute("title").startswith("local time: ")
    screenshot(page, "board")


def test_a_market_page_draws_each_new_candle_without_a_reload(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "trader")
    page.click(f'#board tr[data-market="{MARKET}"] a')
    page.wait_for_url(f"**/markets/okx/{SYMBOLS[0]}/")
    page.click('#timeframes a[data-timeframe="1s"]')
    page.wait_for_function("window.tcpMarket.timeframe === '1s' && window.tcpMarket.loaded")
    page.evaluate("window.notReloaded = true")
    seen = page.evaluate("window.tcpMarket.finals.length")
    # 1s candles close every second: new final bars arrive over the stream and are drawn
    page.wait_for_function(f"window.tcpMarket.finals.length >= {seen + 3}")
    assert page.evaluate("window.notReloaded") is True
    finals = page.evaluate("window.tcpMarket.finals")
    stamps = [final["timestamp"] for final in finals]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(final["timeframe"] == "1s" for final in finals)
    # the trade tape and the book fill from the live feed
    page.wait_for_function("document.querySelectorAll('#tape tbody tr').length >= 5")
    page.wait_for_function("document.querySelectorAll('#book tbody tr').length >= 3")
    assert "spread" in page.locator("#book-meta").text_content()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}",
        page.locator("#tape tbody tr time").first.text_content(),
    )
    screenshot(page, "market")


def test_switching_the_timeframe_shows_that_timeframes_candles(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "trader")
    page.goto(f"{live_stack.web.url}/markets/okx/{SYMBOLS[0]}/?timeframe=1s")
    page.wait_for_function("window.tcpMarket.loaded")
    with page.expect_request(lambda request: "timeframe=1m" in request.url and "/candles/" in request.url):
        page.click('#timeframes a[data-timeframe="1m"]')
    page.wait_for_function("window.tcpMarket.timeframe === '1m' && window.tcpMarket.loaded")
    assert page.url.endswith("?timeframe=1m")
    assert page.locator('#timeframes a[aria-current="true"]').text_content() == "1m"
    # the stored 1m history (three candles) is drawn
    assert page.evaluate("window.tcpMarket.bars") >= 3


def test_staff_restart_a_collector_and_see_its_state_change(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "operator")
    page.goto(f"{live_stack.web.url}/collectors/")
    row = page.locator(f'#collectors tr[data-name="{MARKET}"]')
    wait_until(lambda: row.get_attribute("data-status") == "running", 30, 0.2, message="running")
    before = int(row.get_attribute("data-restarts"))
    row.locator('button[data-action="restart"]').click()
    outcome = row.locator("[data-field=outcome]")
    wait_until(lambda: "restart sent to" in outcome.text_content(), 15, 0.1, message="an answer")
    assert live_stack.worker in outcome.text_content()
    wait_until(
        lambda: int(row.get_attribute("data-restarts")) == before + 1,
        45,
        0.2,
        message="the restart to show",
    )
    wait_until(lambda: row.get_attribute("data-status") == "running", 30, 0.2, message="running")
    screenshot(page, "collectors")


def test_a_non_staff_user_has_no_control_buttons_and_the_api_refuses_them(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "trader")
    page.goto(f"{live_stack.web.url}/collectors/")
    row = page.locator(f'#collectors tr[data-name="{MARKET}"]')
    row.wait_for()
    assert page.locator("#collectors button").count() == 0
    assert page.locator("#collectors th", has_text="Control").count() == 0
    answer = page.evaluate(
        """async (name) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const response = await fetch(`/api/v1/collectors/${name}/restart/`, {
                method: "POST", headers: {"X-CSRFToken": token}, credentials: "same-origin"});
            return {status: response.status, body: await response.json()};
        }""",
        MARKET,
    )
    assert answer["status"] == 403, json.dumps(answer)
