"""Fixtures for backup tests: keys in the environment, a backup directory, scratch databases."""

import itertools

import pytest
from django.db import connection

from marketdata.backups.encryption import Keys, generate_key
from marketdata.backups.postgres import Database, create_database, drop_database
from marketdata.models import RawTrade

_scratch_numbers = itertools.count()


@pytest.fixture
def backup_key(monkeypatch) -> str:
    key = generate_key()
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", key)
    monkeypatch.delenv("BACKUP_OLD_KEYS", raising=False)
    return key


@pytest.fixture
def keys(backup_key) -> Keys:
    return Keys.from_environment()


@pytest.fixture
def backup_dir(tmp_path, settings):
    settings.BACKUP_DIR = tmp_path / "backups"
    return settings.BACKUP_DIR


@pytest.fixture
def live(transactional_db) -> Database:
    """The test database, as the backups see it."""
    return Database.from_settings()


@pytest.fixture
def scratch_db(live):
    """An empty database of its own on the test server, dropped at the end."""
    name = f"{connection.settings_dict['NAME']}_scratch_{next(_scratch_numbers)}"
    drop_database(live, name)
    create_database(live, name)
    yield live.sibling(name)
    drop_database(live, name)


def table_names(database: Database) -> list[str]:
    with database.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def some_trades():
    RawTrade.objects.bulk_create(
        RawTrade(
            exchange="okx",
            symbol="BTC-USDT",
            trade_id=str(n),
            price=f"{60000 + n}.12345678",
            size="0.001",
            side="buy" if n % 2 else "sell",
            timestamp=f"2024-05-01T00:00:{n % 60:02d}.{n:03d}Z",
            raw_data={"tradeId": str(n), "passphrase": "in-json"},
        )
        for n in range(300)
    )


def tamper_one_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
