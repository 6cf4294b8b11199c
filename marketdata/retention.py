"""Retention: each kind of data stays in the database for its window, then is archived
(where the kind is archived) and removed.

A UTC day of a kind leaves the database once all of it is older than the window of its
exchange (RETENTION_DAYS, or the exchange's own window in the admin): so rows stay between
`days` and `days + 1` days. Before anything is removed, its rows are in a verified archive
file (`marketdata.archive`). On PostgreSQL a day whose exchanges are all past their
window leaves as a whole partition: archived from the attached partition, detached,
counted (every row in it must have been archived, or it is archived again from the
detached table), then dropped with its trades' keys. Otherwise (an exchange with a
longer window shares the day, rows in a default partition, SQLite, candles, collector
status) the archived rows are deleted by id in batches; kinds that are not archived
(1s candles, collector status) by time in batches.

One run at a time (an advisory lock on PostgreSQL, a file lock on SQLite); a run that
finds another running does nothing. Safe to run twice: what is gone is not found again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Count
from django.db.models.functions import TruncDate

from collectors.models import ExchangeRetention
from marketdata import archive, partitions
from marketdata.footprint import storage_snapshot
from marketdata.kinds import KINDS, Kind
from marketdata.models import ArchiveFile, RetentionRun
from marketdata.partitions import DAILY_TABLE_OF_KIND, DAY, day_start
from tcp_dashboard.locks import try_lock

logger = logging.getLogger(__name__)

DELETE_BATCH = 5_000
LOCK_KEY = 7_310_010  # pg_advisory_lock key of the retention run


@dataclass(slots=True)
class DueDay:
    """A day of one kind with rows past the window of at least one exchange."""

    kind: str
    day: date
    rows: dict[str, int]  # exchange -> rows in the database that day
    past: list[str]  # exchanges whose window that day is past

    @property
    def whole(self) -> bool:
        return set(self.past) == set(self.rows)


@dataclass(slots=True)
class RetentionReport:
    dry_run: bool
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: bool = False  # another run held the lock

    @property
    def ok(self) -> bool:
        return not self.errors

    def did(self, text: str) -> None:
        self.actions.append(text)
        logger.info("retention: %s", text)


def windows(kind: str) -> tuple[int, dict[str, int]]:
    """(default days, {exchange: days} where an exchange has its own window)."""
    overrides = dict(
        ExchangeRetention.objects.filter(kind=kind).values_list("exchange__name", "days")
    )
    return settings.RETENTION_DAYS[kind], overrides


def first_kept_day(now: datetime, days: int) -> date:
    """The oldest day still kept with a window of `days`: older days are wholly past it."""
    return (now - timedelta(days=days)).astimezone(UTC).date()


def due_days(kind: Kind, now: datetime) -> list[DueDay]:
    default, overrides = windows(kind.name)
    first_kept = {name: first_kept_day(now, days) for name, days in overrides.items()}
    default_first = first_kept_day(now, default)
    latest = max([default_first, *first_kept.values()])
    rows = (
        kind.rows()
        .filter(**{f"{kind.time_field}__lt": day_start(latest)})
        .annotate(day=TruncDate(kind.time_field, tzinfo=UTC))
        .values_list("day", "exchange")
        .annotate(n=Count("id"))
        .order_by("day", "exchange")
    )
    found: dict[date, dict[str, int]] = defaultdict(dict)
    for day, exchange, count in rows:
        found[day][exchange] = count
    due = []
    for day, counts in sorted(found.items()):
        past = [e for e in counts if day < first_kept.get(e, default_first)]
        if past:
            due.append(DueDay(kind.name, day, counts, sorted(past)))
    return due


# removing ----------------------------------------------------------------------------


def archive_day(kind: Kind, due: DueDay) -> dict[str, archive.Written]:
    low, high = day_start(due.day), day_start(due.day + DAY)
    return {
        exchange: archive.write_day(
            kind, exchange, due.day, archive.day_rows(kind, exchange, low, high)
        )
        for exchange in due.past
    }


def drop_partition(kind: Kind, day: date, written: dict[str, archive.Written]) -> str:
    """Detach a day's partition, make sure every row in it is archived, drop it. On a
    failure the partition is attached again."""
    table = DAILY_TABLE_OF_KIND[kind.name]
    name = table.partition(day)
    partitions.detach_partition(table, name)
    try:
        settle_detached(kind, name, written)
    except BaseException:
        partitions.reattach_partition(table, name, day)
        raise
    mark_removed(kind, day, list(written))  # exchanges whose rows arrived late too
    drop_detached(kind, name)
    return name


def settle_detached(kind: Kind, name: str, written: dict[str, archive.Written]) -> None:
    """Rows that reached the partition after it was archived are archived now."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT exchange, count(*) FROM {name} GROUP BY exchange")
        counts = dict(cursor.fetchall())
    day = datetime.strptime(name[-8:], "%Y%m%d").date()
    for exchange, count in counts.items():
        done = written.get(exchange)
        if done is None or done.rows_read != count:
            written[exchange] = archive.write_day(
                kind, exchange, day, archive.table_rows(kind, name, exchange)
            )
            if written[exchange].rows_read != count:
                raise archive.ArchiveError(
                    f"{name}: {count} rows of {exchange}, {written[exchange].rows_read} archived"
                )


