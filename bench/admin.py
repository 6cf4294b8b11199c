"""Admin benchmark: every list, filter, search and page of the market-data admin, timed on
large tables. Target: each under 1 s at 50,000,000 trades.

The throw-away database holds N trades over the last 30 days (daily partitions, 19 busy
pairs on two exchanges and one configured pair with no data), N/2 order books and tickers
and N/10 candles. Each page is fetched as a signed-in superuser through Django's whole
request path (middleware, admin views, templates), three times; the slowest of the three
is reported with the database's share of it, and the slowest page last.

    .venv/bin/python bench/admin.py [--rows 50000000] [--keep]

Uses (and drops, unless --keep) its own database, tcp_bench_admin, on the PostgreSQL server
at BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import SERVER, drop_database, recreate_database, use_database  # noqa: E402

DB_NAME = "tcp_bench_admin"
use_database(DB_NAME, DB_POOL="false", ALLOWED_HOSTS="testserver", REDIS_URL="")

import django  # noqa: E402
import psycopg  # noqa: E402

DAYS = 30
PAIRS = 19  # with data; pair 19 is configured and has none
RUNS = 3


def symbol(exchange: str, number: int) -> str:
    return f"SYM{number:02d}-USDT" if exchange == "okx" else f"SYM{number:02d}USDT"


# Pair k of 19: okx for even k, binance for odd k; rows spread evenly over the span.
PAIR_OF_ROW = f"""
    CASE WHEN (i %% {PAIRS}) %% 2 = 0 THEN 'okx' ELSE 'binance' END AS exchange,
    'SYM' || lpad((i %% {PAIRS})::text, 2, '0')
        || CASE WHEN (i %% {PAIRS}) %% 2 = 0 THEN '-USDT' ELSE 'USDT' END AS symbol
"""
FILL_TRADES = f"""
INSERT INTO raw_trades (exchange, symbol, trade_id, price, size, side, timestamp, raw_data,
                        created_at)
SELECT p.exchange, p.symbol, i::text, 50000 + (i %% 1000) / 100.0, 0.001,
       CASE WHEN i %% 2 = 0 THEN 'buy' ELSE 'sell' END, t.ts,
       jsonb_build_object('tradeId', i::text, 'px', '50000.5', 'sz', '0.001'),
       t.ts + interval '20 milliseconds'
FROM generate_series(1, %(count)s) AS i,
     LATERAL (SELECT {PAIR_OF_ROW}) AS p,
     LATERAL (SELECT %(end)s::timestamptz - (%(count)s - i) * %(spacing)s * interval '1 second'
              AS ts) AS t
"""
FILL_MARKET_DATA = f"""
INSERT INTO market_data (exchange, symbol, data_type, timestamp, data, created_at)
SELECT p.exchange, p.symbol, CASE WHEN i %% 3 = 0 THEN 'ticker' ELSE 'orderbook' END, t.ts,
       jsonb_build_object('last', '50000.5', 'seq', i), t.ts + interval '20 milliseconds'
FROM generate_series(1, %(count)s) AS i,
     LATERAL (SELECT {PAIR_OF_ROW}) AS p,
     LATERAL (SELECT %(end)s::timestamptz - (%(count)s - i) * %(spacing)s * interval '1 second'
              AS ts) AS t
"""
# One candle per pair per second (1s), every tenth one a 1m candle: unique per pair,
# timeframe and time because each block of 19 rows holds each pair once.
FILL_CANDLES = f"""
INSERT INTO candles (exchange, symbol, timeframe, timestamp, open, high, low, close, volume,
                     quote_volume, vwap, trade_count, is_final, created_at, updated_at)
SELECT p.exchange, p.symbol, CASE WHEN (i / {PAIRS}) %% 10 = 0 THEN '1m' ELSE '1s' END, t.ts,
       50000, 50010.5, 49990, 50005, 1.234, 61700.5, 50001.25, 96, (i %% 7) <> 0, t.ts, t.ts
FROM generate_series(1, %(count)s) AS i,
     LATERAL (SELECT {PAIR_OF_ROW}) AS p,
     LATERAL (SELECT date_trunc('second', %(end)s::timestamptz)
                     - (i / {PAIRS}) * interval '1 second' AS ts) AS t
