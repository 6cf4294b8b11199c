"""How the backups stand, for health and the admin: ages of the newest backup and drill."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from marketdata.models import Backup, RestoreDrill

# Backups are scheduled from this migration on: before it nobody could have had one.
SCHEDULED_SINCE = ("marketdata", "0003_backup_schedules")


@dataclass(frozen=True)
class BackupStatus:
    ok: bool
    detail: str
    newest_backup: datetime | None
    newest_restore: datetime | None


def age(moment: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def scheduled_since() -> datetime | None:
    app, name = SCHEDULED_SINCE
    row = MigrationRecorder.Migration.objects.filter(app=app, name=name).first()
    return row.applied if row else None


def backup_status(now: datetime | None = None) -> BackupStatus:
    """Unhealthy when the newest verified backup is older than BACKUP_MAX_AGE_HOURS, when
    the newest restore drill failed, or when no drill passed in BACKUP_DRILL_MAX_AGE_HOURS.
    A fresh installation gets those same periods, counted from when backups were first
    scheduled, to make its first backup and drill."""
    now = now or timezone.now()
    since = scheduled_since() or now
    backup = Backup.objects.filter(verified=True).order_by("-created_at").first()
    restore = RestoreDrill.objects.filter(ok=True).order_by("-started_at").first()
    last_drill = RestoreDrill.objects.order_by("-started_at").first()
    newest_backup = backup.created_at if backup else None
    newest_restore = restore.started_at if restore else None
    problems = []
    backup_limit = timedelta(hours=settings.BACKUP_MAX_AGE_HOURS)
    if (newest_backup or since) < now - backup_limit:
        problems.append(f"no verified backup in {settings.BACKUP_MAX_AGE_HOURS:g} h")
    if last_drill is not None and not last_drill.ok:
        problems.append("the last restore drill failed")
    drill_hours = settings.BACKUP_DRILL_MAX_AGE_HOURS
    if drill_hours and (newest_restore or since) < now - timedelta(hours=drill_hours):
        problems.append(f"no verified restore in {drill_hours:g} h")
    backup_age = f"newest backup {age(newest_backup, now)} old" if backup else "no backup yet"
    restore_age = (
        f"newest verified restore {age(newest_restore, now)} old"
        if restore
        else "no verified restore yet"
    )
    detail = "; ".join([*problems, backup_age, restore_age])
    return BackupStatus(not problems, detail, newest_backup, newest_restore)
