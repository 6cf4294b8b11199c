"""Dashboard benchmark: live latency to a real browser, 500 live viewers, the board's first paint.

Starts the web server as `make run` does (gunicorn, ASGI workers), the OKX simulator in its
own process and a collector in this one (publishing to Redis), then prints:

1. from a candle closing in the collector (its aggregator hands it over) to its bar being
   drawn by the market page in headless Chromium: p50 / p99 / max over the run;
2. VIEWERS concurrent live viewers of one market (Server-Sent Events clients on loopback,
   not browsers): how many connected, events each received, candle-close -> client
   latency, and the web server's CPU (all its processes, % of one core) and memory (RSS);
3. the markets board's first paint with 50 streams, in Chromium: first contentful paint and
   when the rows were rendered, from navigation start;
4. the ingest path with the live feed attached versus without: trades/s one collector
   takes at the simulator's full speed.

    .venv/bin/python bench/dashboard.py [--viewers 500] [--seconds 30]

Uses (and drops) its own database, tcp_bench_dashboard, on BENCH_DATABASE_SERVER, and
Redis at BENCH_REDIS_URL (default redis://127.0.0.1:6379/13; nothing is flushed; its
markets have names of their own, so other publishers do not mix in).
"""

import argparse
import asyncio
import multiprocessing
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import (  # noqa: E402
    WebServer,
    drop_database,
    recreate_database,
    use_database,
)
from simulated import Simulator  # noqa: E402

DB_NAME = "tcp_bench_dashboard"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
use_database(DB_NAME, REDIS_URL=REDIS_URL, DB_POOL="0", CANDLE_GRACE="0.5")
SYMBOL = "DSHB-USDT"
BOARD_STREAMS = 50
TIMED_VIEWERS = 25  # of the many viewers, how many time their final candles
PASSWORD = "bench-password-1"

import django  # noqa: E402

FIRST_PAINT = """new Promise((resolve) => new PerformanceObserver((list) => {
  const found = list.getEntries().find((e) => e.name === "first-contentful-paint");
  if (found) resolve(found.startTime);
}).observe({ type: "paint", buffered: true }))"""
FINAL = re.compile(rb'"timestamp": "([^"]+)"[^}]*"is_final": true')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):.0f} ms, p99 {percentile(values, 0.99):.0f} ms, "
        f"max {max(values):.0f} ms ({len(values)} candles)"
    )


