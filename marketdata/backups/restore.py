"""Restoring a backup: check all of it first, then restore it in one transaction.

Nothing touches the target until the whole file has been read once: its size and SHA-256
against the manifest, every chunk authenticated, the manifest's own MAC checked. Then the
file is decrypted a second time into `pg_restore`, whose SQL goes through psql inside one
transaction that ends with a check of every table's rows and checksum against the
manifest, then COMMIT. Any failure (a tool, a chunk, the check, this process dying) leaves
the transaction uncommitted, and PostgreSQL rolls it back: nothing is restored.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from marketdata.backups.backup import error_tail
from marketdata.backups.encryption import (
    BackupError,
    Header,
    Keys,
    Tampered,
    Truncated,
    decrypt,
    manifest_mac,
)
from marketdata.backups.files import canonical, read_manifest
from marketdata.backups.postgres import (
    STABLE_OUTPUT,
    Database,
    check_restore_tool,
    checksum_query,
    is_empty,
    tool,
    tool_version,
)

READ_SIZE = 1 << 20
NUMBER = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict
    tables: int
    rows: int
    seconds: float


class HashingReader:
    """A file read through SHA-256, counting its bytes."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data


def verify_backup(source: BinaryIO, keys: Keys, manifest: dict) -> None:
    """Read the whole encrypted file once and check it against its manifest; raises
    BackupError (KeyMissing, WrongKey, Tampered, Truncated) saying what is wrong."""
    size = source.seek(0, 2)
    source.seek(0)
    header = Header.read(source)
    if header.key_id != manifest.get("encryption", {}).get("key_id"):
        raise Tampered("manifest mismatch: the file and its manifest name different keys")
    master = keys.for_reading(header.key_id)
    if not hmac.compare_digest(
        manifest_mac(master, header.salt, canonical(manifest)), manifest["mac"]
    ):
        raise Tampered(
            "manifest mismatch: the manifest was changed after the backup was made, or "
            "belongs to another backup"
        )
    if size != manifest["size"]:
        kind = Truncated if size < manifest["size"] else Tampered
        raise kind(
            f"{'truncated' if size < manifest['size'] else 'tampered'}: the file has {size} "
            f"bytes, the manifest says {manifest['size']}"
        )
    source.seek(0)
    reader = HashingReader(source)
    plain = sum(len(chunk) for chunk in decrypt(reader, keys))
    if not hmac.compare_digest(reader.hash.hexdigest(), manifest["sha256"]):
        raise Tampered("tampered or corrupt: the file's SHA-256 differs from the manifest's")
    if plain != manifest.get("dump_size"):
        raise Tampered("manifest mismatch: the dump's size differs from the manifest's")
    source.seek(0)


def check_backup(path: Path, keys: Keys | None = None) -> dict:
    """Verify a backup file against its manifest without restoring it; returns the manifest."""
    keys = keys or Keys.from_environment()
    manifest = read_manifest(path)
    with open_backup(path) as source:
        verify_backup(source, keys, manifest)
    return manifest


def open_backup(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror}") from None


def restore_backup(
    path: Path, target: Database, *, keys: Keys | None = None, force: bool = False
) -> RestoreResult:
    """Restore the backup at `path` into `target`, all or nothing."""
    started = time.monotonic()
    keys = keys or Keys.from_environment()
    manifest = read_manifest(path)
    pg_restore, psql = tool("pg_restore"), tool("psql")
    check_restore_tool(tool_version(pg_restore), str(manifest.get("pg_dump_version", "")))
    # One open file for both passes: what was checked is what is restored.
    with open_backup(path) as source:
        verify_backup(source, keys, manifest)
        try:
            empty = is_empty(target)
        except Exception as error:  # psycopg's errors, named for the operator
            raise BackupError(f"cannot connect to the target database: {error}") from None
        if not empty and not force:
            raise BackupError(
                f"the target database {target.name} is not empty: restore into an empty "
                "database, or pass --force to replace the objects the backup holds"
            )
        check = verification_sql(manifest, target)
        run_restore(decrypt(source, keys), pg_restore, psql, target, check, clean=force)
    tables = manifest["tables"]
    rows = sum(table["rows"] for table in tables.values())
    return RestoreResult(manifest, len(tables), rows, time.monotonic() - started)


