"""Benchmark: storage growth of one trading pair, in PostgreSQL and in the Parquet archive;
archive formats tried for order books; the size curve over two years; ingest latency while
retention runs.

The profile: one OKX pair (BTC-USDT) from the local simulator, as a busy pair looks:
trades 2/s plus a burst of 60 every minute (3/s on average), books5 ~10/s (the quotes move
40 times a second; books5 is pushed at most every 100 ms, when its top 5 levels changed),
tickers 1/s, candle1m (pushed about once a second while the minute's candle changes), and
the live candles the platform builds from the trades (1s, 1m, 5m, 15m, 1h, 4h, 1d). One
collector stores them for --seconds (150 by default; longer is more representative).

1. Live: the rows stored per kind, their rates, and the send-to-commit latency.
2. PostgreSQL bytes per day: the live rows of each kind are copied, with new ids and
   timestamps, until they fill one hour of a day partition at the live rate; that hour's
   heap, indexes and TOAST (and for trades the growth of raw_trade_keys) times 24.
3. Archive bytes per day: the live rows written by the archive writer (Parquet, zstd),
   bytes per row times rows per day; and for order books the other formats tried.
4. The curve: database and archive size by day, from those figures and the retention
   windows (RETENTION_DAYS): the database stops growing once every hot window is full.
5. Retention under load: ten days of old rows are archived and dropped (by
   `manage.py apply_retention`, in its own process as the Celery task runs on a worker of
   its own) while a collector stores 200 trades/s and books5; send-to-commit latency
   before and during the run.

    .venv/bin/python bench/storage_growth.py [--seconds 150]

Uses (and drops) its own database, tcp_bench_growth, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432), and a temporary
ARCHIVE_DIR.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import drop_database, recreate_database, use_database  # noqa: E402

DB_NAME = "tcp_bench_growth"
ARCHIVE = tempfile.TemporaryDirectory(prefix="bench-archive-")
use_database(DB_NAME, DB_POOL="0", ARCHIVE_DIR=ARCHIVE.name)

import django  # noqa: E402

django.setup()

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from collectors.factory import ExchangeFactory  # noqa: E402
from collectors.hosting.live_candles import LiveCandles  # noqa: E402
from collectors.manager import CollectorManager  # noqa: E402
from collectors.simulators.okx import OkxSimulator  # noqa: E402
from collectors.storage.sink import StorageSink  # noqa: E402
from collectors.types import DataType, ExchangeCollectorConfig  # noqa: E402
from marketdata import archive, partitions  # noqa: E402
from marketdata.footprint import database_bytes, size_text  # noqa: E402
from marketdata.kinds import KINDS  # noqa: E402

SYMBOL = "BTC-USDT"
TRADE_RATE = 2.0
BURST = 60  # trades, once a minute
QUOTE_RATE = 40.0
DAY_SECONDS = 86_400
MONTH_DAYS = 30
SAMPLE_DAY = date(2024, 1, 1)  # the day partition the copied hour goes to
KIND_ROWS = {
    "trade": ("raw_trades", None),
    "orderbook": ("market_data", "orderbook"),
    "ticker": ("market_data", "ticker"),
    "candle": ("market_data", "candle"),
}
CANDLES_PER_DAY = 1440 + 288 + 96 + 24 + 6 + 1
CANDLE_KINDS = {"candles": "timeframe <> '1s'", "candles_1s": "timeframe = '1s'"}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Collecting:
    """The simulator and one collector (with live candles) storing into the database."""

    def __init__(self, rate: float, data_types: list[DataType], candles: bool) -> None:
        self.latencies: list[tuple[float, float]] = []  # (commit time, seconds since sent)
        self.simulator = OkxSimulator(seed=1, rate=rate, quote_rate=QUOTE_RATE)
        self.simulator.start()
        self.sink = StorageSink(name="bench-growth", on_commit=self.committed)
        self.sink.start()
        config = ExchangeCollectorConfig(
            "okx",
            SYMBOL,
            data_types,
            custom_params={
                "public_ws_url": self.simulator.public_url,
                "business_ws_url": self.simulator.business_url,
                "rest_url": self.simulator.rest_url,
                "channels": {
                    "trades": "trades",
                    "orderbook": "books5",
                    "ticker": "tickers",
                    "candle": "candle1m",
                },
            },
        )
        self.manager = CollectorManager(sink=self.sink)
        collector = ExchangeFactory.create_collector(config)
        self.manager.add_collector(collector)
        self.live_candles = LiveCandles(publish_to=None) if candles else None
        if self.live_candles is not None:
            self.live_candles.attach(collector)
        self.stopping = threading.Event()

    def committed(self, points, commit_time: float) -> None:
        for point in points:
            if point.data_type is DataType.TRADE:
                self.latencies.append((commit_time, commit_time - point.timestamp.timestamp()))

    def start(self) -> None:
        if not asyncio.run(self.manager.start()):
            raise RuntimeError("the collector did not connect")

    def bursts(self) -> None:
        while not self.stopping.wait(60):
            self.simulator.fault("burst", count=BURST, inst_id=SYMBOL)

    def stop(self) -> None:
        self.stopping.set()
        asyncio.run(self.manager.stop())
        if self.live_candles is not None:
            self.live_candles.stop()
        self.sink.flush(30)
        self.sink.stop()
        self.simulator.stop()


def count_rows(since: datetime) -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for kind, (table, data_type) in KIND_ROWS.items():
            where = "" if data_type is None else f"AND data_type = '{data_type}'"
            cursor.execute(f"SELECT count(*) FROM {table} WHERE timestamp >= %s {where}", [since])
            counts[kind] = cursor.fetchone()[0]
        for kind, where in CANDLE_KINDS.items():
            cursor.execute(f"SELECT count(*) FROM candles WHERE {where}")
            counts[kind] = cursor.fetchone()[0]
    return counts


# 2. PostgreSQL bytes per day ---------------------------------------------------------


def relation_bytes(relations: list[str]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(r)), 0) FROM unnest(%s::regclass[]) r",
            [relations],
        )
        return int(cursor.fetchone()[0])


def copy_hour(kind: str, rows_per_hour: int, since: datetime, day: date, into: str = "") -> None:
    """Copy the live rows of a kind into the first hour of `day` until they fill it (into
    table `into` instead of the kind's own, if given)."""
    table, data_type = KIND_ROWS.get(kind, ("candles", None))
    low = datetime.combine(day, datetime.min.time(), UTC)
    tag = f"-{day:%Y%m%d}-"
    with connection.cursor() as cursor:
        if table == "raw_trades":
            columns = "exchange, symbol, trade_id, price, size, side, timestamp, raw_data"
            source = f"SELECT {columns} FROM raw_trades WHERE timestamp >= %(since)s"
            shifted = columns.replace("trade_id", f"trade_id || '{tag}' || n")
        elif table == "market_data":
            columns = "exchange, symbol, data_type, timestamp, data"
            source = (
                f"SELECT {columns} FROM market_data WHERE timestamp >= %(since)s "
                f"AND data_type = '{data_type}'"
            )
            shifted = columns
        else:
            columns = (
                "exchange, symbol, timeframe, timestamp, open, high, low, close, volume, "
                "quote_volume, vwap, trade_count, is_final"
            )
            source = f"SELECT {columns} FROM candles WHERE {CANDLE_KINDS[kind]}"
            shifted = columns.replace("symbol", f"symbol || '{tag}' || n")
        cursor.execute(f"SELECT count(*) FROM ({source}) s", {"since": since})
        sample = cursor.fetchone()[0]
        copies = max(1, round(rows_per_hour / max(sample, 1)))
        cursor.execute(
            f"""INSERT INTO {into or table} ({columns})
            SELECT {shifted.replace("timestamp", SHIFTED)}
            FROM ({source}) s, (SELECT min(timestamp) AS t FROM ({source}) x) first,
                 generate_series(0, %(k)s - 1) n""",
            {"since": since, "low": low, "k": copies},
        )


# The tables as the spec has them and as they were before partitioning: the "before".
PLAIN_TABLES = """
CREATE TABLE bench_plain_trades (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, exchange varchar(50) NOT NULL,
    symbol varchar(50) NOT NULL, trade_id varchar(100), price numeric(20, 8) NOT NULL,
    size numeric(20, 8) NOT NULL, side varchar(10) NOT NULL,
    timestamp timestamptz NOT NULL, raw_data jsonb, created_at timestamptz DEFAULT now(),
    UNIQUE (exchange, symbol, trade_id));
CREATE INDEX ON bench_plain_trades (exchange, symbol, timestamp);
CREATE INDEX ON bench_plain_trades (timestamp);
CREATE TABLE bench_plain_market (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, exchange varchar(50) NOT NULL,
    symbol varchar(50) NOT NULL, data_type varchar(20) NOT NULL,
    timestamp timestamptz NOT NULL, data jsonb NOT NULL, created_at timestamptz DEFAULT now());
CREATE INDEX ON bench_plain_market (exchange, symbol, timestamp);
CREATE INDEX ON bench_plain_market (data_type, timestamp);
"""
PLAIN = {"trade": "bench_plain_trades"}


SHIFTED = "%(low)s + (s.timestamp - first.t) + n * (interval '1 hour' / %(k)s)"


def database_bytes_per_day(rates: dict[str, float], since: datetime) -> dict[str, tuple]:
    """Per kind: (bytes a day now, bytes a day in the tables as they were before)."""
    for table in partitions.DAILY_TABLES:
        partitions.create_partition(table, SAMPLE_DAY)
    with connection.cursor() as cursor:
        cursor.execute(PLAIN_TABLES)
    per_day = {}
    for kind, rate in rates.items():
        rows_per_hour = round(rate * 3600)
        if kind in KIND_ROWS:
            table = partitions.DAILY_TABLE_OF_KIND[kind].partition(SAMPLE_DAY)
            measured = [table, "raw_trade_keys"] if kind == "trade" else [table]
            plain = PLAIN.get(kind, "bench_plain_market")
        else:
            measured, plain = ["candles"], None
        before = relation_bytes(measured)
        copy_hour(kind, rows_per_hour, since, SAMPLE_DAY)
        now = (relation_bytes(measured) - before) * 24
        if plain is None:
            per_day[kind] = (now, now)
            continue
        before = relation_bytes([plain])
        copy_hour(kind, rows_per_hour, since, SAMPLE_DAY, into=plain)
        per_day[kind] = (now, (relation_bytes([plain]) - before) * 24)
    return per_day


# 3. archive bytes per day and the formats tried for order books ----------------------


def archive_bytes_per_row(since: datetime) -> dict[str, float]:
    """Bytes per row of each archived kind, as the archive writer writes the live rows,
    less the fixed cost of a file (its footer and metadata, measured with one row)."""
    per_row = {}
    today = datetime.now(UTC).date()
    for kind in ("trade", "orderbook", "ticker", "candle", "candles"):
        start = since if kind != "candles" else datetime(2000, 1, 1, tzinfo=UTC)
        end = datetime.now(UTC) + timedelta(days=1)
        rows = [row for chunk in archive.day_rows(KINDS[kind], "okx", start, end) for row in chunk]
        full = archive.write_day(KINDS[kind], "okx", today, [rows])
        one = archive.write_day(KINDS[kind], "okx", today - timedelta(days=1), [rows[:1]])
        per_row[kind] = (full.file.bytes - one.file.bytes) / max(len(rows) - 1, 1)
    return per_row


def book_formats(since: datetime, books_per_day: float) -> list[tuple[str, float]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT id, exchange, symbol, data_type, timestamp, data::text, created_at
            FROM market_data WHERE data_type = 'orderbook' AND timestamp >= %s
            ORDER BY timestamp, id""",
            [since],
        )
        rows = cursor.fetchall()
    datas = [json.loads(row[5]) for row in rows]
    head = {
        "id": pa.array([r[0] for r in rows], pa.int64()),
        "timestamp": pa.array([r[4] for r in rows], pa.timestamp("us", tz="UTC")),
    }
    price = pa.decimal128(20, 8)
    level = pa.struct([("px", price), ("sz", price)])

    def levels(side: str):
        return pa.array(
            [[{"px": Decimal(p), "sz": Decimal(s)} for p, s, *_ in d[side]] for d in datas],
            pa.list_(level),
        )

    def flat() -> dict:
        columns = {}
        for side in ("bids", "asks"):
            for n in range(5):
                for i, name in enumerate(("px", "sz")):
                    values = [Decimal(d[side][n][i]) if len(d[side]) > n else None for d in datas]
                    columns[f"{side}{n + 1}_{name}"] = pa.array(values, price)
        return columns

    numbers = {
        "seq_id": pa.array([d.get("seq_id") for d in datas], pa.int64()),
        "checksum": pa.array([d.get("checksum") for d in datas], pa.int64()),
    }
    no_raw = [json.dumps({k: v for k, v in d.items() if k != "raw"}) for d in datas]

    def scaled() -> dict:
        columns = {}
        for side in ("bids", "asks"):
            for n in range(5):
                for i, name in enumerate(("px", "sz")):
                    values = [
                        int(Decimal(d[side][n][i]).scaleb(8)) if len(d[side]) > n else None
                        for d in datas
                    ]
                    columns[f"{side}{n + 1}_{name}"] = pa.array(values, pa.int64())
        return columns

    formats = {
        "JSON text as stored, with raw (the archive's format)": {
            **head,
            "data": pa.array([r[5] for r in rows]),
        },
        "JSON text without raw": {**head, "data": pa.array(no_raw)},
        "levels as lists of decimal128 (no raw)": {
            **head,
            "bids": levels("bids"),
            "asks": levels("asks"),
            **numbers,
        },
        "levels as 20 decimal128 columns (no raw)": {**head, **flat(), **numbers},
        "levels as 20 int64 columns of 1e-8 units, delta encoded (no raw)": {
            **head,
            **scaled(),
            **numbers,
        },
    }
    sizes = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, columns in formats.items():
            for level_of_zstd in (9, 19):
                path = Path(scratch) / "books.parquet"
                table = pa.table(columns)
                delta = "delta" in name
                pq.write_table(
                    table,
                    path,
                    compression="zstd",
                    compression_level=level_of_zstd,
                    row_group_size=archive.ROW_GROUP_ROWS,
                    use_dictionary=not delta,
                    column_encoding={
                        c: "DELTA_BINARY_PACKED" for c in table.column_names if c != "timestamp"
                    }
                    if delta
                    else None,
                )
                per_row = path.stat().st_size / len(rows)
                sizes.append((f"{name}, zstd {level_of_zstd}", per_row * books_per_day))
    return sizes


# 4. the curve -------------------------------------------------------------------------


def curve(db_per_day: dict[str, tuple], archive_per_day: dict[str, float]) -> list[tuple]:
    """(day, database now, archive now, database before: everything kept, unpartitioned)."""
    windows = settings.RETENTION_DAYS
    points = []
    for day in (1, 2, 3, 7, 14, 30, 60, 90, 180, 365, 730, 1095):
        database = sum(v[0] * min(day, windows[k] + 1) for k, v in db_per_day.items())
        archived = sum(v * max(0, day - windows[k] - 1) for k, v in archive_per_day.items())
        before = sum(v[1] for v in db_per_day.values()) * day
        points.append((day, database, archived, before))
    return points


# 5. retention while a collector writes --------------------------------------------------


def old_days(since: datetime, count: int) -> list[date]:
    """`count` days past every window, each holding the copied hour of trades and books."""
    first = datetime.now(UTC).date() - timedelta(days=40)
    days = [first + timedelta(days=n) for n in range(count)]
    rates = {"trade": (TRADE_RATE * 60 + BURST) / 60, "orderbook": 10.0}
    for day in days:
        for table in partitions.DAILY_TABLES:
            partitions.create_partition(table, day)
        for kind, rate in rates.items():
            copy_hour(kind, round(rate * 3600), since, day)
    return days


def retention_under_load(since: datetime) -> dict:
    days = old_days(since, 10)
    live = Collecting(200.0, [DataType.TRADE, DataType.ORDERBOOK], candles=False)
    live.start()
    time.sleep(5)
    before_start = time.time()
    time.sleep(15)
    started = time.time()
    # In its own process, as the Celery task runs on a worker apart from the collectors.
    done = subprocess.run(
        [sys.executable, "manage.py", "apply_retention"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    finished = time.time()
    time.sleep(2)
    live.stop()
    if done.returncode:
        raise RuntimeError(f"retention failed: {done.stderr[-2000:]}")
    before = [lat for t, lat in live.latencies if before_start <= t < started]
    during = [lat for t, lat in live.latencies if started <= t <= finished]
    return {
        "days": len(days),
        "seconds": finished - started,
        "actions": len(done.stdout.splitlines()),
        "before": before,
        "during": during,
    }


def latency_text(values: list[float]) -> str:
    if not values:
        return "no rows"
    return (
        f"p50 {1000 * statistics.median(values):.1f} ms, p99 {1000 * percentile(values, 0.99):.1f}"
        f" ms, max {1000 * max(values):.1f} ms ({len(values)} rows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args()
    recreate_database(DB_NAME)
    call_command("migrate", verbosity=0)
    try:
        since = datetime.now(UTC)
        live = Collecting(TRADE_RATE, list(DataType)[:4], candles=True)
        live.start()
        threading.Thread(target=live.bursts, daemon=True).start()
        started = time.monotonic()
        time.sleep(args.seconds)
        seconds = time.monotonic() - started
        live.stop()
        counts = count_rows(since)
        rates = {kind: count / seconds for kind, count in counts.items()}
        # Longer candles close too rarely to be measured in minutes: one per closed interval
        # of 1m, 5m, 15m, 1h, 4h and 1d a day.
        rates["candles"] = CANDLES_PER_DAY / DAY_SECONDS
        print(
            f"1. live, {seconds:.0f} s of one pair at the profile (trade msgs sent -> committed:"
            f" {latency_text([lat for _, lat in live.latencies])})"
        )
        for kind, count in counts.items():
            per_day = rates[kind] * DAY_SECONDS
            print(f"   {kind:12s} {count:7d} rows  {rates[kind]:7.2f}/s  {per_day:>10,.0f}/day")

        db_per_day = database_bytes_per_day(rates, since)
        per_row = archive_bytes_per_row(since)
        archive_per_day = {
            kind: per_row[kind] * rates[kind] * DAY_SECONDS for kind in per_row if kind in rates
        }
        print(
            "2./3. bytes per kind: PostgreSQL (heap + indexes + TOAST; before: the unpartitioned "
            "tables) and archive (Parquet zstd)"
        )
        titles = ("db before", "db/day", "db/month", "arch/day", "arch/month")
        print(f"   {'kind':12s} " + " ".join(f"{title:>10s}" for title in titles))
        for kind in rates:
            (db, plain), arch = db_per_day[kind], archive_per_day.get(kind)
            kept = ("not kept", "not kept") if arch is None else (arch, arch * MONTH_DAYS)
            print(
                f"   {kind:12s} {size_text(plain):>10s} {size_text(db):>10s} "
                f"{size_text(db * MONTH_DAYS):>10s} "
                + " ".join(f"{v if isinstance(v, str) else size_text(v):>10s}" for v in kept)
            )
        total_plain = sum(v[1] for v in db_per_day.values())
        total_db = sum(v[0] for v in db_per_day.values())
        total_archive = sum(archive_per_day.values())
        print(
            f"   {'all':12s} {size_text(total_plain):>10s} {size_text(total_db):>10s} "
            f"{size_text(total_db * MONTH_DAYS):>10s} "
            f"{size_text(total_archive):>10s} {size_text(total_archive * MONTH_DAYS):>10s}"
            f"   (budget: 1 GB per pair per month)"
        )
        print("   order books in the archive, formats tried (per month):")
        for name, per_day in book_formats(since, rates["orderbook"] * DAY_SECONDS):
            print(f"     {size_text(per_day * MONTH_DAYS):>9s}  {name}")

        windows = ", ".join(f"{k} {v}" for k, v in settings.RETENTION_DAYS.items())
        print(f"4. size by day with the retention windows (days: {windows})")
        for day, database, archived, before in curve(db_per_day, archive_per_day):
            print(
                f"   day {day:5d}  database {size_text(database):>9s}  "
                f"archive {size_text(archived):>9s}   (before: database {size_text(before)})"
            )

        size_before = database_bytes()
        result = retention_under_load(since)
        print(
            f"5. retention of {result['days']} old days (trades and books, {result['actions']} "
            f"actions) took {result['seconds']:.1f} s while a collector stored 200 trades/s "
            "and books5;"
        )
        print(f"   send -> commit before: {latency_text(result['before'])}")
        print(f"   send -> commit during: {latency_text(result['during'])}")
        print(
            f"   database {size_text(size_before)} before the old days were added, "
            f"{size_text(database_bytes())} after retention"
        )
    finally:
        connections.close_all()
        drop_database(DB_NAME)
        ARCHIVE.cleanup()


if __name__ == "__main__":
    main()
