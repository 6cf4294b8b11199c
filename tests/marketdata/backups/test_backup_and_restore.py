"""Backups of the real test database and restores into scratch databases on the same server."""

import copy
import json
import subprocess
import sys

import pytest

from collectors.factory import ExchangeFactory
from collectors.types import DataType
from marketdata.backups.backup import create_backup
from marketdata.backups.encryption import BackupError, Keys, decrypt, generate_key
from marketdata.backups.files import manifest_path, read_manifest
from marketdata.backups.postgres import (
    Database,
    check_dump_tool,
    check_restore_tool,
    is_empty,
    table_stats,
    tool,
)
from marketdata.backups.restore import restore_backup, run_restore, verification_sql
from marketdata.models import MarketData, RawTrade
from tests.helpers import ROOT, make_config, run, service_env, wait_until
from tests.marketdata.backups.conftest import table_names, tamper_one_byte
from tests.test_settings import bare_env, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def backup(live, keys, backup_dir, some_trades):
    # Small chunks, so that the dump of the test database spans several.
    return create_backup(directory=backup_dir, database=live, keys=keys, chunk_size=8192)


def stats_of(database: Database) -> dict:
    with database.connect(autocommit=True) as conn:
        return {name: found.as_dict() for name, found in table_stats(conn).items()}


def restored_rows(database: Database, table: str) -> int:
    with database.connect(autocommit=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_backup_taken_while_a_collector_writes_restores_every_table_as_its_manifest_says(
    simulator, sink, live, keys, backup_dir, scratch_db
):
    collector = ExchangeFactory.create_collector(
        make_config(simulator, data_types=(DataType.TRADE, DataType.TICKER))
    )
    collector.sink = sink
    assert run(collector.start()) is True
    try:
        wait_until(lambda: RawTrade.objects.count() >= 40, 30, message="trades stored")
        result = create_backup(directory=backup_dir, database=live, keys=keys)
        in_backup = result.manifest["tables"]["public.raw_trades"]["rows"]
        wait_until(lambda: RawTrade.objects.count() > in_backup + 20, 30, message="writes go on")
    finally:
        run(collector.stop())

    manifest = result.manifest
    assert in_backup >= 40
    assert manifest["tables"]["public.market_data"]["rows"] > 0
    restore_backup(result.path, scratch_db, keys=keys)

    assert stats_of(scratch_db) == manifest["tables"]  # every table: rows and checksums
    assert restored_rows(scratch_db, "raw_trades") == in_backup < RawTrade.objects.count()
    assert set(table_names(scratch_db)) >= {"raw_trades", "market_data", "candles", "backups"}


def test_the_manifest_describes_the_file_the_server_and_the_data(backup, live):
    manifest = read_manifest(backup.path)
    assert manifest == backup.manifest
    assert manifest["size"] == backup.path.stat().st_size
    assert len(manifest["sha256"]) == 64
    assert manifest["server_version_num"] >= 150000
    assert manifest["server_version"].startswith("PostgreSQL")
    assert manifest["pg_dump_version"].startswith("pg_dump (PostgreSQL)")
    assert manifest["tables"]["public.raw_trades"]["rows"] == 300
    assert manifest["tables"]["public.raw_trades"]["first"].startswith("2024-05-01T00:00:00")
    assert manifest["data_time_range"] == {
        "first": "2024-05-01T00:00:00+00:00",
        "last": manifest["tables"]["public.raw_trades"]["last"],
    }
    assert manifest["rows"] == sum(table["rows"] for table in manifest["tables"].values())
    assert manifest["encryption"]["cipher"] == "AES-256-GCM"
    assert manifest["dump_size"] > 3 * manifest["encryption"]["chunk_size"]


def test_the_key_is_written_nowhere_and_the_files_are_private(backup, backup_key, backup_dir):
    for path in backup_dir.iterdir():
        content = path.read_bytes()
        assert backup_key.encode() not in content
        if path.name != ".lock":
            assert path.stat().st_mode & 0o077 == 0, path.name
    assert b"in-json" not in backup.path.read_bytes()  # the data is encrypted too


def tamper(backup):
    tamper_one_byte(backup.path)


def truncate(backup):
    data = backup.path.read_bytes()
    backup.path.write_bytes(data[: len(data) - 100])


def use_wrong_key(backup):
    return Keys.from_environment({"BACKUP_ENCRYPTION_KEY": generate_key()})


def use_no_key(backup):
    return Keys(None)


def edit_the_manifest(backup):
    path = manifest_path(backup.path)
    manifest = json.loads(path.read_text())
    manifest["tables"]["public.raw_trades"]["rows"] += 1
    path.write_text(json.dumps(manifest))


def remove_the_manifest(backup):
    manifest_path(backup.path).unlink()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (tamper, r"tampered or corrupt: chunk \d+ fails authentication"),
        (truncate, "truncated: the file has"),
        (use_wrong_key, "wrong key: this backup was encrypted with key"),
        (use_no_key, "BACKUP_ENCRYPTION_KEY is not set"),
        (edit_the_manifest, "manifest mismatch: the manifest was changed"),
        (remove_the_manifest, "manifest missing"),
    ],
    ids=lambda value: getattr(value, "__name__", "message"),
)
def test_a_damaged_backup_or_a_bad_key_fails_clearly_and_restores_nothing(
    backup, keys, scratch_db, damage, message
):
    keys = damage(backup) or keys
    with pytest.raises(BackupError, match=message):
        restore_backup(backup.path, scratch_db, keys=keys)
    assert is_empty(scratch_db)


