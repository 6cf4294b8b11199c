"""Spill files: rows the database could not take yet, written durably as JSON lines.

A file is named by the sequence numbers of its first and last row, so files replay in the
order their rows were accepted. A file is written under a `.tmp` name and renamed once it
is whole and fsynced; a `.tmp` file is never replayed: its write failed (its rows went
back to memory) or a crash interrupted it, and the next sink moves it to `aside/`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from collectors.storage.rows import MARKET_ROW_LENGTH, TRADE_ROW_LENGTH, Row

logger = logging.getLogger(__name__)

SPILL_NAME = re.compile(r"^(\d{20})-(\d{20})-\w+\.jsonl$")
TEMPORARY_SUFFIX = ".tmp"
ASIDE = "aside"  # where unfinished temporary files go, for an operator to look at


@dataclass(slots=True, frozen=True)
class SpillFile:
    path: Path
    first_seq: int
    last_seq: int


def spill_file_of(path: Path) -> SpillFile | None:
    match = SPILL_NAME.match(path.name)
    if match is None:
        return None
    return SpillFile(path, int(match[1]), int(match[2]))


def list_spill_files(directory: Path) -> list[SpillFile]:
    """Finished spill files in replay order (never a `.tmp`)."""
    found = (spill_file_of(path) for path in directory.iterdir())
    return sorted((f for f in found if f is not None), key=lambda f: (f.first_seq, f.path.name))


def set_aside_temporary_files(directory: Path) -> list[Path]:
    """Move unfinished `.tmp` files to `aside/` (never replayed); where they went."""
    moved = []
    for path in sorted(directory.glob(f"*{TEMPORARY_SUFFIX}")):
        aside = directory / ASIDE
        aside.mkdir(exist_ok=True)
        target = aside / path.name
        os.replace(path, target)
        moved.append(target)
    return moved


def write_spill_file(directory: Path, first_seq: int, rows: list[Row]) -> SpillFile:
    """Write rows durably: to a temporary name, fsynced, then renamed into place.

    OSError when the disk refuses; the temporary file is removed then, so a full disk
    leaves nothing behind. Once renamed, the file is the rows' home, whatever follows.
    """
    last_seq = first_seq + len(rows) - 1
    path = directory / f"{first_seq:020d}-{last_seq:020d}-{secrets.token_hex(4)}.jsonl"
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    try:
        with temporary.open("wb") as file:
            file.write(b"\n".join(map(orjson.dumps, rows)) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    try:
        fsync_directory(directory)
    except OSError as error:  # the rename happened: the rows must not also stay in memory
        logger.warning("spill: could not fsync %s after writing %s: %s", directory, path, error)
    return SpillFile(path, first_seq, last_seq)


def read_spill_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def row_of_line(line: bytes) -> Row | None:
    """The row a spill line holds; None for a line cut short by a crash or otherwise bad."""
    try:
        row = tuple(orjson.loads(line))
    except orjson.JSONDecodeError:
        return None
    return row if len(row) in (TRADE_ROW_LENGTH, MARKET_ROW_LENGTH) else None


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
