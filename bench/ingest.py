"""Ingest benchmark: exchange simulator (own process) -> one collector -> sink -> PostgreSQL.

Prints sustained trade messages/s received and trades/s stored at full speed, p50/p99
latency from the simulator's send time to the committed row at 1,000 messages/s, and
the collector process's memory with 1 and 11 collectors.

    .venv/bin/python bench/ingest.py [--exchange okx|binance] [--seconds 20]
        [--reader own|websocket-client]

--reader websocket-client has websocket-client read the frames (its recv_data_frame, with
skip_utf8_validation) instead of the collectors' ReadAheadSocket: the A/B comparison
behind keeping the reader (docs/collectors.md).

Uses (and drops) its own database, tcp_bench_ingest (BENCH_DATABASE_NAME), on the
PostgreSQL server at BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).

The sink commits in groups (collectors.storage.sink): at 1,000 messages/s each trade is
mostly committed on its own as it arrives; at full speed batches grow with the backlog.
The throughput part prints the sink's rows per batch, to show which of the two it saw.
The latency part also prints where a row's time goes: receive, wait, write (see latency()).
After the full-speed part the trade tables are vacuumed and a checkpoint written
(benchdb.settle): otherwise the latency part measures the autovacuum of the full-speed
part's rows (in one run here: p99 18.3 ms without this step, 3.8 ms with it), not a
collector at 1,000 messages/s. With --only latency the tables start empty, as on a new
install.
"""

import argparse
import asyncio
import os
import socket
import ssl
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import (  # noqa: E402
    drop_database,
    recreate_database,
    rss_mb,
    settle,
    use_database,
)
from simulated import (  # noqa: E402
    EXCHANGES,
    Simulator,
    collecting,
    full_speed_sink,
    latency_sink,
    percentiles,
    symbol,
)

DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "tcp_bench_ingest")
use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402
import websocket  # noqa: E402


class LibraryReader:
    """websocket-client reads the frames itself: the B side of --reader."""

    buffered = 0

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # websocket-client calls these on every frame: bound directly, not via __getattr__
        self.recv, self.send, self.sendall = sock.recv, sock.send, sock.sendall
        self.gettimeout, self.settimeout, self.fileno = (
            sock.gettimeout,
            sock.settimeout,
            sock.fileno,
        )

    def read_message(self, ws: websocket.WebSocket) -> tuple[int, bytes]:
        try:
            opcode, frame = ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            raise TimeoutError from None
        return opcode, frame.data

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def open_library_socket(url: str, timeout: float, max_message_bytes: int = 0) -> LibraryReader:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.scheme == "wss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
    return LibraryReader(sock)


def use_reader(reader: str) -> None:
    if reader == "websocket-client":
        import collectors.link

        collectors.link.open_socket = open_library_socket


def throughput(seconds: float, exchange: str) -> dict:
    from marketdata.models import RawTrade

    def stored() -> int:
        return RawTrade.objects.count()

    sink = full_speed_sink("bench-ingest")
    with (
        Simulator(0, [symbol(exchange, "BTC")], exchange) as simulator,
        collecting(simulator.config(symbol(exchange, "BTC")), sink) as collector,
    ):
        time.sleep(2)  # warm up
        received0, stored0, t0 = collector.counters()["points"], stored(), time.time()
        time.sleep(seconds)
        received1, stored1, t1 = collector.counters()["points"], stored(), time.time()
    stats = sink.stats()
    return {
        "trade messages/s received": (received1 - received0) / (t1 - t0),
        "trades/s stored": (stored1 - stored0) / (t1 - t0),
        "rows per batch": stats["trades_inserted"] / max(1, stats["batches"]),
        "sink stats": stats,
    }


