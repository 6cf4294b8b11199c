"""The scheduled jobs: a recorded, verified, rotated backup, and the weekly restore drill."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from psycopg import sql

from marketdata.backups.backup import create_backup
from marketdata.backups.encryption import BackupError, Keys
from marketdata.backups.files import directory_lock, newest_backup, prepare_directory
from marketdata.backups.postgres import (
    STABLE_OUTPUT,
    Database,
    create_database,
    drop_database,
)
from marketdata.backups.restore import check_backup, restore_backup
from marketdata.backups.rotation import RetentionPolicy, rotate
from marketdata.models import Backup, RestoreDrill
from tcp_dashboard.logs.redaction import redact

logger = logging.getLogger(__name__)

# Tables whose rows never change once written, so a restored row must equal the live one.
SAMPLED_TABLES = ("public.raw_trades", "public.market_data")


def retention_policy() -> RetentionPolicy:
    return RetentionPolicy(
        daily=settings.BACKUP_KEEP_DAILY,
        weekly=settings.BACKUP_KEEP_WEEKLY,
        monthly=settings.BACKUP_KEEP_MONTHLY,
    )


def describe(error: Exception) -> str:
    if isinstance(error, BackupError):
        return str(error)
    return redact(f"{type(error).__name__}: {error}")[:2000]


def run_backup(*, directory: Path | None = None, now: datetime | None = None) -> Backup:
    """Back up the database, read the file back to verify it, rotate old backups, and
    record the outcome; raises BackupError (after recording it) when the backup failed."""
    directory = Path(directory or settings.BACKUP_DIR)
    started = timezone.now()
    try:
        database = Database.from_settings()
        keys = Keys.from_environment()
        with directory_lock(prepare_directory(directory)):
            result = create_backup(directory=directory, database=database, keys=keys)
            check_backup(result.path, keys)
            removed = rotate(directory, database.name, retention_policy(), now=now or started)
    except Exception as error:
        message = describe(error)
        logger.error("backups: the backup failed: %s", message)
        try:
            Backup.objects.create(created_at=started, error=message)
        except DatabaseError as unrecorded:
            logger.error("backups: the failure could not be recorded: %s", unrecorded)
        raise BackupError(message) from error
    manifest = result.manifest
    record = Backup.objects.create(
        created_at=datetime.fromisoformat(manifest["created_at"]),
        file_name=result.path.name,
        size=manifest["size"],
        sha256=manifest["sha256"],
        tables=len(manifest["tables"]),
        rows=manifest["rows"],
        seconds=round(result.seconds, 3),
        verified=True,
    )
    Backup.objects.filter(file_name__in=[backup.path.name for backup in removed]).update(
        removed_at=timezone.now()
    )
    logger.info(
        "backups: wrote %s (%d bytes, %d rows in %d tables) in %.1f s; rotated out %d",
        record.file_name,
        record.size,
        record.rows,
        record.tables,
        record.seconds,
        len(removed),
    )
    return record


def scratch_name(live: Database) -> str:
    return f"{live.name}_restore_drill"[:63]


def run_restore_drill(
    *, directory: Path | None = None, sample_rows: int | None = None
) -> RestoreDrill:
    """Restore the newest backup into a scratch database, check it, drop it, and record
    the outcome (never raises for a failed drill: the record says what failed)."""
    directory = Path(directory or settings.BACKUP_DIR)
    sample_rows = settings.BACKUP_DRILL_SAMPLE_ROWS if sample_rows is None else sample_rows
    drill = RestoreDrill(started_at=timezone.now())
    started = time.monotonic()
    live = scratch = None
    try:
        live = Database.from_settings()
        newest = newest_backup(directory, live.name)
        if newest is None:
            raise BackupError(f"no backup of {live.name} to restore in {directory}")
        drill.backup_file, drill.backup_created_at = newest.path.name, newest.created_at
        scratch = live.sibling(scratch_name(live))
        drop_database(live, scratch.name)
        create_database(live, scratch.name)
        restored = restore_backup(newest.path, scratch, keys=Keys.from_environment())
        drill.tables, drill.rows = restored.tables, restored.rows
        drill.sampled_rows = compare_samples(live, scratch, restored.manifest, sample_rows)
        drill.ok = True
        drill.detail = (
            f"restored {restored.rows} rows in {restored.tables} tables, every count and "
            f"checksum as the manifest says; {drill.sampled_rows} sampled rows equal the live ones"
        )
    except Exception as error:
        drill.detail = describe(error)
        logger.error("backups: the restore drill failed: %s", drill.detail)
    finally:
        if scratch is not None:
            try:
                drop_database(live, scratch.name)
            except Exception as error:
                drill.ok = False
                drill.detail += f"; the scratch database was not dropped: {describe(error)}"
    drill.finished_at = timezone.now()
    drill.seconds = round(time.monotonic() - started, 3)
    drill.save()
    if drill.ok:
        logger.info("backups: restore drill of %s passed: %s", drill.backup_file, drill.detail)
    return drill


def compare_samples(live: Database, scratch: Database, manifest: dict, count: int) -> int:
    """The newest `count` rows of each immutable table, restored versus live; raises
    BackupError on the first difference. Returns how many rows were compared."""
    compared = 0
    if count <= 0:
        return compared
    with scratch.connect(autocommit=True) as restored, live.connect(autocommit=True) as current:
        for conn in (restored, current):
            for statement in STABLE_OUTPUT:
                conn.execute(statement)
        for name in SAMPLED_TABLES:
            if name not in manifest["tables"]:
                continue
            table = sql.Identifier(*name.split(".", 1))
            rows = dict(
                restored.execute(
                    sql.SQL("SELECT t.id, t::text FROM {} AS t ORDER BY t.id DESC LIMIT %s").format(
                        table
                    ),
                    [count],
                ).fetchall()
            )
            found = dict(
                current.execute(
                    sql.SQL("SELECT t.id, t::text FROM {} AS t WHERE t.id = ANY(%s)").format(table),
                    [list(rows)],
                ).fetchall()
            )
            for row_id, text in rows.items():
                if found.get(row_id) != text:
                    state = "missing from" if row_id not in found else "different from"
                    raise BackupError(
                        f"sample mismatch: {name} row {row_id} of the backup is {state} "
                        "the live table"
                    )
            compared += len(rows)
    return compared
