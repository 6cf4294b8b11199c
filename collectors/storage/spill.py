"""Spill files: rows the database could not take yet, written durably as JSON lines.

A file is named by the sequence numbers of its first and last row, so files replay in the
order their rows were accepted; a `.tmp` file is one a crash interrupted.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

from collectors.storage.rows import MARKET_ROW_LENGTH, TRADE_ROW_LENGTH, Row

SPILL_NAME = re.compile(r"^(\d{20})-(\d{20})-\w+\.jsonl(\.tmp)?$")


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
    """Spill files in replay order; a `.tmp` left by a crash holds rows never stored elsewhere."""
    found = (spill_file_of(path) for path in directory.iterdir())
    return sorted((f for f in found if f is not None), key=lambda f: (f.first_seq, f.path.name))


def write_spill_file(directory: Path, first_seq: int, rows: list[Row]) -> SpillFile:
    """Write rows durably: to a temporary name, fsynced, then renamed into place."""
    last_seq = first_seq + len(rows) - 1
    path = directory / f"{first_seq:020d}-{last_seq:020d}-{secrets.token_hex(4)}.jsonl"
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(b"\n".join(map(orjson.dumps, rows)) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_directory(directory)
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
