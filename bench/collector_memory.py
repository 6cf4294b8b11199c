"""Memory of one collector worker (Celery, threads pool) hosting 1, 10 and 50 collectors.

The OKX simulator runs in its own process with 50 instruments; the health check
(reconcile) starts the enabled pairs on a real `celery worker -Q collectors`, and the
worker's resident memory (VmRSS) is read once its collectors have run for a while.

    .venv/bin/python bench/collector_memory.py [--rate 5] [--settle 10]

Uses (and drops) its own database, tcp_bench_collector_memory, on BENCH_DATABASE_SERVER
(default postgresql://postgres@127.0.0.1:5432), and Redis BENCH_REDIS_URL (default
redis://127.0.0.1:6379/13).
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import (  # noqa: E402
    drop_database,
    free_port,
    recreate_database,
    rss_mb,
    use_database,
)

DB_NAME = "tcp_bench_collector_memory"
use_database(
    DB_NAME,
    DB_POOL="0",
    REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
)

import django  # noqa: E402

COUNTS = (1, 10, 50)
WORKER = "bench-memory@localhost"
WORKER_OPTIONS = ["-Q", "collectors", "-n", WORKER, "--pool", "threads", "--concurrency", "4"]
WORKER_OPTIONS += ["--without-mingle", "--without-gossip", "--loglevel", "WARNING"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def start_simulator(port: int, rate: float, symbols: list[str]) -> subprocess.Popen:
    arguments = ["simulate_exchange", "okx", "--port", str(port), "--rate", str(rate)]
    instruments = ["--seed", "1", "--instruments", ",".join(symbols)]
    process = subprocess.Popen(
        [sys.executable, "manage.py", *arguments, *instruments],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    wait_for(listening, 30, "the simulator")
    return process


def start_worker(log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tcp_dashboard", "worker", *WORKER_OPTIONS],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def configure(port: int, symbols: list[str]) -> None:
    from collectors.models import Exchange, TradingPair

    exchange = Exchange.objects.create(
        name="okx",
        public_ws_url=f"ws://127.0.0.1:{port}/ws/v5/public",
        rest_url=f"http://127.0.0.1:{port}",
        health_check_interval=5.0,
    )
    for symbol in symbols:
        TradingPair.objects.create(
            exchange=exchange, symbol=symbol, enabled=False, data_types=["trade"]
        )


def hosted(client) -> list[str]:
    from collectors.hosting.heartbeat import read_workers

    beat = read_workers(client).get(WORKER)
    return beat.streams if beat else []


def measure(worker: subprocess.Popen, symbols: list[str], settle: float) -> list[tuple]:
    from collectors.hosting.leases import redis_client
    from collectors.hosting.reconcile import reconcile
    from collectors.models import TradingPair
    from marketdata.models import RawTrade
    from tcp_dashboard.celery import app

    client = redis_client()
    wait_for(lambda: app.control.ping([WORKER], timeout=0.5), 60, "the worker")
    time.sleep(settle)
    rows = [(0, rss_mb(worker.pid), 0)]
    for count in COUNTS:
        TradingPair.objects.filter(symbol__in=symbols[:count]).update(enabled=True)
        reconcile(client)
        wait_for(lambda n=count: len(hosted(client)) == n, 60, f"{count} collectors")
        time.sleep(settle)
        collecting = RawTrade.objects.values("symbol").distinct().count()
        rows.append((count, rss_mb(worker.pid), collecting))
    TradingPair.objects.update(enabled=False)
    reconcile(client)
    wait_for(lambda: not hosted(client), 60, "the collectors to stop")
    return rows


def report(rows: list[tuple]) -> None:
    base = rows[0][1]
    print("collector worker memory (VmRSS of the worker process):")
    print(f"  {'collectors':>10}  {'RSS MB':>8}  {'MB each over idle':>18}  {'symbols stored':>14}")
    for count, mb, collecting in rows:
        per = f"{(mb - base) / count:.2f}" if count else "-"
        print(f"  {count:>10}  {mb:>8.1f}  {per:>18}  {collecting:>14}")
    (c1, m1, _), (cn, mn, _) = rows[1], rows[-1]
    print(f"  each collector beyond the first: {(mn - m1) / (cn - c1):.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="Trades/s per instrument.")
    parser.add_argument("--settle", type=float, default=10.0, help="Seconds before reading RSS.")
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    symbols = [f"C{i:02d}-USDT" for i in range(max(COUNTS))]
    port = free_port()
    simulator = start_simulator(port, args.rate, symbols)
    worker = None
    try:
        configure(port, symbols)
        worker = start_worker(ROOT / "var" / "bench-collector-memory.log")
        report(measure(worker, symbols, args.settle))
    finally:
        for process in (worker, simulator):
            if process is not None:
                process.terminate()
                process.wait(60)
        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
