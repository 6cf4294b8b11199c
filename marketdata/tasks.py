"""Celery tasks of the market-data app: thin wrappers around its services."""

import socket
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection

from marketdata.backups.encryption import BackupError
from marketdata.backups.jobs import run_backup, run_restore_drill
from marketdata.partitions import ensure_partitions
from marketdata.retention import apply_retention, keep_from, yield_cpu
from marketdata.rollups import rollup_recent_candles
from marketdata.times import parse_time


@shared_task(name="marketdata.ping", time_limit=30, soft_time_limit=20)
def ping() -> dict:
    """Round trip through a worker: answers with its host and whether the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        database_ok = cursor.fetchone() == (1,)
    return {"pong": True, "host": socket.gethostname(), "database": database_ok}


@shared_task(name="marketdata.rollup_candles", time_limit=600, soft_time_limit=540)
def rollup_candles(
    now: str | None = None,
    lookback_seconds: float | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
) -> dict:
    """Rebuild the recently closed candles from `raw_trades`, folding in late trades.

    `now` (ISO 8601 or epoch ms) pins the window, so a retried run does the same work; idempotent.
    """
    written = rollup_recent_candles(
        now=parse_time(now) if now else None,
        lookback=None if lookback_seconds is None else timedelta(seconds=lookback_seconds),
        exchange=exchange,
        symbol=symbol,
    )
    return {"now": now, "written": written}


# Backups and drills run for long: acknowledged when they start, so that one longer than
# the broker's visibility timeout is not handed to a second worker. A lost run shows in health.
LONG_RUNNING = {
    "time_limit": settings.BACKUP_TIME_LIMIT,
    "soft_time_limit": settings.BACKUP_TIME_LIMIT - 60,
    "acks_late": False,
}


@shared_task(name="marketdata.backup", **LONG_RUNNING)
def backup() -> dict:
    """Back up the database into BACKUP_DIR, verify the file, rotate (docs/backups.md)."""
    record = run_backup()
    return {"file": record.file_name, "size": record.size, "rows": record.rows}


@shared_task(name="marketdata.restore_drill", **LONG_RUNNING)
def restore_drill() -> dict:
    """Restore the newest backup into a scratch database and check it; fails if it failed."""
    drill = run_restore_drill()
    if not drill.ok:
        raise BackupError(drill.detail)
    return {"backup": drill.backup_file, "rows": drill.rows, "sampled_rows": drill.sampled_rows}


@shared_task(name="marketdata.retention", time_limit=3600, soft_time_limit=3500)
def retention(now: str | None = None) -> dict:
    """Archive and remove what is past its retention window (docs/data-lifecycle.md)."""
    yield_cpu()
    report = apply_retention(parse_time(now) if now else None, time_limit=3000)
    return {"ok": report.ok, "actions": report.actions, "errors": report.errors}


@shared_task(name="marketdata.create_partitions", time_limit=300, soft_time_limit=270)
def create_partitions(now: str | None = None) -> dict:
    """Create the daily partitions of the coming PARTITIONS_AHEAD_DAYS days (PostgreSQL)."""
    moment = parse_time(now) if now else datetime.now(UTC)
    created = ensure_partitions(moment, settings.PARTITIONS_AHEAD_DAYS, keep_from(moment))
    return {"created": created}
