"""StorageSink: batches data points into raw_trades and market_data, through database outages.

Collector threads call `put()`; one writer thread owns the database connection and
commits a batch when `buffer_size` rows are pending or `flush_interval` has passed
since the oldest pending row arrived (COLLECTOR_FLUSH_INTERVAL, 20 ms by default: rows
wait little at low rates, and at high rates batches fill by size while the previous one
is being written).
Points become row tuples of strings at `put()` time, so a bad point is dropped on its
own and never poisons a batch. While the database is away, batches are kept and
retried whole (trades are idempotent through their unique key); beyond
`max_memory_rows` the oldest pending rows go to spill files (fsynced JSON lines) that
are replayed in order once the database is back, also by the next process of the
same name after a crash.

Every row has a sequence number in the order it was accepted. Rows are committed in
that order, oldest first: spill files (named by their first and last sequence number)
before rows still in memory, so "everything up to N is committed" is one counter.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
from django.conf import settings

from collectors.types import (
    DataType,
    ExchangeCollectorConfig,
    MarketDataPoint,
    validate_market_data_point,
)

logger = logging.getLogger(__name__)

# A trade row: exchange, symbol, trade_id, price, size, side, timestamp, raw_data (JSON or None).
# A market data row: exchange, symbol, data_type, timestamp, data (JSON). All strings, so a
# row is as cheap to hold, to COPY and to spill as it can be; they differ by length.
Row = tuple
TRADE_ROW_LENGTH = 8
MARKET_ROW_LENGTH = 5

MAX_TEXT_LENGTH = 50  # exchange and symbol columns are VARCHAR(50)
# DECIMAL(20, 8): anything that rounds to 10**12 at 8 places overflows the column.
MAX_PRICE = Decimal("999999999999.999999995")
MIN_BATCH_ROWS = 20_000  # a backlog is written in batches this big, for throughput
SPILL_FILE_ROWS = 10_000  # rows per spill file; a file is replayed in one transaction
STOP_SPILL_RESERVE = 1.0  # seconds of a stop() timeout kept for spilling what is left
INTERRUPT_GRACE = 5.0  # seconds stop() waits after breaking a hung connection
REJECT_LOG_EVERY = 1000  # after the first ten, log one bad point in this many
SPILL_NAME = re.compile(r"^(\d{20})-(\d{20})-\w+\.jsonl(\.tmp)?$")
NAME_PATTERN = re.compile(r"^[\w.-]+$")
# Django's own keys in a DATABASES entry's OPTIONS, which are not libpq parameters.
DJANGO_ONLY_OPTIONS = {"pool", "isolation_level", "server_side_binding", "assume_role"}
CONNECTION_DEFAULTS = {
    "connect_timeout": 5,
    # A network that silently drops packets fails a write in seconds, not minutes.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}


class SpillDirectoryBusy(RuntimeError):
    """Another live process holds the spill directory of a sink with this name."""


# rows -------------------------------------------------------------------------


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    """JSON text for a JSONB column: Decimals as strings; PostgreSQL refuses NUL characters."""
    text = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    if "\\u0000" in text:
        raise ValueError("JSON with a NUL character")
    return text


def utc_iso(timestamp: datetime) -> str:
    return timestamp.astimezone(UTC).isoformat()


def _check_text(name: str, value: str, limit: int = MAX_TEXT_LENGTH) -> str:
    if len(value) > limit or "\x00" in value:
        raise ValueError(f"Invalid {name}: {value[:60]!r}")
    return value


def _decimal_text(name: str, value: Decimal) -> str:
    if not value < MAX_PRICE:
        raise ValueError(f"Invalid trade {name} (too large for DECIMAL(20, 8)): {value}")
    return format(value, "f")


def point_to_row(point: MarketDataPoint) -> Row:
    """The row a point is stored as; ValueError or TypeError for a point that cannot be."""
    validate_market_data_point(point)
    exchange = _check_text("exchange", point.exchange)
    symbol = _check_text("symbol", point.symbol)
    timestamp = utc_iso(point.timestamp)
    data = point.data
    if point.data_type is DataType.TRADE:
        raw = data.get("raw")
        return (
            exchange,
            symbol,
            _check_text("trade_id", data["trade_id"], 100),
            _decimal_text("price", data["price"]),
            _decimal_text("size", data["size"]),
            data["side"],
            timestamp,
            None if raw is None else to_json(raw),
        )
    return (exchange, symbol, point.data_type.value, timestamp, to_json(data))


def point_from_row(row: Row) -> MarketDataPoint:
    """The point as stored: Decimals for a trade's price and size, JSON types elsewhere."""
    if len(row) == TRADE_ROW_LENGTH:
        exchange, symbol, trade_id, price, size, side, timestamp, raw = row
        data = {"trade_id": trade_id, "price": Decimal(price), "size": Decimal(size), "side": side}
        if raw is not None:
            data["raw"] = orjson.loads(raw)
        return MarketDataPoint(
            exchange, symbol, datetime.fromisoformat(timestamp), DataType.TRADE, data
        )
    exchange, symbol, data_type, timestamp, data = row
    return MarketDataPoint(
        exchange,
        symbol,
        datetime.fromisoformat(timestamp),
        DataType(data_type),
        orjson.loads(data),
    )