def latency(seconds: float, rate: float, exchange: str) -> dict:
    """Exchange timestamp -> committed row. The simulator stamps a trade with its send time
    in whole milliseconds, so every figure carries up to 1 ms of that rounding (0.5 ms on
    average). Also where the time goes, per row: receive (exchange timestamp -> the sink's
    put, the rounding included), wait (put -> its batch's write begins: mostly the write
    before it) and write (the statement and its commit)."""
    latencies: list[float] = []
    batches: list[int] = []
    stages: dict[str, list[float]] = {"receive": [], "wait": [], "write": []}

    def committed(points, commit_time: float) -> None:
        batches.append(len(points))
        for point in points:
            latencies.append(commit_time - point.timestamp.timestamp())

    sink = timed_sink(latency_sink("bench-latency", committed), stages)
    with (
        Simulator(rate, [symbol(exchange, "BTC")], exchange) as simulator,
        collecting(simulator.config(symbol(exchange, "BTC")), sink),
    ):
        time.sleep(1)
        latencies.clear()
        batches.clear()
        for values in stages.values():
            values.clear()
        time.sleep(seconds)
    results = {**percentiles(latencies), "rows per batch": len(latencies) / max(1, len(batches))}
    for stage, values in stages.items():
        figures = percentiles(values)
        results[f"{stage} p50 / p99 ms"] = (figures["p50 ms"], figures["p99 ms"])
    return results


def timed_sink(sink, stages: dict[str, list[float]]):
    """`sink`, noting for each trade when put() got it and when its batch's write began and
    ended (stage times in seconds, appended to `stages`)."""
    put, commit = sink.put, sink._commit
    put_at: dict[str, tuple[float, float]] = {}

    def timed_put(points) -> None:
        now = time.time()
        points = list(points)
        for point in points:
            put_at[point.data["trade_id"]] = (point.timestamp.timestamp(), now)
        put(points)

    def timed_commit(batch):
        began = time.time()
        outcome = commit(batch)
        ended = time.time()
        for row in batch.rows:
            stamped, got = put_at.pop(row[2], (None, None))
            if stamped is not None:
                stages["receive"].append(got - stamped)
                stages["wait"].append(began - got)
                stages["write"].append(ended - began)
        return outcome

    sink.put, sink._commit = timed_put, timed_commit
    return sink


def memory(counts: tuple[int, ...], exchange: str) -> dict:
    from collectors.factory import ExchangeFactory
    from collectors.manager import CollectorManager
    from collectors.storage.sink import StorageSink

    symbols = [symbol(exchange, f"C{i}") for i in range(max(counts))]
    simulator = Simulator(20, symbols, exchange)
    sink = StorageSink(name="bench-memory")
    sink.start()
    results = {"process before collectors MB": rss_mb()}
    manager = CollectorManager(sink=sink, auto_restart=False)
    started = 0
    try:
        for count in counts:
            for name in symbols[started:count]:
                collector = ExchangeFactory.create_collector(simulator.config(name))
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
    parser.add_argument("--exchange", choices=sorted(EXCHANGES), default="okx")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--reader", choices=["own", "websocket-client"], default="own")
    parser.add_argument(
        "--only", choices=["throughput", "latency", "memory"], help="Run one part only."
    )
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    use_reader(args.reader)
    print(f"exchange: {args.exchange}, frame reader: {args.reader}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        if args.only in (None, "throughput"):
            print("full speed, one collector, trades only:")
            for name, value in throughput(args.seconds, args.exchange).items():
                shown = f"{value:,.0f}" if isinstance(value, float) else value
                print(f"  {name}: {shown}")
        if args.only in (None, "latency"):
            if args.only is None:
                settle(DB_NAME)  # the full-speed part's rows: vacuumed before, not during
            print("latency at 1,000 messages/s (simulator send -> committed row):")
            for name, value in latency(args.seconds, 1000, args.exchange).items():
                values = value if isinstance(value, tuple) else (value,)
                print(f"  {name}: {' / '.join(f'{v:,.1f}' for v in values)}")
        if args.only in (None, "memory"):
            print("memory (RSS of this process):")
            for name, value in memory((1, 11), args.exchange).items():
                print(f"  {name}: {value:,.1f}")
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