def test_a_mismatch_found_inside_the_restore_rolls_all_of_it_back(backup, keys, scratch_db):
    # The manifest's MAC is checked first; this is the last line of defence behind it.
    wrong = copy.deepcopy(backup.manifest)
    wrong["tables"]["public.raw_trades"]["rows"] = 299
    with open(backup.path, "rb") as source, pytest.raises(BackupError) as failure:
        run_restore(
            decrypt(source, keys),
            tool("pg_restore"),
            tool("psql"),
            scratch_db,
            verification_sql(wrong, scratch_db),
            clean=False,
        )
    assert "manifest mismatch: restore check: public.raw_trades has 300 rows" in str(failure.value)
    assert "nothing was restored" in str(failure.value)
    assert is_empty(scratch_db)


def test_it_refuses_a_database_that_is_not_empty_unless_forced(backup, keys, scratch_db):
    restore_backup(backup.path, scratch_db, keys=keys)
    with scratch_db.connect(autocommit=True) as conn:
        conn.execute("DELETE FROM raw_trades WHERE trade_id = '7'")
    with pytest.raises(BackupError, match=r"is not empty.*--force"):
        restore_backup(backup.path, scratch_db, keys=keys)
    assert restored_rows(scratch_db, "raw_trades") == 299

    restore_backup(backup.path, scratch_db, keys=keys, force=True)
    assert stats_of(scratch_db) == backup.manifest["tables"]


def test_a_backup_made_with_an_old_key_restores_after_the_key_changes(
    backup, backup_key, scratch_db, monkeypatch
):
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", generate_key())
    monkeypatch.setenv("BACKUP_OLD_KEYS", f"{generate_key()},{backup_key}")
    result = restore_backup(backup.path, scratch_db)
    assert result.rows == backup.manifest["rows"]


def restore_command(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "restore_backup", *args],
        cwd=ROOT,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_restore_command_exits_non_zero_with_the_reason(backup, backup_key, scratch_db):
    tamper_one_byte(backup.path)
    done = restore_command(str(backup.path), "--database", scratch_db.url)
    assert done.returncode == 1
    assert "tampered or corrupt" in done.stderr
    assert is_empty(scratch_db)


def test_the_restore_command_checks_a_backup_without_restoring_it(backup, backup_key):
    done = restore_command(str(backup.path), "--check-only")
    assert done.returncode == 0, done.stderr
    assert f"{backup.path.name}: sound; {backup.manifest['rows']} rows" in done.stdout
    done = restore_command(str(backup.path))
    assert done.returncode == 1
    assert "--database URL is required" in done.stderr


def test_the_restore_command_restores_and_says_what_it_checked(backup, backup_key, scratch_db):
    done = restore_command(str(backup.path), "--database", scratch_db.url)
    assert done.returncode == 0, done.stderr
    assert "every count and checksum as the manifest says" in done.stdout
    assert restored_rows(scratch_db, "raw_trades") == 300


def test_generate_key_prints_a_new_key_and_nothing_else():
    done = subprocess.run(
        [sys.executable, "manage.py", "backup_database", "--generate-key"],
        cwd=ROOT,
        env=service_env(BACKUP_ENCRYPTION_KEY=""),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stderr == ""
    key = done.stdout.strip()
    assert done.stdout == key + "\n"
    assert len(Keys.from_environment({"BACKUP_ENCRYPTION_KEY": key}).current) == 32


def test_a_server_newer_than_the_client_tools_is_named_before_anything_runs():
    with pytest.raises(BackupError, match=r"server is PostgreSQL 16 but pg_dump is 15.*client-16"):
        check_dump_tool("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", 160004)
    check_dump_tool("pg_dump (PostgreSQL) 16.1", 150020)  # a newer pg_dump dumps older servers
    with pytest.raises(BackupError, match=r"made by pg_dump 17.*pg_restore is 15"):
        check_restore_tool("pg_restore (PostgreSQL) 15.20", "pg_dump (PostgreSQL) 17.0")


def test_backups_of_the_embedded_sqlite_database_are_refused_with_the_reason(tmp_path):
    with pytest.raises(BackupError, match="backups need PostgreSQL"):
        Database.from_url("sqlite:///var/tcp_dashboard.sqlite3")
    done = run_manage(["backup_database"], bare_env(tmp_path, BACKUP_ENCRYPTION_KEY=generate_key()))
    assert done.returncode == 1
    assert "backups need PostgreSQL: DATABASE_URL is an SQLite file" in done.stderr


def test_the_target_url_keeps_its_password_out_of_the_command_line():
    target = Database.from_url(
        "postgresql://restorer:s%40cret@db.internal:6543/market?sslmode=require"
    )
    assert target.url == "postgresql://restorer@db.internal:6543/market?sslmode=require"
    assert target.password == "s@cret"
    assert target.env()["PGPASSWORD"] == "s@cret"


def test_the_stored_data_survives_a_round_trip_value_for_value(backup, keys, scratch_db):
    restore_backup(backup.path, scratch_db, keys=keys)
    with scratch_db.connect(autocommit=True) as conn:
        restored = conn.execute(
            "SELECT trade_id, price::text, raw_data::text FROM raw_trades ORDER BY id"
        ).fetchall()
    live = [
        (t.trade_id, f"{t.price:.8f}", json.dumps(t.raw_data))
        for t in RawTrade.objects.order_by("id")
    ]
    assert [(a, b) for a, b, _ in restored] == [(a, b) for a, b, _ in live]
    assert [json.loads(c) for _, _, c in restored] == [json.loads(c) for _, _, c in live]
    assert MarketData.objects.count() == restored_rows(scratch_db, "market_data")
