"""Taking a backup: pg_dump's custom format, streamed through encryption into BACKUP_DIR.

Consistency while collectors write: one REPEATABLE READ transaction exports its snapshot,
pg_dump dumps exactly that snapshot (`--snapshot`), and the same transaction counts and
checksums every table for the manifest. So the manifest describes the dump to the row,
and rows committed meanwhile are simply in the next backup. Memory stays flat: pg_dump's
output is read 1 MiB at a time, encrypted and written as it comes.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings

from marketdata.backups.encryption import (
    DEFAULT_CHUNK_SIZE,
    BackupError,
    EncryptingWriter,
    Keys,
    manifest_mac,
)
from marketdata.backups.files import (
    BACKUP_SUFFIX,
    MANIFEST_FORMAT,
    atomic_file,
    backup_stem,
    canonical,
    manifest_path,
    prepare_directory,
    write_json_atomically,
)
from marketdata.backups.postgres import (
    Database,
    TableStats,
    check_dump_tool,
    server_version,
    table_stats,
    tool,
    tool_version,
)
from tcp_dashboard.logs.redaction import redact

READ_SIZE = 1 << 20


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict
    seconds: float


class StatsThread(threading.Thread):
    """Counts and checksums the tables in the snapshot's transaction while pg_dump runs."""

    def __init__(self, conn: psycopg.Connection) -> None:
        super().__init__(name="backup-table-stats", daemon=True)
        self.conn = conn
        self.tables: dict[str, TableStats] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.tables = table_stats(self.conn)
        except BaseException as error:  # handed to the caller by result()
            self.error = error

    def result(self) -> dict[str, TableStats]:
        self.join()
        if self.error is not None:
            raise BackupError(f"counting the tables failed: {self.error}") from self.error
        return self.tables


def create_backup(
    *,
    directory: Path,
    database: Database,
    keys: Keys,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> BackupResult:
    """Dump `database` into an encrypted file and its manifest in `directory`."""
    master = keys.for_writing()
    prepare_directory(directory)
    pg_dump = tool("pg_dump")
    dump_version = tool_version(pg_dump)
    started = time.monotonic()
    with database.connect() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        server_text, server_num = server_version(conn)
        check_dump_tool(dump_version, server_num)
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        created_at = conn.execute("SELECT now()").fetchone()[0]
        path = directory / (backup_stem(database.name, created_at) + BACKUP_SUFFIX)
        if path.exists() or manifest_path(path).exists():
            raise BackupError(f"a backup named {path.name} exists already")
        with atomic_file(path) as handle:
            writer = EncryptingWriter(handle, master, chunk_size)
            stats = StatsThread(conn)
            stats.start()
            try:
                run_pg_dump(pg_dump, database, snapshot, writer)
                writer.close()
                tables = stats.result()
            except BaseException:
                conn.cancel_safe()
                stats.join()
                raise
    manifest = {
        "format": MANIFEST_FORMAT,
        "file": path.name,
        "created_at": created_at.isoformat(),
        "database": database.name,
        "server_version": server_text,
        "server_version_num": server_num,
        "pg_dump_version": dump_version,
        "dump_format": "custom",
        "dump_size": writer.plain_size,
        "size": writer.size,
        "sha256": writer.sha256,
        "encryption": {
            "cipher": "AES-256-GCM",
            "kdf": "HKDF-SHA256",
            "chunk_size": chunk_size,
            "key_id": writer.header.key_id,
        },
        "tables": {name: found.as_dict() for name, found in tables.items()},
        "rows": sum(found.rows for found in tables.values()),
        "data_time_range": data_time_range(tables.values()),
        "seconds": round(time.monotonic() - started, 3),
    }
    manifest["mac"] = manifest_mac(master, writer.header.salt, canonical(manifest))
    write_json_atomically(manifest_path(path), manifest)
    return BackupResult(path, manifest, time.monotonic() - started)


def run_pg_dump(pg_dump: str, database: Database, snapshot: str, writer: EncryptingWriter) -> None:
    command = [
        pg_dump,
        "--format=custom",
        f"--compress={settings.BACKUP_COMPRESSION}",
        f"--snapshot={snapshot}",
        "--no-password",
        f"--dbname={database.url}",
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, env=database.env()
        )
        try:
            while block := process.stdout.read(READ_SIZE):
                writer.write(block)
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
        if code:
            raise BackupError(f"pg_dump failed (exit {code}): {error_tail(errors)}")


def error_tail(stream, limit: int = 2000) -> str:
    """The end of a tool's error output, redacted, for an error message."""
    stream.seek(0)
    text = stream.read().decode("utf-8", "replace").strip()
    return redact(text[-limit:]) or "no error output"


def data_time_range(tables) -> dict[str, str | None]:
    firsts = [found.first for found in tables if found.first]
    lasts = [found.last for found in tables if found.last]
    return {"first": min(firsts, default=None), "last": max(lasts, default=None)}