class Collector:
    """One collector in this process, its live candles (1s) published to Redis; it notes
    when each candle closes in its aggregator."""

    def __init__(self, simulator: Simulator, data_types=("trade", "orderbook")) -> None:
        import redis

        from collectors.factory import ExchangeFactory
        from collectors.hosting.live_candles import LiveCandles
        from collectors.manager import CollectorManager
        from collectors.storage.sink import StorageSink

        closed_at: dict[str, float] = {}

        class TimedLiveCandles(LiveCandles):
            def _on_close(self, candles) -> None:
                now = time.time()
                for candle in candles:
                    closed_at[candle.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")] = now
                super()._on_close(candles)

        self.closed_at = closed_at
        self.sink = StorageSink(name="bench-dashboard", buffer_size=5000, flush_interval=0.1)
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.live = TimedLiveCandles(timeframes=["1s"], publish_to=self.redis)
        self.manager = CollectorManager(sink=self.sink)
        collector = ExchangeFactory.create_collector(simulator.config(SYMBOL, data_types))
        self.manager.add_collector(collector)
        self.live.attach(collector)

    def start(self) -> None:
        self.sink.start()
        asyncio.run(self.manager.start())

    def stop(self) -> None:
        asyncio.run(self.manager.stop())
        self.live.stop()
        self.sink.stop()
        self.redis.close()


def session_cookie() -> str:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_user("bench", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def configure_markets(simulator: Simulator) -> None:
    """The bench market, and BOARD_STREAMS - 1 more with a day of candles and a trade each."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from collectors.models import Exchange, TradingPair
    from marketdata.candles import CandleValue, floor_boundary, store_candles
    from marketdata.models import RawTrade

    exchange = Exchange.objects.create(
        name="okx",
        public_ws_url=f"ws://127.0.0.1:{simulator.port}/ws/v5/public",
        rest_url=f"http://127.0.0.1:{simulator.port}",
    )
    TradingPair.objects.create(exchange=exchange, symbol=SYMBOL, data_types=["trade", "orderbook"])
    now = datetime.now(UTC)
    candles, trades = [], []
    for number in range(1, BOARD_STREAMS):
        symbol = f"B{number:02d}-USDT"
        TradingPair.objects.create(exchange=exchange, symbol=symbol, enabled=False)
        price = Decimal(100 + number)
        for timeframe, width, count in (("1h", 3600, 25), ("1m", 60, 90)):
            end = floor_boundary(now, timeframe) + timedelta(seconds=width)
            for step in range(count):
                stamp = end - timedelta(seconds=width * step)
                candles.append(
                    CandleValue(
                        "okx", symbol, timeframe, stamp, price, price + 1, price - 1, price,
                        Decimal(3), Decimal(3) * price, price, 30, is_final=stamp <= now,
                    )
                )  # fmt: skip
        trades.append(
            RawTrade(
                exchange="okx", symbol=symbol, trade_id="1", price=price, size=Decimal(1),
                side="buy", timestamp=now,
            )
        )  # fmt: skip
    store_candles(candles)
    RawTrade.objects.bulk_create(trades)


def browser_latency(playwright, server: WebServer, collector: Collector, seconds: float) -> dict:
    from dashboard.browser import chromium

    with chromium(playwright) as context:
        page = context.new_page()
        login(page, server)
        page.goto(f"{server.url}/markets/okx/{SYMBOL}/?timeframe=1s")
        page.wait_for_function("window.tcpMarket && window.tcpMarket.loaded", timeout=30_000)
        time.sleep(seconds)
        finals = page.evaluate("window.tcpMarket.finals")
    latencies = [
        final["drawn"] - collector.closed_at[final["timestamp"]] * 1000
        for final in finals
        if final["timestamp"] in collector.closed_at
    ]
    return {"close -> drawn in Chromium": summary(latencies)}


def login(page, server: WebServer) -> None:
    page.goto(f"{server.url}/login/")
    page.fill("#id_username", "bench")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")


async def viewer(
    port: int, cookie: str, path: str, stats: dict, stop: asyncio.Event, timed: bool
) -> None:
    """One live viewer. All count their events; `timed` ones also note when each final
    candle arrived (parsing every event of 500 viewers would make this process the
    bottleneck on a 2-core machine)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats["failed"] += 1
        return
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={cookie}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        stats["failed"] += 1
        writer.close()
        return
    stats["connected"] += 1
    buffer = b""
    try:
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                continue
            if not data:
                break
            stats["events"] += data.count(b"event: ")
            if not timed:
                continue
            now = time.time()
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                # (the body is chunked: a chunk-size line may precede an event)
                if b"event: candle" in event and (found := FINAL.search(event)):
                    stats["finals"].append((found.group(1).decode(), now))
    finally:
        writer.close()


async def watch(port: int, cookie: str, count: int, seconds: float, report) -> None:
    """`count` viewers of the bench market: connect them, report, count for `seconds`."""
    stats = {"connected": 0, "failed": 0, "events": 0, "bytes": 0, "finals": []}
    stop = asyncio.Event()
    path = f"/live/markets/okx/{SYMBOL}/?timeframe=1s"
    started = time.monotonic()
    tasks = []
    for number in range(count):
        timed = number % max(1, count // TIMED_VIEWERS) == 0
        tasks.append(asyncio.create_task(viewer(port, cookie, path, stats, stop, timed)))
        await asyncio.sleep(0.002)
    while stats["connected"] + stats["failed"] < count and time.monotonic() - started < 60:
        await asyncio.sleep(0.1)
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(2)  # settle
    report.put({k: stats[k] for k in ("connected", "failed")} | {"connect": connect_seconds})
    events0, t0 = stats["events"], time.monotonic()
    stats["finals"].clear()
    await asyncio.sleep(seconds)
    per_viewer = (stats["events"] - events0) / max(1, stats["connected"]) / (time.monotonic() - t0)
    report.put({"per_viewer": per_viewer, "finals": list(stats["finals"])})
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def many_viewers(server: WebServer, cookie: str, count: int, seconds: float, collector) -> dict:
    """The viewers run in a process of their own, apart from the collector in this one."""
    context = multiprocessing.get_context("fork")
    report = context.Queue()
    child = context.Process(
        target=lambda: asyncio.run(watch(server.port, cookie, count, seconds, report))
    )
    child.start()
    connected = report.get(timeout=180)
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    rss = []
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        rss.append(server.rss_mb())
    cpu1, t1 = server.cpu_seconds(), time.monotonic()
    counted = report.get(timeout=180)
    child.join(timeout=60)
    latencies = [
        (received - collector.closed_at[stamp]) * 1000
        for stamp, received in counted["finals"]
        if stamp in collector.closed_at
    ]
    failed = f" ({connected['failed']} failed)" if connected["failed"] else ""
    return {
        "viewers connected": (
            f"{connected['connected']} of {count} in {connected['connect']:.1f} s{failed}"
        ),
        "events received per viewer per second": f"{counted['per_viewer']:.1f}",
        "close -> received by a viewer": summary(latencies),
        "web server CPU (all processes, % of one core)": f"{(cpu1 - cpu0) / (t1 - t0):.0%}",
        "web server memory (RSS, all processes)": (
            f"{statistics.median(rss):.0f} MB (max {max(rss):.0f} MB)"
        ),
    }


def board_paint(playwright, server: WebServer, repeats: int = 5) -> dict:
    from dashboard.browser import chromium

    paints, rendered, served = [], [], []
    with chromium(playwright) as context:
        page = context.new_page()
        login(page, server)
        for _ in range(repeats):
            page.goto(f"{server.url}/")
            page.wait_for_function(
                f"document.querySelectorAll('#board tbody tr').length >= {BOARD_STREAMS}"
            )
            paints.append(page.evaluate(FIRST_PAINT))
            rendered.append(
                page.evaluate("performance.getEntriesByName('tcp:board-rendered')[0].startTime")
            )
            served.append(
                page.evaluate("performance.getEntriesByType('navigation')[0].responseStart")
            )
    paint = f"median {statistics.median(paints):.0f} ms, max {max(paints):.0f} ms"
    rows = f"median {statistics.median(rendered):.0f} ms, max {max(rendered):.0f} ms"
    server_time = f"median {statistics.median(served):.0f} ms, max {max(served):.0f} ms"
    return {
        f"first contentful paint, {BOARD_STREAMS} streams ({repeats} loads)": paint,
        "rows rendered": rows,
        "of which the server's answer (first byte)": server_time,
    }


def ingest(seconds: float, rounds: int = 3) -> dict:
    """Trades/s one collector takes at full speed with live candles, without and with the
    live feed; the two alternate, `rounds` times each, and the medians are shown."""
    import redis

    from collectors.factory import ExchangeFactory
    from collectors.hosting.live_candles import LiveCandles
    from collectors.manager import CollectorManager
    from collectors.storage.sink import StorageSink

    variants = {"live candles only (no Redis, no feed)": None}
    simulator = Simulator(rate=0, instruments=["DSHI-USDT"])
    client = redis.Redis.from_url(REDIS_URL)
    variants["live candles + live feed, published to Redis"] = client
    rates: dict[str, list[float]] = {label: [] for label in variants}
    try:
        for _ in range(rounds):
            for label, publish_to in variants.items():
                sink = StorageSink(name="bench-dashboard", buffer_size=5000, flush_interval=0.2)
                sink.start()
                live = LiveCandles(publish_to=publish_to)
                manager = CollectorManager(sink=sink)
                collector = ExchangeFactory.create_collector(simulator.config("DSHI-USDT"))
                manager.add_collector(collector)
                live.attach(collector)
                asyncio.run(manager.start())
                time.sleep(2)
                received0, t0 = collector.counters()["points"], time.monotonic()
                time.sleep(seconds)
                received1, t1 = collector.counters()["points"], time.monotonic()
                asyncio.run(manager.stop())
                live.stop()
                sink.stop()
                rates[label].append((received1 - received0) / (t1 - t0))
    finally:
        client.close()
        simulator.stop()
    figures = {
        label: f"median {statistics.median(found):,.0f} trades/s "
        f"(runs: {', '.join(f'{rate:,.0f}' for rate in found)})"
        for label, found in rates.items()
    }
    per_trade = feed_cost_per_trade()
    figures["the live feed's work per trade (its callback)"] = (
        f"{per_trade * 1e6:.2f} us, {per_trade * 45_000:.1%} of one core at 45,000 trades/s"
    )
    return figures


def feed_cost_per_trade(count: int = 200_000) -> float:
    """Seconds the feed's callback takes per trade (a point lands in its market's deque)."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from collectors.hosting.live_feed import MarketFeed
    from collectors.types import DataType, MarketDataPoint

    point = MarketDataPoint(
        "okx", "X-USDT", datetime.now(UTC), DataType.TRADE,
        {"trade_id": "1", "price": Decimal("1.5"), "size": Decimal(2), "side": "buy"},
    )  # fmt: skip
    feed = MarketFeed("okx", "X-USDT")
    add = feed.add_trade
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            add(point)
        best = min(best, (time.perf_counter() - started) / count)
    return best


def show(title: str, figures: dict) -> None:
    print(title)
    for name, value in figures.items():
        print(f"  {name}: {value}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    options = parser.parse_args()

    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command
    from playwright.sync_api import sync_playwright

    call_command("migrate", verbosity=0)
    print("(measured on a shared 2-core machine: other work may run meanwhile; indicative)")
    simulator = Simulator(rate=20, instruments=[SYMBOL])
    configure_markets(simulator)
    cookie = session_cookie()
    server = WebServer(DB_POOL="1", LOG_LEVEL="WARNING")
    collector = Collector(simulator)
    try:
        collector.start()
        with sync_playwright() as playwright:
            latency = browser_latency(playwright, server, collector, options.seconds)
        show("1. live candle in a real browser (1s candles):", latency)
        viewers = many_viewers(server, cookie, options.viewers, options.seconds, collector)
        show(
            f"2. {options.viewers} live viewers of one market (1s candles, trades, book):", viewers
        )
        with sync_playwright() as playwright:
            show("3. markets board first paint:", board_paint(playwright, server))
    finally:
        collector.stop()
        server.stop()
        simulator.stop()
    show("4. ingest at full speed, one collector:", ingest(min(options.seconds, 10.0)))
    drop_database(DB_NAME)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