"""


def prepare(rows: int, end: datetime) -> None:
    """Configuration, daily partitions and the rows."""
    from collectors.models import Exchange, TradingPair
    from marketdata.partitions import DAILY_TABLES, create_partition

    for name in ("okx", "binance"):
        exchange = Exchange.objects.create(name=name, public_ws_url=f"wss://{name}.example/ws")
        TradingPair.objects.bulk_create(
            TradingPair(exchange=exchange, symbol=symbol(name, k))
            for k in range(PAIRS + 1)
            if (k % 2 == 0) == (name == "okx") or k == PAIRS
        )
    for table in DAILY_TABLES:
        for back in range(-2, DAYS + 2):
            create_partition(table, (end - timedelta(days=back)).date())
    span = DAYS * 86400 - 60
    started = time.perf_counter()
    with psycopg.connect(f"{SERVER}/{DB_NAME}", autocommit=True) as conn:
        for statement, count in (
            (FILL_TRADES, rows),
            (FILL_MARKET_DATA, rows // 2),
            (FILL_CANDLES, rows // 10),
        ):
            conn.execute(statement, {"count": count, "end": end, "spacing": span / count})
            print(f"  {count:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        for table in ("raw_trades", "market_data", "candles"):
            conn.execute(f"VACUUM ANALYZE {table}")
    print(f"filled and analysed in {time.perf_counter() - started:.0f} s", flush=True)


def pages() -> list[str]:
    okx, binance, empty = "okx:SYM04-USDT", "binance:SYM07USDT", f"okx:SYM{PAIRS}-USDT"
    found = []
    for model, kind_filter in (
        ("rawtrade", {"side": "buy"}),
        ("marketdata", {"data_type": "ticker"}),
        ("candle", {"timeframe": "1s"}),
    ):
        base = f"/admin/marketdata/{model}/"
        queries = [
            {},
            {"p": "2"},
            {"p": "99"},
            {"o": "0"},
            {"within": "1h"},
            {"within": "30d"},
            {"pair": okx},
            {"pair": binance, "o": "0"},
            {"pair": empty},
            kind_filter,
            {"pair": okx, **kind_filter},
            {"pair": empty, **kind_filter},
            {"q": "SYM04-USDT"},
            {"q": "binance SYM07USDT"},
            {"q": "NOPE-USDT"},
            {"q": "SYM04-USDT", **kind_filter, "within": "1d"},
        ]
        if model == "rawtrade":
            queries += [{"q": "SYM04-USDT 1004"}, {"q": "okx SYM04-USDT 999999999"}]
        found += [base + ("?" + urlencode(query) if query else "") for query in queries]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="trades (default 50M)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="time a database kept before")
    args = parser.parse_args()
    if not args.reuse:
        recreate_database(DB_NAME)
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from marketdata.models import RawTrade

    call_command("migrate", verbosity=0)
    try:
        if args.reuse:
            end = RawTrade.objects.order_by("-timestamp").values_list("timestamp", flat=True)[0]
            user = get_user_model().objects.get(username="bench")
        else:
            end = datetime.now(UTC)
            prepare(args.rows, end)
            user = get_user_model().objects.create_superuser("bench", password="a-long-pw-1")
        client = Client()
        client.force_login(user)
        some_trade = RawTrade.objects.filter(timestamp__gte=end - timedelta(hours=1)).first()
        urls = [*pages(), f"/admin/marketdata/rawtrade/{some_trade.pk}/change/"]
        for url in ("/admin/", urls[0]):  # templates compiled, URLs imported: not timed
            client.get(url)
        timings = {}
        for url in urls:
            seconds, database = [], []
            for _ in range(RUNS):
                started = time.perf_counter()
                with CaptureQueriesContext(connection) as queries:
                    response = client.get(url)
                seconds.append(time.perf_counter() - started)
                database.append(sum(float(query["time"]) for query in queries.captured_queries))
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code}")
            timings[url] = seconds
            median = statistics.median(seconds) * 1000
            print(
                f"{max(seconds) * 1000:8.0f} ms  (median {median:4.0f}, in the database "
                f"{max(database) * 1000:4.0f})  {url}",
                flush=True,
            )
        slowest = max(timings, key=lambda url: max(timings[url]))
        print(
            f"{len(urls)} pages, {args.rows:,} trades, {args.rows // 2:,} market data rows, "
            f"{args.rows // 10:,} candles; slowest {max(timings[slowest]) * 1000:.0f} ms: {slowest}"
        )
    finally:
        connections.close_all()
        if not args.keep:
            drop_database(DB_NAME)


if __name__ == "__main__":
    main()
