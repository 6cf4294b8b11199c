"""Ingest benchmark: OKX simulator (own process) -> one collector -> storage sink -> PostgreSQL.

Prints sustained trade messages/s received and trades/s stored at full speed, p50/p99
latency from the simulator's send time to the committed row at 1,000 messages/s, and
the collector process's memory with 1 and 11 collectors.

    .venv/bin/python bench/ingest.py [--seconds 20]

Uses (and drops) its own database, tcp_bench_ingest, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import (  # noqa: E402
    Simulator,
    drop_database,
    recreate_database,
    rss_mb,
    use_database,
)

DB_NAME = "tcp_bench_ingest"
use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402


def throughput(seconds: float) -> dict:
    from collectors.factory import ExchangeFactory
    from collectors.storage import StorageSink
    from marketdata.models import RawTrade

    def stored() -> int:
        return RawTrade.objects.count()

    simulator = Simulator(rate=0, instruments=["BTC-USDT"])
    sink = StorageSink(name="bench-ingest", buffer_size=5000, flush_interval=0.2)
    sink.start()
    collector = ExchangeFactory.create_collector(simulator.config("BTC-USDT"))
    collector.sink = sink
    try:
        asyncio.run(collector.start())
        time.sleep(2)  # warm up
        received0, stored0, t0 = collector.counters()["points"], stored(), time.time()
        time.sleep(seconds)
        received1, stored1, t1 = collector.counters()["points"], stored(), time.time()
        asyncio.run(collector.stop())
    finally:
        sink.stop()
        simulator.stop()
    return {
        "trade messages/s received": (received1 - received0) / (t1 - t0),
        "trades/s stored": (stored1 - stored0) / (t1 - t0),
        "sink stats": sink.stats(),
    }


def latency(seconds: float, rate: float) -> dict:
    from collectors.factory import ExchangeFactory
    from collectors.storage import StorageSink

    latencies: list[float] = []

    def committed(points, commit_time: float) -> None:
        for point in points:
            latencies.append(commit_time - point.timestamp.timestamp())

    simulator = Simulator(rate=rate, instruments=["BTC-USDT"])
    sink = StorageSink(name="bench-latency", buffer_size=1000, on_commit=committed)
    sink.start()
    collector = ExchangeFactory.create_collector(simulator.config("BTC-USDT"))
    collector.sink = sink
    try:
        asyncio.run(collector.start())
        time.sleep(1)
        latencies.clear()
        time.sleep(seconds)
        asyncio.run(collector.stop())
    finally:
        sink.stop()
        simulator.stop()
    ordered = sorted(latencies)
    return {
        "rows": len(ordered),
        "p50 ms": 1000 * statistics.median(ordered),
        "p99 ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


def memory(counts: tuple[int, ...]) -> dict:
    from collectors.factory import ExchangeFactory
    from collectors.manager import CollectorManager
    from collectors.storage import StorageSink

    symbols = [f"C{i}-USDT" for i in range(max(counts))]
    simulator = Simulator(rate=20, instruments=symbols)
    sink = StorageSink(name="bench-memory")
    sink.start()
    results = {"process before collectors MB": rss_mb()}
    manager = CollectorManager(sink=sink, check_interval=3600)
    started = 0
    try:
        for count in counts:
            for symbol in symbols[started:count]:
                collector = ExchangeFactory.create_collector(simulator.config(symbol))
                manager.add_collector(collector)
                asyncio.run(collector.start())
            started = count
            time.sleep(5)
            results[f"process with {count} collectors MB"] = rss_mb()
        asyncio.run(manager.stop())
    finally:
        sink.stop()
        simulator.stop()
    first, last = counts[0], counts[-1]
    low, high = (results[f"process with {n} collectors MB"] for n in (first, last))
    extra = high - low
    results["extra MB per additional collector"] = extra / (last - first)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        print("full speed, one collector, trades only:")
        for name, value in throughput(args.seconds).items():
            print(f"  {name}: {value:,.0f}" if isinstance(value, float) else f"  {name}: {value}")
        print("latency at 1,000 messages/s (simulator send -> committed row):")
        for name, value in latency(args.seconds, 1000).items():
            print(f"  {name}: {value:,.1f}")
        print("memory (RSS of this process):")
        for name, value in memory((1, 11)).items():
            print(f"  {name}: {value:,.1f}")
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
