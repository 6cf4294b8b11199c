"""Benchmark: backup and restore throughput (MB/s) and peak memory for a database of 1 GB+.

Builds a throw-away database, tcp_bench_backup, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432): migrations, then
raw_trades and market_data filled with generate_series until pg_database_size reaches
BENCH_BACKUP_GB (default 1.0). Then one backup (pg_dump of an exported snapshot, table
counts and checksums, encryption, the read-back verification) and one restore into
tcp_bench_backup_restore (the check of the whole file, pg_restore -> psql in one
transaction, the check of every table against the manifest). Memory is the peak resident
set of this Python process and of each client tool, sampled every 50 ms. Both databases
are dropped at the end. Throughput is the database's size over the elapsed time.
"""

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import drop_database, recreate_database, rss_mb, use_database  # noqa: E402

DB_NAME = "tcp_bench_backup"
RESTORE_NAME = "tcp_bench_backup_restore"
TARGET_GB = float(os.environ.get("BENCH_BACKUP_GB", "1.0"))
BATCH = 500_000  # rows per INSERT ... SELECT generate_series

use_database(DB_NAME, DB_POOL="0", LOG_FILE_OUTPUT="false")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from marketdata.backups.backup import create_backup  # noqa: E402
from marketdata.backups.encryption import Keys, decode_key, generate_key  # noqa: E402
from marketdata.backups.postgres import Database, create_database  # noqa: E402
from marketdata.backups.restore import check_backup, restore_backup  # noqa: E402

TRADES = """
INSERT INTO raw_trades
    (exchange, symbol, trade_id, price, size, side, timestamp, raw_data, created_at)
SELECT 'okx', 'BTC-USDT', n::text, 42000 + (n %% 100000) / 100.0, 0.0001 * (1 + n %% 997),
       CASE WHEN n %% 2 = 0 THEN 'buy' ELSE 'sell' END,
       timestamptz '2024-01-01 00:00:00+00' + n * interval '7 milliseconds',
       jsonb_build_object('instId', 'BTC-USDT', 'tradeId', n::text,
                          'px', (42000 + (n %% 100000) / 100.0)::text,
                          'sz', (0.0001 * (1 + n %% 997))::text,
                          'side', CASE WHEN n %% 2 = 0 THEN 'buy' ELSE 'sell' END,
                          'ts', (1704067200000 + n * 7)::text, 'count', '1', 'source', '0'),
       now()
FROM generate_series(%(first)s, %(last)s) AS n
"""
TICKERS = """
INSERT INTO market_data (exchange, symbol, data_type, timestamp, data, created_at)
SELECT 'okx', 'BTC-USDT', 'ticker', timestamptz '2024-01-01 00:00:00+00' + n * interval '100 ms',
       jsonb_build_object('last', (42000 + (n %% 100000) / 100.0)::text, 'last_size', '0.01',
                          'best_bid', (41999 + (n %% 100000) / 100.0)::text,
                          'best_ask', (42001 + (n %% 100000) / 100.0)::text,
                          'volume_24h', (12345 + n %% 1000)::text, 'checksum', md5(n::text)),
       now()
FROM generate_series(%(first)s, %(last)s) AS n
"""


def database_bytes() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0]


def fill(target_bytes: int) -> None:
    first = 1
    started = time.perf_counter()
    while database_bytes() < target_bytes:
        with connection.cursor() as cursor:
            cursor.execute(TRADES, {"first": first, "last": first + BATCH - 1})
            cursor.execute(TICKERS, {"first": first, "last": first + BATCH // 4 - 1})
        first += BATCH
        print(
            f"  filled {database_bytes() / 2**30:.2f} GB ({first - 1:,} trades) "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


class PeakMemory:
    """Peak RSS of this process and of its child processes (by command), sampled."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def note(self, name: str, mb: float) -> None:
        self.peaks[name] = max(self.peaks.get(name, 0.0), mb)

    def run(self) -> None:
        me = str(os.getpid())
        while not self.stop.wait(0.05):
            self.note("python (this process)", rss_mb())
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                    if stat[stat.rindex(")") + 2 :].split()[1] != me:
                        continue
                    name = stat[stat.index("(") + 1 : stat.rindex(")")]
                    self.note(name, peak_mb(entry))
                except (OSError, ValueError):
                    continue  # it ended meanwhile


def peak_mb(proc: Path) -> float:
    for line in (proc / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def report(label: str, seconds: float, sizes: tuple[int, int], peaks: dict[str, float]) -> None:
    memory = ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(peaks.items()))
    database, file = (size / 2**20 / seconds for size in sizes)
    print(
        f"{label}: {seconds:.1f} s, {database:.1f} MB/s of database ({file:.1f} MB/s of "
        f"backup file); peak RSS {memory}"
    )


def main() -> None:
    recreate_database(DB_NAME)
    drop_database(RESTORE_NAME)
    call_command("migrate", verbosity=0)
    try:
        print(f"building a database of {TARGET_GB:g} GB in {DB_NAME}", flush=True)
        fill(int(TARGET_GB * 2**30))
        size = database_bytes()
        live = Database.from_settings()
        print(f"this process before the backup: {rss_mb():.0f} MB RSS")
        keys = Keys(decode_key(generate_key(), "bench"))
        with tempfile.TemporaryDirectory() as directory:
            started = time.perf_counter()
            with PeakMemory() as memory:
                result = create_backup(directory=Path(directory), database=live, keys=keys)
            backup_seconds = time.perf_counter() - started
            manifest = result.manifest
            print(
                f"database {size / 2**30:.2f} GB, {manifest['rows']:,} rows; backup file "
                f"{manifest['size'] / 2**20:.0f} MB (dump {manifest['dump_size'] / 2**20:.0f} MB, "
                f"gzip level {settings.BACKUP_COMPRESSION})"
            )
            sizes = (size, manifest["size"])
            report(
                "backup (dump, counts and checksums, encryption)",
                backup_seconds,
                sizes,
                memory.peaks,
            )

            started = time.perf_counter()
            with PeakMemory() as memory:
                check_backup(result.path, keys)
            report(
                "verify (read back: SHA-256, every chunk authenticated)",
                time.perf_counter() - started,
                sizes,
                memory.peaks,
            )

            create_database(live, RESTORE_NAME)
            started = time.perf_counter()
            with PeakMemory() as memory:
                restored = restore_backup(result.path, live.sibling(RESTORE_NAME), keys=keys)
            report(
                "restore (verify, pg_restore -> psql, check every table)",
                time.perf_counter() - started,
                sizes,
                memory.peaks,
            )
            assert restored.rows == manifest["rows"]
    finally:
        connections.close_all()
        drop_database(DB_NAME)
        drop_database(RESTORE_NAME)
    print("measured on a shared 2-core machine: indicative figures")


if __name__ == "__main__":
    main()
