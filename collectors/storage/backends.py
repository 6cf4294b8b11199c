"""The sink's database backends: PostgreSQL (one statement for a few rows, COPY for many)
and SQLite."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from collectors.storage.rows import Row

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


# The same, for a few rows given as parameters: one statement, committed on its own, one
# round trip. A batch this small (the idle path) costs a third of a staging COPY.
SMALL_BATCH_ROWS = 50
TRADE_VALUES = "(%s, %s, %s, %s::numeric, %s::numeric, %s, %s::timestamptz, %s::jsonb)"
MARKET_VALUES = "(%s, %s, %s, %s::timestamptz, %s::jsonb)"
INSERT_TRADE_VALUES = f"""
INSERT INTO raw_trades ({STAGE_COLUMNS}) SELECT * FROM (VALUES {{}}) s ({STAGE_COLUMNS})
WHERE NOT EXISTS (
    SELECT 1 FROM raw_trade_keys k
    WHERE k.exchange = s.exchange AND k.symbol = s.symbol AND k.trade_id = s.trade_id
)"""
INSERT_MARKET_VALUES = f"INSERT INTO market_data ({MARKET_COLUMNS}) VALUES {{}}"
# The unique key a trade already stored trips over (raw_trade_keys' constraint).
TRADE_KEY_CONSTRAINT = "raw_trades_exch_sym_trade_uniq"
# After a batch met a stored trade, batches take the staging path for this long: a
# reconnect's gap-fill overlaps what was stored, and a failed COPY is work thrown away.
STAGE_AFTER_DUPLICATE_SECONDS = 10.0


@functools.cache  # at most (SMALL_BATCH_ROWS + 1) ** 2 texts
def small_batch_statement(trades: int, market: int) -> str:
    """One statement writing `trades` trade rows (those not stored yet) and `market` market
    rows, answering one row: the number of trades inserted."""
    insert_trades = INSERT_TRADE_VALUES.format(", ".join([TRADE_VALUES] * trades))
    insert_market = INSERT_MARKET_VALUES.format(", ".join([MARKET_VALUES] * market))
    if not market:
        return f"WITH t AS ({insert_trades} RETURNING 1) SELECT count(*) FROM t"
    if not trades:
        return f"WITH m AS ({insert_market} RETURNING 1) SELECT 0"
    return (
        f"WITH t AS ({insert_trades} RETURNING 1), m AS ({insert_market} RETURNING 1)"
        " SELECT count(*) FROM t"
    )


# psycopg prepares a statement run five times; the server then settles on one generic plan
# for it, costed on the tables as they were then. A sink that starts on an empty key table
# (a new install, a test) would keep scanning the whole table for each trade's key as it
# grows, until the next ANALYZE: here p50 5.4-6.0 ms at 1,000 trades/s instead of 1.4-1.6
# (bench/ingest.py --only latency). Planning each execution costs far less than that.
PLAN_EACH_EXECUTION = "SET plan_cache_mode = force_custom_plan"


# A spill file is recorded in the transaction that writes its rows, so a replay the
# process could not finish (the file not yet deleted) is never written a second time.
RECORD_REPLAY = """
INSERT INTO storage_replayed_spill_files (sink, file_name) VALUES ({0}, {0})
ON CONFLICT (sink, file_name) DO NOTHING
"""
FORGET_REPLAY = "DELETE FROM storage_replayed_spill_files WHERE sink = {0} AND file_name = {0}"


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
        self._stage_until = 0.0  # monotonic time until which batches take the staging path

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        if self.connected:
            return
        conn = psycopg.connect(**self._params, autocommit=True)
        try:
            conn.execute(CREATE_STAGE)
            conn.execute(PLAN_EACH_EXECUTION)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def transaction(self) -> contextlib.AbstractContextManager:
        # Nested inside an open transaction, psycopg makes this a savepoint.
        return self._conn.transaction()

    def write_batch(self, trades: list[Row], market: list[Row]) -> int:
        """Write rows in a transaction of their own; the number of trades newly inserted.

        A few rows go in one statement that skips stored trades. More are copied straight
        into raw_trades, whose trade key's trigger refuses a stored trade: then the whole
        batch is undone (UniqueViolation, one of data_errors) and the caller writes it
        again with write(), which goes through the staging table and skips stored trades.
        That is rare (a reconnect's overlap, another process); for a while after it, every
        batch takes the staging path at once.
        """
        trades = first_of_each_trade(trades)
        conn = self._conn
        if len(trades) + len(market) <= SMALL_BATCH_ROWS:
            params = [value for row in trades for value in row]
            params.extend(value for row in market for value in row)
            cursor = conn.execute(small_batch_statement(len(trades), len(market)), params)
            return cursor.fetchone()[0]
        with conn.transaction():
            if trades and time.monotonic() >= self._stage_until:
                inserted = self._copy_trades_directly(trades)
            else:
                inserted = self.write(trades, [], isolated=False)
            if market:
                self.write([], market, isolated=False)
        return inserted

    def _copy_trades_directly(self, trades: list[Row]) -> int:
        try:
            with (
                self._conn.cursor() as cursor,
                cursor.copy(f"COPY raw_trades ({STAGE_COLUMNS}) FROM STDIN") as copy,
            ):
                for row in trades:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation as error:
            # The trade key's violation: some trade of the batch is stored already.
            if error.diag.constraint_name in (None, TRADE_KEY_CONSTRAINT):
                self._stage_until = time.monotonic() + STAGE_AFTER_DUPLICATE_SECONDS
            raise
        return len(trades)

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

    def record_replay(self, sink: str, file_name: str) -> bool:
        """Inside the open transaction: False when this spill file was replayed before."""
        cursor = self._conn.execute(RECORD_REPLAY.format("%s"), (sink, file_name))
        return cursor.rowcount == 1

    def forget_replay(self, sink: str, file_name: str) -> None:
        self._conn.execute(FORGET_REPLAY.format("%s"), (sink, file_name))

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
    """Django's SQLite format: naive UTC, space separated. Rows carry UTC text ending in Z;
    spill files written before that end in +00:00."""
    naive = iso[:-1] if iso.endswith("Z") else iso.removesuffix("+00:00")
    return naive.replace("T", " ", 1)


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

    def write_batch(self, trades: list[Row], market: list[Row]) -> int:
        """Write rows in a transaction of their own; the number of trades newly inserted."""
        with self.transaction():
            return self.write(trades, market, isolated=False)

    def record_replay(self, sink: str, file_name: str) -> bool:
        return self._conn.execute(RECORD_REPLAY.format("?"), (sink, file_name)).rowcount == 1

    def forget_replay(self, sink: str, file_name: str) -> None:
        self._conn.execute(FORGET_REPLAY.format("?"), (sink, file_name))

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
