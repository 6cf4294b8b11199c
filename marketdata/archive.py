"""The Parquet archive: one zstd-compressed file per kind of data, exchange and UTC day.

    ARCHIVE_DIR/<kind>/<exchange>/<YYYY-MM-DD>.parquet
    ARCHIVE_DIR/manifest.jsonl      one line per file written: rows, bytes, sha256

A file is written under a temporary name, fsynced, read back and checked (its row count
must be what was read from the database, plus what the file held before), then renamed
into place and the directory fsynced; only then is its manifest line written and its
`ArchiveFile` row saved. Rows of a day that already has a file (late rows, a re-run) are
added to it: the old row groups are copied, then the rows whose id it does not hold yet.
Rows are sorted by symbol, timestamp and id, in row groups of ROW_GROUP_ROWS, so a
reader's filters on symbol and time skip most of a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from django.conf import settings
from django.db import connection
from django.db.models import TextField
from django.db.models.functions import Cast

from collectors.storage.spill import fsync_directory
from marketdata.kinds import Kind
from marketdata.models import ArchiveFile

ROW_GROUP_ROWS = 10_000
ZSTD_LEVEL = 9
DICTIONARY_COLUMNS = ["exchange", "symbol", "side", "data_type", "timeframe"]
MANIFEST = "manifest.jsonl"


class ArchiveError(RuntimeError):
    """An archive file could not be written or does not hold what it should."""


@dataclass(slots=True, frozen=True)
class Written:
    file: ArchiveFile
    rows_read: int  # rows read from the database this time, all of them now in the file
    rows_added: int


def archive_dir() -> Path:
    return Path(settings.ARCHIVE_DIR)


def relative_path(kind: str, exchange: str, day: date) -> str:
    return f"{kind}/{exchange}/{day:%Y-%m-%d}.parquet"


def day_rows(kind: Kind, exchange: str, start: datetime, end: datetime) -> Iterator[list[tuple]]:
    """One exchange's rows of a kind in [start, end), as archive column tuples, in chunks."""
    field = kind.time_field
    columns = [Cast(c.name, TextField()) if c.json else c.name for c in kind.columns]
    rows = (
        kind.rows()
        .filter(exchange=exchange, **{f"{field}__gte": start, f"{field}__lt": end})
        .order_by("symbol", field, "id")
        .values_list(*columns)
    )
    chunk: list[tuple] = []
    for row in rows.iterator(chunk_size=ROW_GROUP_ROWS):
        chunk.append(row)
        if len(chunk) == ROW_GROUP_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def table_rows(kind: Kind, table: str, exchange: str) -> Iterator[list[tuple]]:
    """One exchange's rows of a partition that is no longer attached (PostgreSQL)."""
    columns = ", ".join(f"{c.name}::text" if c.json else f'"{c.name}"' for c in kind.columns)
    connection.ensure_connection()
    name = f"archive_{secrets.token_hex(4)}"
    with connection.connection.cursor(name=name, withhold=True) as cursor:
        cursor.itersize = ROW_GROUP_ROWS
        cursor.execute(
            f'SELECT {columns} FROM {table} WHERE exchange = %s ORDER BY symbol, "timestamp", id',
            [exchange],
        )
        while chunk := cursor.fetchmany(ROW_GROUP_ROWS):
            yield chunk


def paced(chunks: Iterable[list[tuple]]) -> Iterator[list[tuple]]:
    """The chunks, with a rest after each as long as its work took times ARCHIVE_PACE:
    archiving is background work, and the database and CPUs it uses are the collectors'."""
    pace = settings.ARCHIVE_PACE
    started = time.monotonic()
    for chunk in chunks:
        yield chunk
        if pace:
            time.sleep(min(1.0, (time.monotonic() - started) * pace))
        started = time.monotonic()


