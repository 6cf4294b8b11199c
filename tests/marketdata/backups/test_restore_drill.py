"""The recorded backup job and the restore drill, against the real test database."""

import psycopg
import pytest
from django.db import connection

from marketdata.backups.encryption import BackupError
from marketdata.backups.files import stored_backups
from marketdata.backups.jobs import run_backup, run_restore_drill, scratch_name
from marketdata.models import Backup, MarketData, RawTrade, RestoreDrill
from marketdata.tasks import backup as backup_task
from marketdata.tasks import restore_drill as restore_drill_task
from tests.marketdata.backups.conftest import tamper_one_byte

pytestmark = pytest.mark.django_db(transaction=True)


def database_exists(live, name: str) -> bool:
    with live.sibling("postgres").connect(autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return found is not None


@pytest.fixture
def ticks():
    MarketData.objects.bulk_create(
        MarketData(
            exchange="okx",
            symbol="BTC-USDT",
            data_type="ticker",
            timestamp=f"2024-05-01T00:01:{n:02d}Z",
            data={"last": str(60000 + n)},
        )
        for n in range(50)
    )


def test_a_backup_is_recorded_verified_and_rotation_marks_what_it_removed(
    backup_key, backup_dir, some_trades, settings
):
    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 1, 0, 0
    first = run_backup()
    second = run_backup()
    assert first.verified and second.verified
    assert (second.rows, second.tables) == (first.rows + 1, first.tables)  # plus the first record
    assert [b.path.name for b in stored_backups(backup_dir)] == [second.file_name]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.removed_at is not None
    assert second.removed_at is None


def test_a_failed_backup_is_recorded_with_its_reason(backup_dir, monkeypatch):
    monkeypatch.delenv("BACKUP_ENCRYPTION_KEY", raising=False)
    with pytest.raises(BackupError, match="BACKUP_ENCRYPTION_KEY is not set"):
        run_backup()
    record = Backup.objects.get()
    assert not record.verified
    assert "BACKUP_ENCRYPTION_KEY is not set" in record.error
    assert list(backup_dir.iterdir()) == [backup_dir / ".lock"]


def test_a_drill_restores_the_newest_backup_checks_it_and_drops_the_scratch_database(
    backup_key, backup_dir, some_trades, ticks, live
):
    run_backup()
    newest = run_backup()
    drill = run_restore_drill()

    assert drill.ok, drill.detail
    assert drill.backup_file == newest.file_name
    assert drill.rows == newest.rows
    assert drill.sampled_rows == 200 + 50  # the newest 200 trades and all 50 tickers
    assert "every count and checksum as the manifest says" in drill.detail
    assert RestoreDrill.objects.get().ok
    assert not database_exists(live, scratch_name(live))


def test_a_drill_of_a_corrupted_backup_records_the_failure(
    backup_key, backup_dir, some_trades, live
):
    record = run_backup()
    tamper_one_byte(backup_dir / record.file_name)
    drill = run_restore_drill()

    assert not drill.ok
    assert "tampered or corrupt" in drill.detail
    assert RestoreDrill.objects.get().detail == drill.detail
    assert not database_exists(live, scratch_name(live))


def test_a_drill_fails_when_a_restored_row_differs_from_the_live_one(
    backup_key, backup_dir, some_trades
):
    run_backup()
    newest = RawTrade.objects.order_by("-id").first()
    RawTrade.objects.filter(pk=newest.pk).update(price="1.00000000")
    drill = run_restore_drill()
    assert not drill.ok
    assert f"sample mismatch: public.raw_trades row {newest.pk}" in drill.detail


def test_a_drill_without_any_backup_records_that(backup_key, backup_dir):
    drill = run_restore_drill()
    assert not drill.ok
    assert drill.detail.startswith(f"no backup of {connection.settings_dict['NAME']} to restore")


def test_a_drill_cleans_up_a_scratch_database_left_by_a_crashed_one(
    backup_key, backup_dir, some_trades, live
):
    with live.sibling("postgres").connect(autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {scratch_name(live)}")
    with psycopg.connect(live.sibling(scratch_name(live)).url, autocommit=True) as conn:
        conn.execute("CREATE TABLE leftover (id int)")
    run_backup()
    assert run_restore_drill().ok
    assert not database_exists(live, scratch_name(live))


def test_the_backup_and_drill_tasks_run_on_a_real_worker(
    backup_key, backup_dir, monkeypatch, some_trades, request
):
    monkeypatch.setenv("BACKUP_DIR", str(backup_dir))  # the worker reads its own settings
    request.getfixturevalue("celery_worker_process")

    made = backup_task.delay().get(timeout=120)
    assert made["rows"] >= 300
    assert Backup.objects.get(file_name=made["file"]).verified
    drilled = restore_drill_task.delay().get(timeout=120)
    assert drilled["backup"] == made["file"]
    assert RestoreDrill.objects.get().ok
