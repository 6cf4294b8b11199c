"""Candles benchmark: rebuild 1 day of 1m candles from 1,000,000 stored trades, read them back.

Prints the median and p99 of the time to rebuild one day of 1m candles from 1,000,000
trades in raw_trades (target: under 1 s) and of the time to fetch that day's 1,440 1m
candles (target: under 10 ms).

    .venv/bin/python bench/candles.py [--trades 1000000] [--rebuilds 7] [--fetches 1000]

Uses (and drops) its own database, tcp_bench_candles, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import SERVER, drop_database, recreate_database, use_database  # noqa: E402

DB_NAME = "tcp_bench_candles"
use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402
import psycopg  # noqa: E402

DAY = datetime(2024, 1, 2, tzinfo=UTC)
EXCHANGE, SYMBOL = "okx", "BTC-USDT"
REBUILD_TARGET = 1.0  # seconds
FETCH_TARGET = 0.010  # seconds


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def load_trades(count: int) -> float:
    """One day of trades, as a collector stores them: in time order, rising numeric ids."""
    rng = random.Random(1)
    moments = sorted(rng.randrange(86_400_000_000) for _ in range(count))
    price = 40_000_00  # cents
    started = time.perf_counter()
    with psycopg.connect(f"{SERVER}/{DB_NAME}") as conn, conn.cursor() as cursor:
        copy_sql = (
            "COPY raw_trades (exchange, symbol, trade_id, price, size, side, timestamp) FROM STDIN"
        )
        with cursor.copy(copy_sql) as copy:
            for number, micros in enumerate(moments):
                price = max(1, price + rng.randint(-50, 50))
                copy.write_row(
                    (
                        EXCHANGE,
                        SYMBOL,
                        str(100_000_000 + number),
                        f"{price // 100}.{price % 100:02d}",
                        f"0.{rng.randrange(1, 999_999):06d}",
                        "buy" if number % 2 else "sell",
                        DAY + timedelta(microseconds=micros),
                    )
                )
    elapsed = time.perf_counter() - started
    settle("raw_trades")
    return elapsed


def settle(table: str) -> None:
    """Vacuum and analyze now, so autovacuum does not compete with the measurements."""
    with psycopg.connect(f"{SERVER}/{DB_NAME}", autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {table}")


def rebuilds(repetitions: int) -> list[float]:
    from django.db import connection

    from marketdata.rollups import rebuild_candles

    times = []
    for _ in range(repetitions):
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE candles")
        started = time.perf_counter()
        written = rebuild_candles(
            "1m", DAY, DAY + timedelta(days=1), exchange=EXCHANGE, symbol=SYMBOL
        )
        times.append(time.perf_counter() - started)
        assert written == 1440, written
    return times


def fetches(repetitions: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU times; on a shared host the two tell load from cost apart."""
    from marketdata.candles import fetch_candles

    times, cpu_times = [], []
    for _ in range(repetitions):
        started, cpu_started = time.perf_counter(), time.process_time()
        candles = fetch_candles(EXCHANGE, SYMBOL, "1m", DAY, DAY + timedelta(days=1))
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
        assert len(candles) == 1440, len(candles)
    return times, cpu_times


def report(name: str, samples: list[float], target: float, unit: float, label: str) -> None:
    median, p99 = statistics.median(samples), percentile(samples, 0.99)
    verdict = "ok" if p99 < target else "OVER TARGET"
    print(
        f"  {name}: median {median * unit:,.1f} {label}, p99 {p99 * unit:,.1f} {label} "
        f"({len(samples)} runs; target p99 < {target * unit:,.0f} {label}: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--rebuilds", type=int, default=7)
    parser.add_argument("--fetches", type=int, default=1000)
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command

    from tcp_dashboard.runtime import freeze_startup_objects

    call_command("migrate", verbosity=0)
    try:
        seconds = load_trades(args.trades)
        print(f"stored {args.trades:,} trades for one day with COPY in {seconds:.1f} s")
        print("1m candles for one day:")
        report("rebuild from raw_trades", rebuilds(args.rebuilds), REBUILD_TARGET, 1, "s")
        settle("candles")
        # A long-running web or Celery worker process freezes its start-up objects
        # (tcp_dashboard/runtime.py), so full collections do not walk the ~100,000 objects
        # Django and its imports leave; measured both ways to show why.
        times, cpu_times = fetches(args.fetches)
        report("fetch 1,440 candles, start-up objects not frozen", times, FETCH_TARGET, 1000, "ms")
        report("  of which this process's CPU", cpu_times, FETCH_TARGET, 1000, "ms")
        print(f"  objects frozen as the served processes do: {freeze_startup_objects():,}")
        times, cpu_times = fetches(args.fetches)
        report("fetch 1,440 candles, as served", times, FETCH_TARGET, 1000, "ms")
        report("  of which this process's CPU", cpu_times, FETCH_TARGET, 1000, "ms")
        print(f"load average over the last minute: {os.getloadavg()[0]:.2f}")
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
