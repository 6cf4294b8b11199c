"""Rotation keeps the newest backup of each of the last days, weeks and months, exactly."""

import os
from datetime import UTC, datetime, timedelta

from marketdata.backups.files import BACKUP_SUFFIX, MANIFEST_SUFFIX, backup_stem, stored_backups
from marketdata.backups.rotation import RetentionPolicy, backups_to_keep, rotate

NOW = datetime(2024, 6, 30, 3, 0, tzinfo=UTC)  # a Sunday


def daily_backups(days: int, hour: int = 2) -> list[datetime]:
    return [NOW.replace(hour=hour) - timedelta(days=n) for n in range(days)]


def make_backup(directory, moment: datetime, database: str = "market") -> None:
    stem = backup_stem(database, moment)
    (directory / f"{stem}{BACKUP_SUFFIX}").write_bytes(b"dump")
    (directory / f"{stem}{MANIFEST_SUFFIX}").write_text("{}")


def test_seven_daily_four_weekly_and_twelve_monthly_backups_are_kept_of_a_year_of_dailies():
    times = daily_backups(400)
    kept = sorted(backups_to_keep(times, RetentionPolicy(7, 4, 12)), reverse=True)
    days = [moment.date().isoformat() for moment in kept]
    assert days == [
        # the last 7 days
        "2024-06-30", "2024-06-29", "2024-06-28", "2024-06-27",
        "2024-06-26", "2024-06-25", "2024-06-24",
        # the newest of each of the last 4 ISO weeks (Sundays; this week's is today's)
        "2024-06-23", "2024-06-16", "2024-06-09",
        # the newest of each of the last 12 months (their last days; June's is today's)
        "2024-05-31", "2024-04-30", "2024-03-31", "2024-02-29", "2024-01-31",
        "2023-12-31", "2023-11-30", "2023-10-31", "2023-09-30", "2023-08-31", "2023-07-31",
    ]  # fmt: skip


def test_several_backups_a_day_keep_only_the_newest_of_each_day():
    late = NOW.replace(hour=23)
    times = [late - timedelta(hours=6 * n) for n in range(12)]  # 3 days, 4 a day
    kept = backups_to_keep(times, RetentionPolicy(daily=2, weekly=0, monthly=0))
    assert sorted(kept) == [late - timedelta(days=1), late]


def test_backups_that_stopped_long_ago_are_not_all_deleted():
    old = [datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=n) for n in range(30)]
    kept = backups_to_keep(old, RetentionPolicy(daily=3, weekly=0, monthly=0))
    assert sorted(kept) == old[-3:]


def test_the_newest_backup_is_kept_even_with_nothing_to_keep():
    times = daily_backups(5)
    assert backups_to_keep(times, RetentionPolicy(0, 0, 0)) == {max(times)}


def test_rotate_deletes_both_files_of_the_dropped_backups_and_nothing_else(tmp_path):
    for moment in daily_backups(10):
        make_backup(tmp_path, moment)
    make_backup(tmp_path, NOW - timedelta(days=40), database="another")
    removed = rotate(tmp_path, "market", RetentionPolicy(3, 2, 1), now=NOW)
    assert sorted(backup.created_at.date().day for backup in removed) == [21, 22, 24, 25, 26, 27]
    left = stored_backups(tmp_path)
    assert [(b.database, b.created_at.day) for b in left] == [
        ("another", 21),
        ("market", 23),  # the newest of last week
        ("market", 28),
        ("market", 29),
        ("market", 30),
    ]
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 2 * len(left)


def test_leftovers_of_a_crashed_backup_go_after_a_day_and_not_before(tmp_path):
    make_backup(tmp_path, NOW)
    stem = backup_stem("market", NOW - timedelta(days=3))
    orphan = tmp_path / f"{stem}{BACKUP_SUFFIX}"  # no manifest: the backup never finished
    partial = tmp_path / f".{stem}{BACKUP_SUFFIX}.123.partial"
    fresh_partial = tmp_path / f".{backup_stem('market', NOW)}{BACKUP_SUFFIX}.124.partial"
    for path in (orphan, partial, fresh_partial):
        path.write_bytes(b"x")
    two_days_ago = (NOW - timedelta(days=2)).timestamp()
    os.utime(orphan, (two_days_ago, two_days_ago))
    os.utime(partial, (two_days_ago, two_days_ago))
    os.utime(fresh_partial, (NOW.timestamp(), NOW.timestamp()))
    rotate(tmp_path, "market", RetentionPolicy(), now=NOW)
    assert not orphan.exists()
    assert not partial.exists()
    assert fresh_partial.exists()
    assert len(stored_backups(tmp_path)) == 1
