"""How much is stored where: bytes in the database and the archive, growth per day, the
oldest day of each kind of data, and whether the lifecycle is healthy.

Each retention run records a snapshot (`RetentionRun.storage`); growth per day compares
the newest run with the newest one at least GROWTH_SPAN older.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Min, Sum

from marketdata import partitions
from marketdata.kinds import KINDS
from marketdata.models import ArchiveFile, RetentionRun

GROWTH_SPAN = timedelta(hours=20)
RELATIONS = {
    "trade": ["raw_trades", "raw_trade_keys"],
    **{kind: [f"market_data_{kind}"] for kind in partitions.MARKET_DATA_TYPES},
    "candles": ["candles"],
    "collector_status": ["collector_status"],
}


def database_bytes() -> int:
    """The whole database: PostgreSQL's size of it, or the SQLite file's."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0]
    return Path(settings.DATABASES["default"]["NAME"]).stat().st_size


def archive_bytes() -> int:
    return ArchiveFile.objects.aggregate(total=Sum("bytes"))["total"] or 0


def kind_bytes() -> dict[str, int]:
    """Bytes (heap, indexes, TOAST) of each kind's tables and partitions (PostgreSQL).
    1s candles share the candles table and are counted under candles."""
    if connection.vendor != "postgresql":
        return {}
    sizes = {}
    with connection.cursor() as cursor:
        for kind, relations in RELATIONS.items():
            cursor.execute(
                """SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
                FROM unnest(%s::regclass[]) AS r(rel), pg_partition_tree(r.rel) t
                WHERE t.isleaf""",
                [relations],
            )
            sizes[kind] = int(cursor.fetchone()[0])
    return sizes


def storage_snapshot() -> dict:
    """Per kind: bytes in the database and the archive, the oldest day in each; and the
    totals under "_database" and "_archive"."""
    in_database = kind_bytes()
    per_kind = ArchiveFile.objects.values("kind").annotate(b=Sum("bytes"), d=Min("day"))
    archived = {row["kind"]: row for row in per_kind}
    snapshot: dict = {}
    for name, kind in KINDS.items():
        oldest = kind.rows().aggregate(oldest=Min(kind.time_field))["oldest"]
        files = archived.get(name, {})
        snapshot[name] = {
            "database_bytes": in_database.get(name),
            "archive_bytes": files.get("b") or 0,
            "oldest_in_database": oldest.date().isoformat() if oldest else None,
            "oldest_archived": files["d"].isoformat() if files else None,
        }
    snapshot["_database"] = database_bytes()
    snapshot["_archive"] = sum(row["b"] for row in archived.values())
    return snapshot


@dataclass(slots=True, frozen=True)
class Growth:
    database_per_day: float | None
    archive_per_day: float | None


def growth() -> Growth:
    """Bytes a day, from the newest recorded run and one at least GROWTH_SPAN before it."""
    runs = RetentionRun.objects.filter(finished_at__isnull=False, database_bytes__isnull=False)
    newest = runs.first()
    if newest is None:
        return Growth(None, None)
    older = runs.filter(started_at__lte=newest.started_at - GROWTH_SPAN).first()
    if older is None:
        return Growth(None, None)
    days = (newest.started_at - older.started_at) / timedelta(days=1)
    return Growth(
        (newest.database_bytes - older.database_bytes) / days,
        ((newest.archive_bytes or 0) - (older.archive_bytes or 0)) / days,
    )


def size_text(value: float | None) -> str:
    if value is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def growth_text(value: float | None) -> str:
    return "not known yet" if value is None else f"{size_text(value)}/day"


@dataclass(slots=True, frozen=True)
class LifecycleHealth:
    ok: bool
    detail: str


def lifecycle_health(now: datetime | None = None) -> LifecycleHealth:
    """Unhealthy when the newest retention run failed or a table has no partition for
    tomorrow; the detail says how much is stored where, and the oldest day of each kind."""
    now = now or datetime.now(UTC)
    problems = []
    last = RetentionRun.objects.filter(finished_at__isnull=False).first()
    if last is not None and not last.ok:
        problems.append(f"retention failed at {last.started_at:%Y-%m-%d %H:%M}Z: {last.error}")
    if partitions.partitioned():
        tomorrow = partitions.day_of(now) + timedelta(days=1)
        for table in partitions.DAILY_TABLES:
            horizon = partitions.partition_horizon(table)
            if horizon is None or horizon < tomorrow:
                problems.append(f"{table.name} has no partition for {tomorrow}")
    rate = growth()
    sizes = (
        f"database {size_text(database_bytes())} ({growth_text(rate.database_per_day)}), "
        f"archive {size_text(archive_bytes())} ({growth_text(rate.archive_per_day)})"
    )
    oldest = []
    for name, row in ((last.storage if last else None) or {}).items():
        kept = row.get("oldest_archived") or row.get("oldest_in_database")
        if kept:
            oldest.append(f"{name} {kept}")
    detail = sizes + ("; oldest kept: " + ", ".join(oldest) if oldest else "")
    if last is None:
        detail += "; retention has not run yet"
    return LifecycleHealth(not problems, "; ".join([*problems, detail]))
