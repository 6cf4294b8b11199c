"""Backup files on disk: their names, manifests, atomic writes and the directory's lock.

A backup is two files in BACKUP_DIR: `{database}-{UTC time}.dump.enc` (the encrypted dump)
and `{database}-{UTC time}.manifest.json` beside it. The manifest is written last, so a
backup without one is incomplete; the key is never written anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from collectors.storage.spill import fsync_directory
from marketdata.backups.encryption import BackupError

BACKUP_SUFFIX = ".dump.enc"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial"
STAMP = "%Y%m%dT%H%M%S"
NAME = re.compile(r"^(?P<database>.+)-(?P<stamp>\d{8}T\d{6})\.(?P<ms>\d{3})Z$")
MANIFEST_FORMAT = 1


def backup_stem(database: str, created_at: datetime) -> str:
    moment = created_at.astimezone(UTC)
    return f"{database}-{moment.strftime(STAMP)}.{moment.microsecond // 1000:03d}Z"


def parse_stem(stem: str) -> tuple[str, datetime] | None:
    found = NAME.match(stem)
    if not found:
        return None
    moment = datetime.strptime(found["stamp"], STAMP).replace(tzinfo=UTC)
    return found["database"], moment.replace(microsecond=int(found["ms"]) * 1000)


def manifest_path(backup: Path) -> Path:
    name = backup.name
    stem = name[: -len(BACKUP_SUFFIX)] if name.endswith(BACKUP_SUFFIX) else backup.stem
    return backup.with_name(stem + MANIFEST_SUFFIX)


@dataclass(frozen=True, order=True)
class StoredBackup:
    created_at: datetime
    database: str
    path: Path

    @property
    def manifest(self) -> Path:
        return manifest_path(self.path)


def stored_backups(directory: Path, database: str | None = None) -> list[StoredBackup]:
    """Complete backups (those with a manifest) in `directory`, oldest first."""
    found = []
    if not directory.is_dir():
        return found
    for entry in directory.iterdir():
        if not entry.name.endswith(MANIFEST_SUFFIX):
            continue
        parsed = parse_stem(entry.name[: -len(MANIFEST_SUFFIX)])
        if parsed is None or (database is not None and parsed[0] != database):
            continue
        backup = entry.with_name(entry.name[: -len(MANIFEST_SUFFIX)] + BACKUP_SUFFIX)
        if backup.exists():
            found.append(StoredBackup(parsed[1], parsed[0], backup))
    return sorted(found)


def newest_backup(directory: Path, database: str) -> StoredBackup | None:
    backups = stored_backups(directory, database)
    return backups[-1] if backups else None


def canonical(manifest: dict) -> bytes:
    """The bytes a manifest's MAC covers: every field but the MAC, in a fixed order."""
    fields = {key: value for key, value in manifest.items() if key != "mac"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def read_manifest(backup: Path) -> dict:
    path = manifest_path(backup)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(
            f"manifest missing: {path.name} should be beside the backup; without it the "
            "backup cannot be checked, so it is not restored"
        ) from None
    except (OSError, ValueError) as error:
        raise BackupError(f"manifest unreadable: {path.name}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"manifest mismatch: {path.name} is not a format-1 backup manifest")
    for field, kind in (("size", int), ("sha256", str), ("tables", dict), ("mac", str)):
        if not isinstance(manifest.get(field), kind):
            raise BackupError(f"manifest mismatch: {path.name} has no valid {field!r}")
    return manifest


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file written under a temporary name, then fsynced and renamed into place (and the
    directory fsynced), so `path` is either absent or complete, even after a crash."""
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb", buffering=1 << 20) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise


def write_json_atomically(path: Path, data: dict) -> None:
    with atomic_file(path) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """One backup or rotation at a time in a directory, across processes."""
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_directory(directory: Path) -> Path:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise BackupError(f"BACKUP_DIR {directory} cannot be created: {error}") from None
    if not os.access(directory, os.W_OK):
        raise BackupError(f"BACKUP_DIR {directory} is not writable by this process")
    return directory
