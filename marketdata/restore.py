"""Archived rows loaded back into the database, idempotently: a row already there is skipped.

Rows keep their ids. A trade whose (exchange, symbol, trade_id) is already stored is
skipped too, so the duplicate rule holds. On PostgreSQL the day partitions are created
first, so restored rows land in them and not in a default partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow.dataset as ds
from django.db import connection, transaction

from marketdata import archive, partitions
from marketdata.kinds import Kind
from marketdata.models import ArchiveFile
from marketdata.partitions import DAILY_TABLE_OF_KIND, day_of

TABLES = {"trade": "raw_trades", "candles": "candles"}


@dataclass(slots=True, frozen=True)
class Restored:
    files: list[str]
    archived: int  # rows of the range in the archive
    inserted: int  # of them, rows that were not in the database


def restore(kind: Kind, exchange: str, symbol: str, start: datetime, end: datetime) -> Restored:
    """Load one market's archived rows of [start, end) back into the database."""
    records = ArchiveFile.objects.filter(
        kind=kind.name, exchange=exchange, day__gte=day_of(start), day__lte=day_of(end)
    ).order_by("day")
    where = (
        (ds.field("symbol") == symbol)
        & (ds.field(kind.time_field) >= start)
        & (ds.field(kind.time_field) < end)
    )
    archived = inserted = 0
    files = []
    names = [c.name for c in kind.columns]
    for record in records:
        path = archive.verify(record)
        table = ds.dataset(str(path), format="parquet").to_table(filter=where, columns=names)
        if not table.num_rows:
            continue
        files.append(record.path)
        archived += table.num_rows
        rows = list(zip(*(table.column(n).to_pylist() for n in names), strict=True))
        daily = DAILY_TABLE_OF_KIND.get(kind.name)
        if daily is not None and partitions.partitioned():
            partitions.create_partition(daily, record.day)
        inserted += insert_rows(kind, rows)
    return Restored(files, archived, inserted)


def insert_rows(kind: Kind, rows: list[tuple]) -> int:
    table = TABLES.get(kind.name, "market_data")
    names = [c.name for c in kind.columns]
    columns = ", ".join(f'"{n}"' for n in names)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            ops = connection.ops
            values = [
                tuple(ops.adapt_datetimefield_value(v) if isinstance(v, datetime) else v for v in r)
                for r in rows
            ]
            before = connection.connection.total_changes
            placeholders = ", ".join(["%s"] * len(names))
            cursor.executemany(
                f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({placeholders})",
                [tuple(str(v) if hasattr(v, "as_tuple") else v for v in r) for r in values],
            )
            return connection.connection.total_changes - before
        cursor.execute(f"CREATE TEMPORARY TABLE restore_stage (LIKE {table}) ON COMMIT DROP")
        with cursor.cursor.copy(f"COPY restore_stage ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        unknown_trade = ""
        if kind.name == "trade":
            unknown_trade = """WHERE s.trade_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM raw_trade_keys k WHERE k.exchange = s.exchange
                AND k.symbol = s.symbol AND k.trade_id = s.trade_id)"""
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM restore_stage s "
            f"{unknown_trade} ON CONFLICT DO NOTHING"
        )
        inserted = cursor.rowcount
        cursor.execute("DROP TABLE restore_stage")  # also inside a longer transaction
        return inserted
