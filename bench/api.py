"""API benchmark: p50/p99 latency of a page of 1,000 trades and of 1,440 1m candles.

PostgreSQL holds 5,000,000 trades (two symbols over ~29 days) and a month of 1m candles;
requests go through the whole stack: the web server as `make run` starts it (gunicorn, ASGI
workers) on loopback, token authentication, DRF, the selectors and the JSON renderer.
Targets: p99 under 50 ms for both.

    .venv/bin/python bench/api.py [--trades 5000000] [--requests 300]

Uses (and drops) its own database, tcp_bench_api, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import http.client
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import SERVER, WebServer, drop_database, recreate_database, use_database  # noqa: E402

DB_NAME = "tcp_bench_api"
use_database(DB_NAME, DB_POOL_SIZE="2", API_THROTTLE_USER="1000000/minute")

import django  # noqa: E402
import psycopg  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TRADE_SPACING = 0.5  # seconds between trades
DAYS_OF_CANDLES = 30

# One row per trade: 4 in 5 BTC-USDT, 1 in 5 ETH-USDT, with the raw OKX item as JSONB.
FILL_TRADES = """
INSERT INTO raw_trades
    (exchange, symbol, trade_id, price, size, side, timestamp, raw_data, created_at)
SELECT 'okx', s.symbol, i::text, 50000 + (i %% 1000) / 100.0, 0.001 + (i %% 7) / 1000.0,
       CASE WHEN i %% 2 = 0 THEN 'buy' ELSE 'sell' END, s.ts,
       jsonb_build_object('instId', s.symbol, 'tradeId', i::text, 'px', '50000.5',
                          'sz', '0.001', 'side', 'buy', 'ts', i::text),
       s.ts + interval '50 milliseconds'
FROM generate_series(1, %(count)s) AS i,
     LATERAL (SELECT CASE WHEN i %% 5 = 0 THEN 'ETH-USDT' ELSE 'BTC-USDT' END AS symbol,
                     %(t0)s::timestamptz + i * %(spacing)s * interval '1 second' AS ts) AS s
"""
FILL_CANDLES = """
INSERT INTO candles
    (exchange, symbol, timeframe, timestamp, open, high, low, close, volume, quote_volume,
     vwap, trade_count, is_final, created_at, updated_at)
SELECT 'okx', symbol, '1m', %(t0)s::timestamptz + m * interval '1 minute',
       50000, 50010.5, 49990, 50005, 1.234, 61700.5, 50001.25, 96, true,
       %(t0)s::timestamptz + m * interval '1 minute', %(t0)s::timestamptz + m * interval '1 minute'
FROM generate_series(1, %(minutes)s) AS m, unnest(ARRAY['BTC-USDT', 'ETH-USDT']) AS symbol
"""


def fill(trades: int) -> str:
    """The data, and a token for a user who may read it."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    started = time.perf_counter()
    with psycopg.connect(f"{SERVER}/{DB_NAME}", autocommit=True) as conn:
        conn.execute(FILL_TRADES, {"count": trades, "t0": T0, "spacing": TRADE_SPACING})
        conn.execute(FILL_CANDLES, {"t0": T0, "minutes": DAYS_OF_CANDLES * 1440})
        conn.execute("VACUUM ANALYZE raw_trades")
        conn.execute("VACUUM ANALYZE candles")
    print(
        f"filled {trades:,} trades and {DAYS_OF_CANDLES} days of 1m candles "
        f"in {time.perf_counter() - started:.0f} s"
    )
    user = get_user_model().objects.create_user("bench", password="a-long-password")
    return Token.objects.create(user=user).key


def fetch(port: int, path: str, token: str) -> tuple[float, dict]:
    """Seconds for one request, from connecting to the last byte, and the decoded body."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    return elapsed, json.loads(body)


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p50 = 1000 * statistics.median(ordered)
    p99 = 1000 * ordered[int(0.99 * (len(ordered) - 1))]
    return f"p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   ({len(ordered)} requests)"


def trade_pages(port: int, token: str, requests: int, span: timedelta) -> list[float]:
    """A page of 1,000 BTC-USDT trades from a random time, oldest first, half by cursor."""
    rng = random.Random(1)
    timings = []
    next_path = None
    for n in range(requests):
        if next_path is None or n % 2 == 0:
            start = T0 + span * rng.random() * 0.95
            query = {"exchange": "okx", "symbol": "BTC-USDT", "order": "asc", "limit": 1000}
            next_path = "/api/v1/trades/?" + urlencode({**query, "start": start.isoformat()})
        elapsed, body = fetch(port, next_path, token)
        assert len(body["results"]) == 1000, len(body["results"])
        next_path = body["next"].split(f":{port}", 1)[1]
        timings.append(elapsed)
    return timings


def candle_days(port: int, token: str, requests: int) -> list[float]:
    """One day of 1m candles (1,440 rows) of a random day."""
    rng = random.Random(2)
    timings = []
    for _ in range(requests):
        day = T0 + timedelta(days=rng.randrange(DAYS_OF_CANDLES - 1))
        query = {
            "exchange": "okx",
            "symbol": "BTC-USDT",
            "timeframe": "1m",
            "start": day.isoformat(),
            "end": (day + timedelta(days=1)).isoformat(),
            "limit": 1440,
        }
        elapsed, body = fetch(port, "/api/v1/candles/?" + urlencode(query), token)
        assert len(body["results"]) == 1440, len(body["results"])
        timings.append(elapsed)
    return timings


def plans() -> None:
    """How PostgreSQL runs the two queries: which index each one uses."""
    from marketdata import selectors
    from marketdata.api.serializers import CandleSerializer, TradeSerializer

    trades = selectors.trades(
        selectors.TradeFilter(exchange="okx", symbol="BTC-USDT", start=T0 + timedelta(days=3))
    )
    candles = selectors.candles(
        selectors.CandleFilter(
            exchange="okx",
            symbol="BTC-USDT",
            timeframe="1m",
            start=T0 + timedelta(days=3),
            end=T0 + timedelta(days=4),
        )
    )
    for name, queryset, columns, limit in (
        ("trades", trades, TradeSerializer.COLUMNS, 1000),
        ("candles", candles, CandleSerializer.COLUMNS, 1440),
    ):
        page = queryset.values(*columns)[: limit + 1]
        scans = [line.strip(" ->") for line in page.explain().splitlines() if "Scan" in line]
        print(f"{name} query: " + "; ".join(scans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    server = None
    try:
        token = fill(args.trades)
        plans()
        connections.close_all()
        server = WebServer(LOG_LEVEL="WARNING")
        span = timedelta(seconds=args.trades * TRADE_SPACING)
        trade_pages(server.port, token, 20, span)  # warm up both workers
        candle_days(server.port, token, 20)
        print(
            "page of 1,000 trades:      "
            + summary(trade_pages(server.port, token, args.requests, span))
        )
        print(
            "1,440 1m candles (a day):  " + summary(candle_days(server.port, token, args.requests))
        )
    finally:
        if server is not None:
            server.stop()
        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