def split_rows(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    trades = [row for row in rows if len(row) == TRADE_ROW_LENGTH]
    if len(trades) == len(rows):
        return trades, []
    return trades, [row for row in rows if len(row) != TRADE_ROW_LENGTH]


# spill files ------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class SpillFile:
    path: Path
    first_seq: int
    last_seq: int


def spill_file_of(path: Path) -> SpillFile | None:
    match = SPILL_NAME.match(path.name)
    if match is None:
        return None
    return SpillFile(path, int(match[1]), int(match[2]))


def list_spill_files(directory: Path) -> list[SpillFile]:
    """Spill files in replay order; a `.tmp` left by a crash holds rows never stored elsewhere."""
    found = (spill_file_of(path) for path in directory.iterdir())
    return sorted((f for f in found if f is not None), key=lambda f: (f.first_seq, f.path.name))


def write_spill_file(directory: Path, first_seq: int, rows: list[Row]) -> SpillFile:
    """Write rows durably: to a temporary name, fsynced, then renamed into place."""
    last_seq = first_seq + len(rows) - 1
    path = directory / f"{first_seq:020d}-{last_seq:020d}-{secrets.token_hex(4)}.jsonl"
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(b"\n".join(map(orjson.dumps, rows)) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(directory)
    return SpillFile(path, first_seq, last_seq)


def read_spill_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def row_of_line(line: bytes) -> Row | None:
    """The row a spill line holds; None for a line cut short by a crash or otherwise bad."""
    try:
        row = tuple(orjson.loads(line))
    except orjson.JSONDecodeError:
        return None
    return row if len(row) in (TRADE_ROW_LENGTH, MARKET_ROW_LENGTH) else None


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# databases --------------------------------------------------------------------


def postgres_connection_params(database: dict, name: str) -> dict[str, Any]:
    """psycopg.connect() keywords for a Django DATABASES entry."""
    options = {
        k: v for k, v in (database.get("OPTIONS") or {}).items() if k not in DJANGO_ONLY_OPTIONS
    }
    params: dict[str, Any] = {"dbname": database.get("NAME") or "postgres"}
    for key, param in (
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("HOST", "host"),
        ("PORT", "port"),
    ):
        if database.get(key):
            params[param] = str(database[key])
    params.update(options)
    for key, value in CONNECTION_DEFAULTS.items():
        params.setdefault(key, value)
    params.setdefault("application_name", f"tcp-dashboard storage {name}"[:63])
    return params


STAGE_COLUMNS = "exchange, symbol, trade_id, price, size, side, timestamp, raw_data"
MARKET_COLUMNS = "exchange, symbol, data_type, timestamp, data"
CREATE_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS raw_trades_stage (
    exchange VARCHAR(50), symbol VARCHAR(50), trade_id VARCHAR(100),
    price NUMERIC(20, 8), size NUMERIC(20, 8), side VARCHAR(10),
    timestamp TIMESTAMPTZ, raw_data JSONB
) ON COMMIT DELETE ROWS
"""
# raw_trades is partitioned by day; its unique key (exchange, symbol, trade_id) lives in
# raw_trade_keys, kept by triggers (docs/data-model.md). A batch is first made unique in
# Python, so one statement never holds the same trade twice.
INSERT_FROM_STAGE = f"""
INSERT INTO raw_trades ({STAGE_COLUMNS}) SELECT {STAGE_COLUMNS} FROM raw_trades_stage s
WHERE NOT EXISTS (
    SELECT 1 FROM raw_trade_keys k
    WHERE k.exchange = s.exchange AND k.symbol = s.symbol AND k.trade_id = s.trade_id
)
"""


def first_of_each_trade(trades: list[Row]) -> list[Row]:
    """The rows with distinct (exchange, symbol, trade_id), the first of each, in order."""
    seen: dict[tuple, Row] = {}
    for row in trades:
        seen.setdefault((row[0], row[1], row[2]), row)
    return trades if len(seen) == len(trades) else list(seen.values())


class PostgresBackend:
    """One psycopg connection: COPY into a staging table, then INSERT the trades not stored."""

    data_errors = (psycopg.errors.DataError, psycopg.errors.IntegrityError)

    def __init__(self, database: dict, name: str) -> None:
        self._params = postgres_connection_params(database, name)
        self.secret = str(database.get("PASSWORD") or "")
        self._conn: psycopg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        if self.connected:
            return
        conn = psycopg.connect(**self._params, autocommit=True)
        try:
            conn.execute(CREATE_STAGE)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def transaction(self) -> contextlib.AbstractContextManager:
        # Nested inside an open transaction, psycopg makes this a savepoint.
        return self._conn.transaction()

    def write(self, trades: list[Row], market: list[Row], *, isolated: bool) -> int:
        """Write rows inside the open transaction; the number of trades newly inserted."""
        inserted = 0
        with self._conn.cursor() as cursor:
            if trades:
                with cursor.copy(f"COPY raw_trades_stage ({STAGE_COLUMNS}) FROM STDIN") as copy:
                    for row in first_of_each_trade(trades):
                        copy.write_row(row)
                cursor.execute(INSERT_FROM_STAGE)
                inserted = cursor.rowcount
                if isolated:
                    # Later parts of the same transaction must not insert these again.
                    cursor.execute("DELETE FROM raw_trades_stage")
            if market:
                with cursor.copy(f"COPY market_data ({MARKET_COLUMNS}) FROM STDIN") as copy:
                    for row in market:
                        copy.write_row(row)
        return inserted

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def interrupt(self) -> None:
        """From another thread: break a call hung on a dead network."""
        conn = self._conn
        if conn is None or conn.closed:
            return
        with contextlib.suppress(Exception):
            descriptor = os.dup(conn.pgconn.socket)
            with socket.socket(fileno=descriptor) as sock:
                sock.shutdown(socket.SHUT_RDWR)


SQLITE_INSERT_TRADE = f"""
INSERT INTO raw_trades ({STAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (exchange, symbol, trade_id) DO NOTHING
"""
SQLITE_INSERT_MARKET = f"INSERT INTO market_data ({MARKET_COLUMNS}) VALUES (?, ?, ?, ?, ?)"


def sqlite_timestamp(iso: str) -> str:
    """Django's SQLite format: naive UTC, space separated (our ISO strings end in +00:00)."""
    return iso[:-6].replace("T", " ", 1)


class SqliteBackend:
    """The portable path: sqlite3 executemany; a duplicate trade is ignored by its unique key."""

    data_errors = (sqlite3.IntegrityError, sqlite3.DataError)

    def __init__(self, database: dict, name: str) -> None:
        self._path = str(database["NAME"])
        options = database.get("OPTIONS") or {}
        self._timeout = float(options.get("timeout", 20))
        self._init_command = options.get("init_command", "")
        self.secret = ""
        self._conn: sqlite3.Connection | None = None
        self._depth = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def connect(self) -> None:
        if self.connected:
            return
        conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
        try:
            for statement in filter(None, (s.strip() for s in self._init_command.split(";"))):
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._depth = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._conn
        savepoint = f"sp{self._depth}"
        conn.execute(f"SAVEPOINT {savepoint}" if self._depth else "BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth:
                conn.execute(f"ROLLBACK TO {savepoint}")
                conn.execute(f"RELEASE {savepoint}")
            else:
                conn.execute("ROLLBACK")
            raise
        self._depth -= 1
        conn.execute(f"RELEASE {savepoint}" if self._depth else "COMMIT")

    def write(self, trades: list[Row], market: list[Row], *, isolated: bool) -> int:
        conn = self._conn
        before = conn.total_changes
        conn.executemany(
            SQLITE_INSERT_TRADE, [(*row[:6], sqlite_timestamp(row[6]), row[7]) for row in trades]
        )
        inserted = conn.total_changes - before
        conn.executemany(
            SQLITE_INSERT_MARKET, [(*row[:3], sqlite_timestamp(row[3]), row[4]) for row in market]
        )
        return inserted

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def interrupt(self) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.interrupt()


def backend_for(database: dict, name: str) -> PostgresBackend | SqliteBackend:
    engine = database.get("ENGINE", "")
    if engine.endswith("postgresql"):
        return PostgresBackend(database, name)
    if engine.endswith("sqlite3"):
        return SqliteBackend(database, name)
    raise ValueError(f"StorageSink supports PostgreSQL and SQLite, not {engine!r}")


# the sink ---------------------------------------------------------------------


@dataclass(slots=True)
class Batch:
    """Rows with sequence numbers first_seq..end_seq-1, from memory or from a spill file."""

    rows: list[Row]
    first_seq: int
    end_seq: int
    spill: SpillFile | None = None


@dataclass(slots=True)
class Outcome:
    inserted: int = 0
    duplicates: int = 0
    market: int = 0
    rejected: list[Row] = field(default_factory=list)


class StorageSink:
    """Stores data points in batches; `put()` never waits for the database."""

    def __init__(
        self,
        *,
        name: str = "default",
        buffer_size: int = 1000,
        flush_interval: float | None = None,  # default: settings.COLLECTOR_FLUSH_INTERVAL
        max_memory_rows: int = 200_000,
        spill_dir: Path | None = None,
        database: dict | None = None,
        on_commit: Callable[[list[MarketDataPoint], float], None] | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        if flush_interval is None:
            flush_interval = float(settings.COLLECTOR_FLUSH_INTERVAL)
        if not NAME_PATTERN.match(name):
            raise ValueError(f"a sink name is a file name (letters, digits, . _ -), not {name!r}")
        if buffer_size < 1 or max_memory_rows < 2 or flush_interval <= 0 or retry_delay <= 0:
            raise ValueError("buffer_size, max_memory_rows, flush_interval and retry_delay")
        self.name = name
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self.max_memory_rows = max_memory_rows
        self.retry_delay = retry_delay
        self.on_commit = on_commit
        self.spill_dir = Path(spill_dir or settings.COLLECTOR_SPILL_DIR) / name
        self._backend = backend_for(database or settings.DATABASES["default"], name)
        self._batch_rows = max(buffer_size, MIN_BATCH_ROWS)

        self._cond = threading.Condition()
        self._pending: deque[Row] = deque()
        self._head_seq = 0  # sequence number of _pending[0]
        self._next_seq = 0  # sequence number of the next row accepted
        self._done_seq = 0  # every row below this is committed or rejected
        self._first_pending_at: float | None = None
        self._flush_seq = 0  # write without waiting for the interval up to here
        self._spill_files: list[SpillFile] = []  # in replay order
        self._spilling = False
        self._thread: threading.Thread | None = None
        self._lock_file = None
        self._running = False
        self._stopped = False
        self._write_deadline: float | None = None  # set by stop(): write until then, then spill
        self._outage_since: float | None = None

        self._rows_received = 0
        self._rows_rejected = 0
        self._rows_recovered = 0
        self._unstored = 0  # received or recovered, not yet committed nor rejected
        self._trades_inserted = 0
        self._duplicates_ignored = 0
        self._market_data_inserted = 0
        self._batches = 0
        self._write_failures = 0
        self._spilled_rows = 0
        self._last_error = ""
        self._database_ok = False

    # public -------------------------------------------------------------------

    def start(self) -> None:
        """Lock the spill directory, pick up a previous process's spill files, start writing."""
        with self._cond:
            if self._running or self._stopped:
                raise RuntimeError(f"storage sink {self.name} was already started")
            self._lock_spill_directory()
            self._recover_spill_files()
            self._running = True
        self._thread = threading.Thread(target=self._run, name=f"storage-{self.name}", daemon=True)
        self._thread.start()

    def put(self, points: Iterable[MarketDataPoint]) -> None:
        """Accept points for storage; converts them here, so a bad one is dropped alone."""
        rows = []
        failures = []
        for point in points:
            try:
                rows.append(point_to_row(point))
            except Exception as error:  # whatever a point's fault is, it is only that point's
                failures.append((point, error))
        with self._cond:
            self._rows_received += len(rows) + len(failures)
            self._rows_rejected += len(failures)
            rejected_so_far = self._rows_rejected
            if rows:
                self._unstored += len(rows)
                self._accept(rows)
            spill = self._should_spill()
            if spill:
                self._spilling = True
        if failures:
            self._log_rejected(failures, rejected_so_far)
        if spill:
            self._spill_memory(keep=self.max_memory_rows // 2)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every point put so far is committed; False if not within the timeout."""
        with self._cond:
            target = self._next_seq
            if self._done_seq >= target:
                return True
            if not self._running:
                return False
            self._flush_seq = max(self._flush_seq, target)
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._done_seq >= target or not self._running, timeout
            ) and (self._done_seq >= target)

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything; what cannot be written within the timeout is spilled to disk."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._write_deadline = deadline - min(STOP_SPILL_RESERVE, timeout * 0.2)
            thread = self._thread
            self._cond.notify_all()
        if thread is None:
            self._spill_unstarted()
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._backend.interrupt()
            thread.join(INTERRUPT_GRACE)
        if thread.is_alive():
            logger.error("storage %s: the writer did not stop in time", self.name)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "rows_received": self._rows_received,
                "rows_rejected": self._rows_rejected,
                "rows_recovered": self._rows_recovered,
                "trades_inserted": self._trades_inserted,
                "duplicates_ignored": self._duplicates_ignored,
                "market_data_inserted": self._market_data_inserted,
                "batches": self._batches,
                "write_failures": self._write_failures,
                "pending_rows": self._unstored,
                "memory_rows": len(self._pending),
                "spilled_rows": self._spilled_rows,
                "spill_files": len(self._spill_files),
                "last_error": self._last_error,
                "database_ok": self._database_ok,
            }

    # accepting ------------------------------------------------------------------

    def _accept(self, rows: list[Row]) -> None:
        pending = self._pending
        before = len(pending)
        pending.extend(rows)
        self._next_seq += len(rows)
        if not before:
            self._first_pending_at = time.monotonic()
            self._cond.notify_all()
        elif before < self.buffer_size <= len(pending) or len(pending) > self.max_memory_rows:
            self._cond.notify_all()

    def _log_rejected(self, failures: list[tuple[Any, Exception]], total: int) -> None:
        first = total - len(failures) + 1
        for count, (point, error) in enumerate(failures, start=first):
            if count <= 10 or count % REJECT_LOG_EVERY == 0:
                logger.warning(
                    "storage %s: dropped a data point that cannot be stored (%s): %.200r"
                    " (%d so far)",
                    self.name,
                    error,
                    point,
                    count,
                )

    # spilling ---------------------------------------------------------------------

    def _lock_spill_directory(self) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        lock_file = (self.spill_dir / "lock").open("a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise SpillDirectoryBusy(
                f"another process is running a storage sink named {self.name!r} "
                f"(spill directory {self.spill_dir}); give each process its own name"
            ) from None
        self._lock_file = lock_file

    def _recover_spill_files(self) -> None:
        files = list_spill_files(self.spill_dir)
        recovered = sum(len(read_spill_lines(f.path)) for f in files)
        if files:
            logger.warning(
                "storage %s: replaying %d rows from %d spill files left by a previous process",
                self.name,
                recovered,
                len(files),
            )
        # Rows accepted before start() take sequence numbers after the recovered ones.
        base = max((f.last_seq + 1 for f in files), default=0)
        self._head_seq += base
        self._next_seq += base
        self._done_seq += base
        self._flush_seq += base
        self._spill_files.extend(files)
        self._rows_recovered += recovered
        self._unstored += recovered

    def _should_spill(self) -> bool:
        """Over the memory bound, or stopped (nothing writes memory rows any more)."""
        if self._spilling or not (self._running or self._stopped):
            return False  # before start() the spill directory is not ours yet
        return self._stopped or len(self._pending) > self.max_memory_rows

    def _spill_memory(self, keep: int) -> None:
        """Move the oldest memory rows to spill files until `keep` remain; caller set _spilling."""
        try:
            while True:
                with self._cond:
                    count = min(
                        SPILL_FILE_ROWS, len(self._pending) - (0 if self._stopped else keep)
                    )
                    if count <= 0:
                        return
                    first_seq = self._head_seq
                    rows = [self._pending.popleft() for _ in range(count)]
                    self._head_seq += count
                    self._settle_pending_clock()
                if not self._spill_rows(first_seq, rows):
                    with self._cond:
                        self._pending.extendleft(reversed(rows))
                        self._head_seq = first_seq
                        if self._first_pending_at is None:
                            self._first_pending_at = time.monotonic()
                    return
        finally:
            with self._cond:
                self._spilling = False
                self._cond.notify_all()

    def _spill_rows(self, first_seq: int, rows: list[Row]) -> bool:
        """Write rows to a spill file; False (rows kept in memory) when the disk refuses."""
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            spill = write_spill_file(self.spill_dir, first_seq, rows)
        except OSError as error:
            logger.error(
                "storage %s: cannot spill %d rows to disk: %s", self.name, len(rows), error
            )
            return False
        with self._cond:
            bisect.insort(self._spill_files, spill, key=lambda f: f.first_seq)
            self._spilled_rows += len(rows)
        return True

    def _spill_unstarted(self) -> None:
        with self._cond:
            if not self._pending or self._spilling:
                return
            self._spilling = True
        self._spill_memory(keep=0)

    def _settle_pending_clock(self) -> None:
        if not self._pending:
            self._first_pending_at = None

    # writing ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._attempt_connect()
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                if not self._write_until_committed(batch):
                    if batch.spill is None:
                        self._spill_rows(batch.first_seq, batch.rows)
                    break
            self._spill_what_is_left()
        except Exception:
            logger.exception("storage %s: the writer failed; spilling what is left", self.name)
            self._spill_what_is_left()
        finally:
            self._backend.close()
            with self._cond:
                self._running = False
                self._cond.notify_all()
            if self._lock_file is not None:
                self._lock_file.close()

    def _next_batch(self) -> Batch | None:
        """The oldest rows to write: spill files first; None once stopping and nothing is left."""
        with self._cond:
            while True:
                if self._spilling:
                    self._cond.wait()
                    continue
                if self._stopping_now():
                    return None
                if self._spill_files:
                    spill = self._spill_files[0]
                    break
                wait = self._memory_wait()
                if wait == 0:
                    return self._take_from_memory()
                if wait is None and self._stopped:
                    return None
                self._cond.wait(wait)
        try:
            return self._read_spill(spill)
        except OSError as error:
            # Left on disk for an operator (or the next process); its rows stay pending.
            logger.error("storage %s: cannot read spill file %s: %s", self.name, spill.path, error)
            with self._cond:
                self._spill_files.remove(spill)
            return self._next_batch()

    def _memory_wait(self) -> float | None:
        """Seconds until memory rows are due; 0 when due now; None when there are none."""
        if not self._pending:
            return None
        if (
            self._stopped
            or len(self._pending) >= self.buffer_size
            or self._flush_seq > self._head_seq
        ):
            return 0
        return max(0.0, self._first_pending_at + self.flush_interval - time.monotonic())

    def _take_from_memory(self) -> Batch:
        count = min(self._batch_rows, len(self._pending))
        rows = [self._pending.popleft() for _ in range(count)]
        first_seq = self._head_seq
        self._head_seq += count
        self._settle_pending_clock()
        return Batch(rows, first_seq, first_seq + count)

    def _read_spill(self, spill: SpillFile) -> Batch:
        lines = read_spill_lines(spill.path)
        rows = [row for row in map(row_of_line, lines) if row is not None]
        if len(rows) < len(lines):
            logger.error(
                "storage %s: %d unreadable lines in %s dropped",
                self.name,
                len(lines) - len(rows),
                spill.path.name,
            )
            with self._cond:
                self._rows_rejected += len(lines) - len(rows)
                self._unstored -= len(lines) - len(rows)
        return Batch(rows, spill.first_seq, spill.last_seq + 1, spill)

    def _stopping_now(self) -> bool:
        deadline = self._write_deadline
        return deadline is not None and time.monotonic() >= deadline

    def _write_until_committed(self, batch: Batch) -> bool:
        """Write a batch, retrying through outages; False when stop() ran out of time."""
        retried_stale = False
        while True:
            fresh = not self._backend.connected
            try:
                self._backend.connect()
                outcome = self._commit(batch.rows)
            except Exception as error:
                self._backend.close()
                self._record_failure(error)
                if not fresh and not retried_stale:
                    # The connection may have died while idle: one fresh try before waiting.
                    retried_stale = True
                    continue
                if not self._wait_before_retry():
                    return False
                continue
            self._record_commit(batch, outcome, time.time())
            return True

    def _commit(self, rows: list[Row]) -> Outcome:
        outcome = Outcome()
        with self._backend.transaction():
            self._write_isolating(rows, outcome, isolated=False)
        return outcome

    def _write_isolating(self, rows: list[Row], outcome: Outcome, *, isolated: bool) -> None:
        """Write rows in a savepoint; when the database refuses one row, find it by halving."""
        trades, market = split_rows(rows)
        try:
            with self._backend.transaction():
                inserted = self._backend.write(trades, market, isolated=isolated)
        except self._backend.data_errors as error:
            if len(rows) == 1:
                logger.warning(
                    "storage %s: the database refused a row (%s): %.200r",
                    self.name,
                    self._scrub(error),
                    rows[0],
                )
                outcome.rejected.append(rows[0])
                return
            middle = len(rows) // 2
            self._write_isolating(rows[:middle], outcome, isolated=True)
            self._write_isolating(rows[middle:], outcome, isolated=True)
            return
        outcome.inserted += inserted
        outcome.duplicates += len(trades) - inserted
        outcome.market += len(market)

    def _record_commit(self, batch: Batch, outcome: Outcome, committed_at: float) -> None:
        if batch.spill is not None:
            with contextlib.suppress(FileNotFoundError):
                batch.spill.path.unlink()
        with self._cond:
            if batch.spill is not None:
                self._spill_files.remove(batch.spill)
            self._trades_inserted += outcome.inserted
            self._duplicates_ignored += outcome.duplicates
            self._market_data_inserted += outcome.market
            self._rows_rejected += len(outcome.rejected)
            self._unstored -= len(batch.rows)
            self._batches += 1
            self._done_seq = max(self._done_seq, batch.end_seq)
            self._database_ok = True
            outage_since, self._outage_since = self._outage_since, None
            self._cond.notify_all()
        if outage_since is not None:
            logger.warning(
                "storage %s: database back after %.1f s; writing what was kept",
                self.name,
                time.monotonic() - outage_since,
            )
        if self.on_commit is not None:
            self._call_on_commit(batch.rows, outcome.rejected, committed_at)

    def _call_on_commit(self, rows: list[Row], rejected: list[Row], committed_at: float) -> None:
        refused = {id(row) for row in rejected}
        try:
            points = [point_from_row(row) for row in rows if id(row) not in refused]
            self.on_commit(points, committed_at)
        except Exception:  # a consumer's bug must not stop the writer
            logger.exception("storage %s: on_commit callback failed", self.name)

    def _attempt_connect(self) -> None:
        try:
            self._backend.connect()
        except Exception as error:
            self._backend.close()
            self._record_failure(error)
            return
        with self._cond:
            self._database_ok = True

    def _record_failure(self, error: Exception) -> None:
        message = self._scrub(error)
        with self._cond:
            self._write_failures += 1
            self._last_error = message
            self._database_ok = False
            first = self._outage_since is None
            if first:
                self._outage_since = time.monotonic()
        if first:
            logger.error(
                "storage %s: database unavailable (%s); keeping rows, retrying every %g s",
                self.name,
                message,
                self.retry_delay,
            )

    def _scrub(self, error: Exception) -> str:
        message = f"{type(error).__name__}: {error}".strip()[:500]
        secret = self._backend.secret
        return message.replace(secret, "***") if secret else message

    def _wait_before_retry(self) -> bool:
        """Sleep retry_delay (less if stopping); False when stop() ran out of time."""
        wake_at = time.monotonic() + self.retry_delay
        with self._cond:
            while True:
                if self._stopping_now():
                    return False
                remaining = wake_at - time.monotonic()
                if remaining <= 0:
                    return True
                if self._write_deadline is not None:
                    remaining = min(remaining, self._write_deadline - time.monotonic())
                self._cond.wait(max(0.0, remaining))

    def _spill_what_is_left(self) -> None:
        with self._cond:
            while self._spilling:
                self._cond.wait()
            if not self._pending:
                return
            self._spilling = True
        self._spill_memory(keep=0)


def newest_stored_trade(config: ExchangeCollectorConfig) -> str | None:
    """Where a starting collector's trades may resume: the newest trade stored for its
    market, if within COLLECTOR_BACKFILL_WINDOW seconds; None if there is none (or the
    database cannot say), and the collector takes the exchange's recent trades only."""
    window = settings.COLLECTOR_BACKFILL_WINDOW
    if not window or DataType.TRADE not in config.data_types:
        return None
    from django.db import DatabaseError

    from marketdata.selectors import newest_trade_id

    since = datetime.now(UTC) - timedelta(seconds=window)
    try:
        return newest_trade_id(config.exchange, config.symbol, since)
    except DatabaseError as error:
        logger.warning("%s: newest stored trade unknown (%s)", config.name, error)
        return None