def to_table(kind: Kind, rows: list[tuple]) -> pa.Table:
    values = list(zip(*rows, strict=True)) if rows else [[] for _ in kind.columns]
    arrays = [
        pa.array(_utc(column) if c.type == pa.timestamp("us", tz="UTC") else column, c.type)
        for c, column in zip(kind.columns, values, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=kind.schema())


def _utc(values: Iterable[datetime | None]) -> list[datetime | None]:
    return [v if v is None or v.tzinfo is not None else v.replace(tzinfo=UTC) for v in values]


def write_day(kind: Kind, exchange: str, day: date, chunks: Iterable[list[tuple]]) -> Written:
    """Add one exchange's rows of a day to its archive file (created if new); checked and
    durable on return. ArchiveError (or OSError) if it could not be; nothing changes then."""
    relative = relative_path(kind.name, exchange, day)
    path = archive_dir() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    before = pq.ParquetFile(path) if path.exists() else None
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    rows_read = added = 0
    first = last = None
    try:
        with temporary.open("wb") as sink:
            writer = pq.ParquetWriter(
                sink,
                kind.schema(),
                compression="zstd",
                compression_level=ZSTD_LEVEL,
                use_dictionary=[c.name for c in kind.columns if c.name in DICTIONARY_COLUMNS],
            )
            with writer:
                if before is not None:
                    for index in range(before.num_row_groups):
                        writer.write_table(before.read_row_group(index))
                    held = before.read(columns=["id"]).column("id")
                for chunk in paced(chunks):
                    rows_read += len(chunk)
                    table = to_table(kind, chunk)
                    if before is not None:
                        table = table.filter(pc.invert(pc.is_in(table["id"], value_set=held)))
                    if not table.num_rows:
                        continue
                    added += table.num_rows
                    span = pc.min_max(table["timestamp"]).as_py()
                    first = span["min"] if first is None else min(first, span["min"])
                    last = span["max"] if last is None else max(last, span["max"])
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            sink.flush()
            os.fsync(sink.fileno())
        total = (before.metadata.num_rows if before is not None else 0) + added
        if before is not None and not added:
            temporary.unlink()
            record = ArchiveFile.objects.get(kind=kind.name, exchange=exchange, day=day)
            return Written(record, rows_read, 0)
        digest, size = check_file(temporary, total)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    finally:
        if hasattr(chunks, "close"):
            chunks.close()  # a reader stopped midway lets go of its cursor now
    previous = ArchiveFile.objects.filter(kind=kind.name, exchange=exchange, day=day).first()
    if previous is not None:
        first = min(filter(None, (first, previous.first_timestamp)))
        last = max(filter(None, (last, previous.last_timestamp)))
    record, _ = ArchiveFile.objects.update_or_create(
        kind=kind.name,
        exchange=exchange,
        day=day,
        defaults={
            "path": relative,
            "rows": total,
            "bytes": size,
            "sha256": digest,
            "first_timestamp": first,
            "last_timestamp": last,
            "written_at": datetime.now(UTC),
        },
    )
    append_manifest(record)
    return Written(record, rows_read, added)


def check_file(path: Path, rows: int) -> tuple[str, int]:
    """Read a written file back: its row count must be `rows`; its sha256 and size."""
    try:
        found = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as error:
        raise ArchiveError(f"{path.name} cannot be read back: {error}") from error
    if found != rows:
        raise ArchiveError(f"{path.name} holds {found} rows, {rows} were written")
    return sha256_of(path), path.stat().st_size


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify(record: ArchiveFile) -> Path:
    """The file of `record`, after checking it is whole; ArchiveError if it is not."""
    path = archive_dir() / record.path
    if not path.exists():
        raise ArchiveError(f"{record.path} is missing from {archive_dir()}")
    if sha256_of(path) != record.sha256:
        raise ArchiveError(f"{record.path} does not match its checksum")
    return path


def append_manifest(record: ArchiveFile) -> None:
    line = {
        "path": record.path,
        "kind": record.kind,
        "exchange": record.exchange,
        "day": record.day.isoformat(),
        "rows": record.rows,
        "bytes": record.bytes,
        "sha256": record.sha256,
        "first_timestamp": _iso(record.first_timestamp),
        "last_timestamp": _iso(record.last_timestamp),
        "written_at": _iso(record.written_at),
    }
    with (archive_dir() / MANIFEST).open("a") as manifest:
        manifest.write(json.dumps(line) + "\n")
        manifest.flush()
        os.fsync(manifest.fileno())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


# reading ----------------------------------------------------------------------------


def read_rows(
    paths: list[Path], where: ds.Expression | None, columns: list[str]
) -> list[dict[str, Any]]:
    """Rows of archive files matching `where`, as dicts of Python values (Decimals, UTC
    datetimes, JSON text), in file order."""
    if not paths:
        return []
    table = ds.dataset([str(p) for p in paths], format="parquet").to_table(
        columns=columns, filter=where
    )
    return table.to_pylist()


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as PostgreSQL prints a NUMERIC of its scale (plain notation)."""
    return None if value is None else format(value, "f")
