"""Benchmark: rows/s of StorageSink into PostgreSQL, for trades and for market data.

Puts 200,000 points in collector-sized chunks and flushes; the time runs from the first
put() to the end of flush(), so it includes converting the points. Median of 3 runs.
Uses its own database, tcp_bench_storage, on the server of DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432), created with migrations and dropped at the end.
"""

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DATABASE = "tcp_bench_storage"
ROWS = 200_000
RUNS = 3
CHUNK = 100  # points per put(), about what a collector delivers at a time


def bench_database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgresql://postgres@127.0.0.1:5432/"
    return urlunsplit(urlsplit(url)._replace(path=f"/{BENCH_DATABASE}"))


os.environ["DATABASE_URL"] = bench_database_url()
os.environ["DB_POOL"] = "0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from collectors.storage import StorageSink, postgres_connection_params  # noqa: E402
from collectors.types import DataType, MarketDataPoint  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def trades(count: int) -> list[MarketDataPoint]:
    points = []
    for n in range(count):
        price = Decimal("42000.1") + Decimal(n % 1000) / 100
        size = Decimal("0.0015")
        side = "buy" if n % 2 else "sell"
        timestamp = T0 + timedelta(milliseconds=n)
        raw = {
            "instId": "BTC-USDT",
            "tradeId": str(n),
            "px": str(price),
            "sz": str(size),
            "side": side,
            "ts": str(int(timestamp.timestamp() * 1000)),
        }
        data = {"trade_id": str(n), "price": price, "size": size, "side": side, "raw": raw}
        points.append(MarketDataPoint("okx", "BTC-USDT", timestamp, DataType.TRADE, data))
    return points


def tickers(count: int) -> list[MarketDataPoint]:
    points = []
    for n in range(count):
        last = Decimal("42000.1") + Decimal(n % 1000) / 100
        data = {
            "last": last,
            "last_size": Decimal("0.01"),
            "best_bid": last - Decimal("0.1"),
            "best_ask": last + Decimal("0.1"),
            "volume_24h": Decimal("12345.678"),
        }
        timestamp = T0 + timedelta(milliseconds=n)
        points.append(MarketDataPoint("okx", "BTC-USDT", timestamp, DataType.TICKER, data))
    return points


def admin_connection() -> psycopg.Connection:
    params = postgres_connection_params(
        {**settings.DATABASES["default"], "NAME": "postgres"}, "bench"
    )
    return psycopg.connect(**params, autocommit=True)


def create_database() -> None:
    with admin_connection() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    call_command("migrate", verbosity=0)


def drop_database() -> None:
    connections.close_all()
    with admin_connection() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")


def truncate() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("TRUNCATE raw_trades, market_data")


def one_run(points: list[MarketDataPoint], spill_dir: Path) -> float:
    truncate()
    sink = StorageSink(name="bench", spill_dir=spill_dir)
    sink.start()
    started = time.perf_counter()
    for start in range(0, len(points), CHUNK):
        sink.put(points[start : start + CHUNK])
    if not sink.flush(timeout=600):
        raise RuntimeError(f"flush timed out: {sink.stats()}")
    elapsed = time.perf_counter() - started
    sink.stop()
    stats = sink.stats()
    stored = stats["trades_inserted"] + stats["market_data_inserted"]
    if stored != len(points) or stats["spilled_rows"]:
        raise RuntimeError(f"expected {len(points)} rows stored without spilling: {stats}")
    return len(points) / elapsed


def measure(label: str, points: list[MarketDataPoint], spill_dir: Path) -> None:
    rates = [one_run(points, spill_dir) for _ in range(RUNS)]
    runs = ", ".join(f"{rate:,.0f}" for rate in rates)
    print(f"{label}: {statistics.median(rates):,.0f} rows/s (median of {RUNS}: {runs})")


def main() -> None:
    create_database()
    try:
        with tempfile.TemporaryDirectory() as spill_dir:
            print(f"StorageSink into PostgreSQL, {ROWS:,} rows, put() in chunks of {CHUNK}")
            measure("trades (raw_trades, COPY + INSERT ON CONFLICT)", trades(ROWS), Path(spill_dir))
            measure("market data (market_data, COPY)", tickers(ROWS), Path(spill_dir))
    finally:
        drop_database()


if __name__ == "__main__":
    main()
