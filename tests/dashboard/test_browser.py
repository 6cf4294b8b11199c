"""The dashboard in a real browser (headless Chromium) against a live stack: the simulator,
a collector worker and the web server, as an operator and a trader would use it."""

import json
import re
import urllib.error
import urllib.request

import pytest
import redis
from django.conf import settings

from tests.dashboard.conftest import (
    SYMBOLS,
    read_events,
    running_web_server,
    screenshot,
    sign_in,
)
from tests.helpers import wait_until

# The live stack's data is stored once per module; each test only reads (and the database
# marker makes pytest-django set the test database up).
pytestmark = pytest.mark.django_db

MARKET = f"okx:{SYMBOLS[0]}"


BOARD_PRICES = """() => Object.fromEntries(
    [...document.querySelectorAll('#board tbody tr')].map((row) => [
        row.dataset.market, row.querySelector('[data-field=last_price]').textContent]))"""
NO_VALUE = "\u2013"  # what a cell shows without a value


def board_prices(page) -> dict[str, str]:
    return page.evaluate(BOARD_PRICES)


def test_signing_in_shows_the_board_filling_with_live_prices(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "trader")
    rows = page.locator("#board tbody tr")
    assert rows.count() == len(SYMBOLS)
    # Prices arrive from the collectors and keep changing without a reload.

    def priced() -> dict[str, str] | None:
        prices = board_prices(page)
        return prices if all(price not in ("", NO_VALUE) for price in prices.values()) else None

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
    page.wait_for_url(f"**/markets/okx/{SYMBOLS[0]}/", wait_until="domcontentloaded")
    page.wait_for_function("window.tcpMarket && window.tcpMarket.loaded")
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


def test_switching_the_timeframe_shows_its_candles_with_gaps_as_gaps(live_stack, browser):
    page = browser.new_page()
    sign_in(page, live_stack.web, "trader")
    page.goto(f"{live_stack.web.url}/markets/okx/{SYMBOLS[0]}/?timeframe=1s")
    page.wait_for_function("window.tcpMarket.loaded")

    def asks_for_1m_candles(request) -> bool:
        return "/api/v1/candles/" in request.url and "timeframe=1m" in request.url

    with page.expect_request(asks_for_1m_candles):
        page.click('#timeframes a[data-timeframe="1m"]')
    page.wait_for_function("window.tcpMarket.timeframe === '1m' && window.tcpMarket.loaded")
    assert page.url.endswith("?timeframe=1m")
    assert page.locator('#timeframes a[aria-current="true"]').text_content() == "1m"
    # the stored 1m history (three candles) is drawn, the minute without trades a gap
    assert page.evaluate("window.tcpMarket.bars") >= 3
    assert live_stack.gap.timestamp() in page.evaluate("window.tcpMarket.gaps")


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


def test_a_live_stream_serves_signed_in_viewers_and_refuses_anonymous_ones(live_stack, browser):
    url = f"{live_stack.web.url}/live/markets/okx/{SYMBOLS[0]}/?timeframe=1s"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403
    sign_in(browser.new_page(), live_stack.web, "trader")
    session = next(c for c in browser.cookies() if c["name"] == "sessionid")
    client = redis.Redis.from_url(settings.REDIS_URL)
    channel = f"candles:okx:{SYMBOLS[0]}:1s"

    def subscribers() -> int:
        return dict(client.pubsub_numsub(channel))[channel.encode()]

    during = []

    def enough(seen) -> bool:
        names = {name for name, _ in seen}
        if "candle" in names and not during:
            during.append(subscribers())
        return {"hello", "candle", "trades", "book"} <= names

    events = read_events(url, f"sessionid={session['value']}", until=enough)
    hello = json.loads(events[0][1])
    assert events[0][0] == "hello" and hello["mode"] == "redis"
    trades = [json.loads(data) for name, data in events if name == "trades"]
    assert all(message["symbol"] == SYMBOLS[0] for message in trades)
    assert all(len(message["trades"]) <= 50 for message in trades)
    candles = [json.loads(data) for name, data in events if name == "candle"]
    assert all(candle["timeframe"] == "1s" for candle in candles)
    assert during == [1]  # the web server's one subscription
    # the stream is closed: the server forgets its viewer and drops the Redis subscription
    try:
        wait_until(lambda: subscribers() == 0, 15, 0.2, message="the subscription to go")
    finally:
        client.close()


def test_without_redis_the_pages_say_so_and_still_update_from_the_database(
    live_stack, browser, tmp_path
):
    with running_web_server(tmp_path, REDIS_URL="", VAR_DIR=str(tmp_path / "var")) as web:
        page = browser.new_page()
        sign_in(page, web, "trader")
        assert "embedded mode (no Redis)" in page.locator("#degraded").text_content()
        page.goto(f"{web.url}/markets/okx/{SYMBOLS[0]}/?timeframe=1s")
        page.locator('#live-status[data-state="degraded"]').wait_for()  # the stream's hello
        assert "updates every 2 s from the database" in page.locator("#live-status").text_content()
        newest = page.locator("#tape tbody tr time").first.text_content()
        # the collectors keep storing trades: they reach the tape through the database
        wait_until(
            lambda: page.locator("#tape tbody tr time").first.text_content() > newest,
            20,
            0.2,
            message="a newer trade on the tape",
        )
        page.goto(f"{web.url}/collectors/")
        # Without Redis the states come from the embedded host's status file: every stream
        # is listed, none running (they run in Celery workers this web server cannot see).
        page.locator(f'#collectors tbody tr[data-name="okx:{SYMBOLS[0]}"]').wait_for()
        assert page.locator("#collectors-unavailable").is_hidden()
        screenshot(page, "collectors-without-redis")