def verification_sql(manifest: dict, target: Database) -> bytes:
    """SQL that fails, so that the transaction rolls back, unless every table of the
    manifest has its rows and checksum."""
    checks = []
    with target.connect(autocommit=True) as conn:
        for name, expected in sorted(manifest["tables"].items()):
            schema, _, table = name.partition(".")
            rows, checksum = expected.get("rows"), str(expected.get("checksum", ""))
            if not isinstance(rows, int) or not NUMBER.match(checksum):
                raise Tampered(f"manifest mismatch: bad rows or checksum for {name}")
            query = checksum_query(schema, table, False).as_string(conn)
            literal = name.replace("'", "''")
            checks.append(
                f"  SELECT * INTO found FROM ({query}) AS q(n, c, first, last);\n"
                f"  IF found.n <> {rows} OR found.c <> '{checksum}' THEN\n"
                f"    RAISE EXCEPTION 'restore check: % has % rows, checksum %; the manifest "
                f"says {rows} rows, checksum {checksum}', '{literal}', found.n, found.c;\n"
                "  END IF;\n"
            )
    settings = "".join(f"{statement};\n" for statement in STABLE_OUTPUT)
    block = "DO $verify$\nDECLARE found record;\nBEGIN\n" + "".join(checks) + "END\n$verify$;\n"
    return f"\n{settings}{block}COMMIT;\n".encode()


def run_restore(
    plain: Iterator[bytes],
    pg_restore: str,
    psql: str,
    target: Database,
    check: bytes,
    *,
    clean: bool,
) -> None:
    """decrypted archive -> pg_restore (SQL out) -> this process -> psql, in a transaction
    that only the check's COMMIT ends. psql is killed before its input closes on any
    failure, and if this process dies its input closes with no COMMIT: either way the
    server rolls the transaction back."""
    restore_command = [pg_restore, "--no-owner", "--file=-"]
    # Over a database that holds tables, start from an empty public schema inside the same
    # transaction: pg_restore's own --clean drops objects one by one, which partitioned
    # tables refuse (a partition's inherited constraints cannot be dropped alone).
    begin = (
        b"BEGIN;\nDROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n" if clean else b"BEGIN;\n"
    )
    psql_command = [psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1"]
    psql_command += ["--file=-", f"--dbname={target.url}"]
    with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as psql_errors:
        sql_in = subprocess.Popen(
            psql_command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_errors,
            env=target.env(),
        )
        archive_in = subprocess.Popen(
            restore_command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=restore_errors,
            env=target.env(),
        )
        feeder = Feeder(plain, archive_in.stdin)
        feeder.start()
        committed = False
        try:
            sql_in.stdin.write(begin)
            relay(archive_in.stdout, sql_in.stdin)
            feeder.join()
            if feeder.error is not None:
                raise feeder.error
            if archive_in.wait():
                raise BackupError(f"pg_restore failed: {error_tail(restore_errors)}")
            sql_in.stdin.write(check)
            sql_in.stdin.close()
            if sql_in.wait():
                raise restore_failure(error_tail(psql_errors))
            committed = True
        except BrokenPipeError:
            raise restore_failure(error_tail(psql_errors)) from None
        finally:
            if not committed:
                stop(sql_in)  # first: its transaction must never see the end of its input
                stop(archive_in)
                feeder.join()


def restore_failure(message: str) -> BackupError:
    if "restore check:" in message:
        return BackupError(
            f"manifest mismatch: {message[message.index('restore check:') :]}; nothing was restored"
        )
    return BackupError(f"restoring failed, nothing was restored: {message}")


def relay(source: BinaryIO, target: BinaryIO) -> None:
    while block := source.read1(READ_SIZE):
        target.write(block)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(BrokenPipeError):
                stream.close()


class Feeder(threading.Thread):
    """Writes the decrypted archive into pg_restore."""

    def __init__(self, chunks: Iterator[bytes], target: BinaryIO) -> None:
        super().__init__(name="backup-restore-feeder", daemon=True)
        self.chunks = chunks
        self.target = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                self.target.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped: its exit status tells why
        except BaseException as error:  # handed to the caller, who then stops psql
            self.error = error
        finally:
            with contextlib.suppress(BrokenPipeError):
                self.target.close()  # pg_restore ends, and so does the relay
