"""Which backups to keep: the newest of each of the last N days, weeks and months.

The policy counts periods that have a backup, not calendar periods back from today, so
backups that stopped for a while are never all deleted by the passing of time. The newest
backup is always kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from marketdata.backups.files import (
    BACKUP_SUFFIX,
    PARTIAL_SUFFIX,
    StoredBackup,
    parse_stem,
    stored_backups,
)

logger = logging.getLogger(__name__)

STALE_AFTER = timedelta(days=1)  # leftovers of a crashed backup are removed after this


@dataclass(frozen=True)
class RetentionPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12


PERIODS: list[tuple[str, Callable[[datetime], tuple]]] = [
    ("daily", lambda moment: (moment.year, moment.month, moment.day)),
    ("weekly", lambda moment: moment.isocalendar()[:2]),
    ("monthly", lambda moment: (moment.year, moment.month)),
]


def backups_to_keep(times: Iterable[datetime], policy: RetentionPolicy) -> set[datetime]:
    """The backup times the policy keeps (times in UTC)."""
    newest_first = sorted(set(times), reverse=True)
    keep = set(newest_first[:1])
    for name, period_of in PERIODS:
        wanted = getattr(policy, name)
        periods: set[tuple] = set()
        for moment in newest_first:
            period = period_of(moment)
            if period in periods:
                continue
            if len(periods) >= wanted:
                break
            periods.add(period)
            keep.add(moment)
    return keep


def rotate(
    directory: Path, database: str, policy: RetentionPolicy, *, now: datetime
) -> list[StoredBackup]:
    """Delete the backups of `database` the policy does not keep, and leftovers of crashed
    backups older than a day; returns the backups deleted."""
    backups = stored_backups(directory, database)
    keep = backups_to_keep([backup.created_at for backup in backups], policy)
    removed = [backup for backup in backups if backup.created_at not in keep]
    for backup in removed:
        for path in (backup.path, backup.manifest):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        logger.info("backups: rotated out %s", backup.path.name)
    remove_leftovers(directory, database, now=now)
    return removed


def remove_leftovers(directory: Path, database: str, *, now: datetime) -> None:
    """Partial files and dumps without a manifest, older than STALE_AFTER."""
    complete = {backup.path.name for backup in stored_backups(directory, database)}
    for entry in directory.iterdir():
        name = entry.name
        if name.endswith(PARTIAL_SUFFIX) and name.startswith(f".{database}-"):
            stale = True
        elif name.endswith(BACKUP_SUFFIX) and name not in complete:
            parsed = parse_stem(name[: -len(BACKUP_SUFFIX)])
            stale = parsed is not None and parsed[0] == database
        else:
            continue
        try:
            age = now.timestamp() - entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if stale and age > STALE_AFTER.total_seconds():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            logger.info("backups: removed the leftover %s", name)
