"""Daily partitions of raw_trades and market_data on PostgreSQL: naming, creating ahead, removing.

`raw_trades` is partitioned by day of `timestamp`; `market_data` by data type (LIST), each
type's table by day (`market_data_orderbook_p20240131`). Every daily table has a DEFAULT
partition, so a row for a day without a partition (far in the future, or a late row for a
day already removed) is stored, never refused. Creating a partition moves the default
partition's rows of that day into it first, so it never fails on them.

Partitions are created as plain tables and then attached: ATTACH takes a SHARE UPDATE
EXCLUSIVE lock on the parent, which inserts do not wait for (CREATE TABLE ... PARTITION OF
would take an ACCESS EXCLUSIVE one). Detaching needs an ACCESS EXCLUSIVE lock on the
parent for a moment; it waits at most LOCK_TIMEOUT_MS and is retried a moment later, so
that a writer queued behind it is never held up for longer than that.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time

from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 5
LOCK_ATTEMPTS = 400
DAY = timedelta(days=1)
PARTITION_SUFFIX = re.compile(r"_p(\d{8})$")


@dataclass(slots=True, frozen=True)
class DailyTable:
    """A table partitioned by day of `timestamp`; `parent` is the table queries name."""

    name: str
    kind: str
    parent: str

    @property
    def default(self) -> str:
        return f"{self.name}_default"

    def partition(self, day: date) -> str:
        return f"{self.name}_p{day:%Y%m%d}"


MARKET_DATA_TYPES = ("orderbook", "ticker", "candle", "balance")
DAILY_TABLES = (
    DailyTable("raw_trades", "trade", "raw_trades"),
    *(DailyTable(f"market_data_{kind}", kind, "market_data") for kind in MARKET_DATA_TYPES),
)
DAILY_TABLE_OF_KIND = {table.kind: table for table in DAILY_TABLES}


def day_start(day: date) -> datetime:
    return datetime.combine(day, day_time(), tzinfo=UTC)


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def partitioned() -> bool:
    """Whether this database has the daily partitions (PostgreSQL) or plain tables (SQLite)."""
    return connection.vendor == "postgresql"


def attached_days(table: DailyTable) -> dict[date, str]:
    """The days that have a partition attached to `table`, with the partition's name."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            """,
            [table.name],
        )
        names = [row[0] for row in cursor.fetchall()]
    days = {}
    for name in names:
        match = PARTITION_SUFFIX.search(name)
        if match:
            days[datetime.strptime(match[1], "%Y%m%d").date()] = name
    return days


def default_days(table: DailyTable) -> list[date]:
    """Days that have rows in the default partition (normally none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT DISTINCT (date_trunc('day', "timestamp" AT TIME ZONE 'UTC'))::date
            FROM {table.default} ORDER BY 1"""
        )
        return [row[0] for row in cursor.fetchall()]


def with_lock_retries(action, what: str):
    """Run `action(cursor)` in a transaction whose locks wait at most LOCK_TIMEOUT_MS; retry."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                return action(cursor)
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != "55P03" or attempt == LOCK_ATTEMPTS:
                raise
            logger.debug("partitions: %s waited for a lock; attempt %d", what, attempt)
            time.sleep(random.uniform(0.005, 0.05))  # into a gap between the writers' commits
    raise AssertionError("unreachable")


def create_partition(table: DailyTable, day: date) -> bool:
    """Attach `table`'s partition of `day`, moving that day's rows out of the default
    partition into it; False if it was already there."""
    name = table.partition(day)
    low, high = day_start(day), day_start(day + DAY)

    def attach(cursor) -> bool:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        if cursor.fetchone()[0]:
            return False
        # The CHECK lets ATTACH skip scanning the new table; the parent's indexes and
        # primary key are built on it by ATTACH.
        cursor.execute(
            f"""CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS,
            CONSTRAINT {name}_day CHECK ("timestamp" >= %s AND "timestamp" < %s))""",
            [low, high],
        )
        cursor.execute(
            f"""WITH moved AS (DELETE FROM {table.default}
                WHERE "timestamp" >= %s AND "timestamp" < %s RETURNING *)
            INSERT INTO {name} SELECT * FROM moved""",
            [low, high],
        )
        moved = cursor.rowcount
        cursor.execute(
            f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [low, high],
        )
        cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_day")
        if moved:
            logger.info("partitions: %s created with %d rows from %s", name, moved, table.default)
        return True

    return with_lock_retries(attach, f"attach {name}")


def ensure_partitions(now: datetime, ahead: int, keep_from: dict[str, date]) -> list[str]:
    """Create every missing partition from today to `ahead` days on, and for each day
    still kept (from `keep_from[kind]`) whose rows wait in a default partition.
    Returns the names created."""
    if not partitioned():
        return []
    today = day_of(now)
    created = []
    for table in DAILY_TABLES:
        have = attached_days(table)
        wanted = {today + timedelta(days=n) for n in range(ahead + 1)}
        oldest = keep_from.get(table.kind, today)
        wanted.update(d for d in default_days(table) if oldest <= d <= today + timedelta(ahead))
        for day in sorted(wanted - set(have)):
            if create_partition(table, day):
                created.append(table.partition(day))
    if created:
        logger.info("partitions: created %s", ", ".join(created))
    return created


def detach_partition(table: DailyTable, name: str) -> None:
    """Take a partition out of its table; its rows stay in it, no longer seen by queries."""
    with_lock_retries(
        lambda cursor: cursor.execute(f"ALTER TABLE {table.name} DETACH PARTITION {name}"),
        f"detach {name}",
    )


def reattach_partition(table: DailyTable, name: str, day: date) -> None:
    """Put a detached partition back, with rows of its day that reached the default since."""
    low, high = day_start(day), day_start(day + DAY)

    def attach(cursor) -> None:
        cursor.execute(
            f"""WITH moved AS (DELETE FROM {table.default}
                WHERE "timestamp" >= %s AND "timestamp" < %s RETURNING *)
            INSERT INTO {name} SELECT * FROM moved""",
            [low, high],
        )
        cursor.execute(
            f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [low, high],
        )

    with_lock_retries(attach, f"reattach {name}")


def detached_partitions(table: DailyTable) -> dict[date, str]:
    """Partitions of `table` that exist but are detached (a retention run stopped midway)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_class c
            WHERE c.relkind = 'r' AND c.relname ~ %s AND NOT c.relispartition
            """,
            [f"^{table.name}_p[0-9]{{8}}$"],
        )
        names = [row[0] for row in cursor.fetchall()]
    return {datetime.strptime(n[-8:], "%Y%m%d").date(): n for n in names}


def partition_horizon(table: DailyTable) -> date | None:
    """The last day that has a partition, or None."""
    days = attached_days(table)
    return max(days) if days else None