def drop_detached(kind: Kind, name: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        if kind.name == "trade":
            cursor.execute(
                f"""DELETE FROM raw_trade_keys k USING {name} p
                WHERE k.exchange = p.exchange AND k.symbol = p.symbol
                  AND k.trade_id = p.trade_id AND k."timestamp" = p."timestamp" """
            )
        cursor.execute(f"DROP TABLE {name}")


def delete_archived(kind: Kind, due: DueDay, exchange: str, record: ArchiveFile) -> int:
    """Delete, in batches, the rows of one exchange's day that its archive file holds."""
    ids = pq.ParquetFile(archive.verify(record)).read(columns=["id"]).column("id").to_pylist()
    rows = day_queryset(kind, exchange, due.day)
    deleted = 0
    for start in range(0, len(ids), DELETE_BATCH):
        with transaction.atomic():
            deleted += rows.filter(id__in=ids[start : start + DELETE_BATCH]).delete()[0]
    return deleted


def delete_day(kind: Kind, exchange: str, day: date) -> int:
    """Delete one exchange's rows of a day in batches (kinds that are not archived)."""
    rows = day_queryset(kind, exchange, day)
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(rows.values_list("id", flat=True)[:DELETE_BATCH])
            if not batch:
                return deleted
            deleted += rows.filter(id__in=batch).delete()[0]


def day_queryset(kind: Kind, exchange: str, day: date):
    field = kind.time_field
    return kind.rows().filter(
        exchange=exchange,
        **{f"{field}__gte": day_start(day), f"{field}__lt": day_start(day + DAY)},
    )


def mark_removed(kind: Kind, day: date, exchanges: list[str]) -> None:
    """From now on the API reads these days from their files. Marked before the rows go, so
    a reader never misses them: while both hold a row, it is served once."""
    files = ArchiveFile.objects.filter(kind=kind.name, day=day, exchange__in=exchanges)
    files.filter(removed_at__isnull=True).update(removed_at=datetime.now(UTC))


def apply_day(kind: Kind, due: DueDay, report: RetentionReport) -> None:
    table = DAILY_TABLE_OF_KIND.get(kind.name)
    whole_partition = (
        table is not None
        and partitions.partitioned()
        and due.whole
        and due.day in partitions.attached_days(table)
    )
    total = sum(due.rows[e] for e in due.past)
    where = f"{kind.name} {due.day} {', '.join(due.past)}"
    if report.dry_run:
        how = "drop partition" if whole_partition else "delete"
        saved = "archive, then " if kind.archived else ""
        report.did(f"would {saved}{how}: {where} ({total} rows)")
        return
    if not kind.archived:
        deleted = sum(delete_day(kind, exchange, due.day) for exchange in due.past)
        report.did(f"deleted {where}: {deleted} rows")
        return
    written = archive_day(kind, due)
    mark_removed(kind, due.day, list(written))
    files = ", ".join(w.file.path for w in written.values())
    if whole_partition:
        name = drop_partition(kind, due.day, written)
        report.did(f"archived {where} to {files}; dropped partition {name} ({total} rows)")
        return
    deleted = 0
    for exchange, done in written.items():
        deleted += delete_archived(kind, due, exchange, done.file)
    report.did(f"archived {where} to {files}; deleted {deleted} rows")


def settle_leftovers(kind: Kind, report: RetentionReport) -> None:
    """Partitions a stopped run left detached: archive what they hold, then drop them."""
    table = DAILY_TABLE_OF_KIND.get(kind.name)
    if table is None or not partitions.partitioned() or report.dry_run:
        return
    for day, name in sorted(partitions.detached_partitions(table).items()):
        written: dict[str, archive.Written] = {}
        settle_detached(kind, name, written)
        mark_removed(kind, day, list(written))
        drop_detached(kind, name)
        report.did(f"archived and dropped the detached partition {name}")


def apply_kind(kind: Kind, now: datetime, report: RetentionReport, deadline: float) -> None:
    settle_leftovers(kind, report)
    for due in due_days(kind, now):
        if time.monotonic() > deadline:
            report.did(f"{kind.name}: out of time; the next run goes on")
            return
        apply_day(kind, due, report)
    drop_empty_partitions(kind, now, report)


def drop_empty_partitions(kind: Kind, now: datetime, report: RetentionReport) -> None:
    """Partitions of days no longer kept that hold no rows (nothing came, or all left)."""
    table = DAILY_TABLE_OF_KIND.get(kind.name)
    if table is None or not partitions.partitioned():
        return
    oldest = keep_from(now)[kind.name]
    for day, name in sorted(partitions.attached_days(table).items()):
        if day >= oldest:
            break
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
            if cursor.fetchone()[0]:
                continue
        if report.dry_run:
            report.did(f"would drop the empty partition {name}")
            continue
        drop_partition(kind, day, {})  # archives whatever reached it meanwhile
        report.did(f"dropped the empty partition {name}")


def keep_from(now: datetime) -> dict[str, date]:
    """The oldest day each kind keeps in the database under its longest window."""
    kept = {}
    for name in KINDS:
        default, overrides = windows(name)
        kept[name] = first_kept_day(now, max([default, *overrides.values()]))
    return kept


@contextlib.contextmanager
def run_lock() -> Iterator[bool]:
    """One retention run at a time, across processes and machines."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            got = cursor.fetchone()[0]
        try:
            yield got
        finally:
            if got:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        return
    lock = try_lock(archive.archive_dir() / ".retention.lock")
    if lock is None:
        yield False
        return
    with lock:
        yield True


def yield_cpu() -> None:
    """Lower this process's CPU priority by RETENTION_NICE: archiving is background work,
    and collectors on the same machine must keep their latency while it runs."""
    if settings.RETENTION_NICE and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(settings.RETENTION_NICE)


def apply_retention(
    now: datetime | None = None, *, dry_run: bool = False, time_limit: float = 3000.0
) -> RetentionReport:
    """Archive and remove every day past its window; record the run (unless a dry run)."""
    now = now or datetime.now(UTC)
    report = RetentionReport(dry_run=dry_run)
    deadline = time.monotonic() + time_limit
    with run_lock() as locked:
        if not locked:
            report.skipped = True
            report.did("another retention run is in progress; nothing done")
            return report
        run = None if dry_run else RetentionRun.objects.create(started_at=now)
        if not dry_run:
            try:
                partitions.ensure_partitions(now, settings.PARTITIONS_AHEAD_DAYS, keep_from(now))
            except Exception as error:
                report.errors.append(f"partitions: {describe(error)}")
                logger.exception("retention: creating partitions failed")
        for kind in KINDS.values():
            try:
                apply_kind(kind, now, report, deadline)
            except Exception as error:
                report.errors.append(f"{kind.name}: {describe(error)}")
                logger.exception("retention: %s failed; nothing of it past this was removed", kind)
        if run is not None:
            record_run(run, report)
    return report


def describe(error: BaseException) -> str:
    """What went wrong, in words safe to show anyone (health, admin); details are logged."""
    if isinstance(error, OSError) and error.strerror:
        return f"archive write failed ({error.strerror.lower()})"
    if isinstance(error, archive.ArchiveError):
        return str(error)
    if isinstance(error, DatabaseError):
        return f"database error ({type(error).__name__})"
    return type(error).__name__


def record_run(run: RetentionRun, report: RetentionReport) -> None:
    storage = storage_snapshot()
    run.finished_at = datetime.now(UTC)
    run.ok = report.ok
    run.error = "; ".join(report.errors)
    run.actions = report.actions
    run.database_bytes = storage.pop("_database")
    run.archive_bytes = storage.pop("_archive")
    run.storage = storage
    run.save()
