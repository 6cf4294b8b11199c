"""Benchmark: rows/s of StorageSink into PostgreSQL, for trades and for market data.

Puts 200,000 points in collector-sized chunks and flushes; the time runs from the first
put() to the end of flush(), so it includes converting the points. Median of 3 runs.
Uses its own database, tcp_bench_storage, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432), created with
migrations and dropped at the end.
"""

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import drop_database, recreate_database, use_database  # noqa: E402

DB_NAME = "tcp_bench_storage"
ROWS = 200_000
RUNS = 3
CHUNK = 100  # points per put(), about what a collector delivers at a time

use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from collectors.storage.sink import StorageSink  # noqa: E402
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
    recreate_database(DB_NAME)
    call_command("migrate", verbosity=0)
    try:
        with tempfile.TemporaryDirectory() as spill_dir:
            print(f"StorageSink into PostgreSQL, {ROWS:,} rows, put() in chunks of {CHUNK}")
            measure("trades (COPY into raw_trades)", trades(ROWS), Path(spill_dir))
            measure("market data (market_data, COPY)", tickers(ROWS), Path(spill_dir))
    finally:
        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
