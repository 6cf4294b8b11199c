"""One process at a time: an exclusive lock on a file, held while the file stays open."""

import fcntl
from pathlib import Path
from typing import IO


def try_lock(path: Path) -> IO | None:
    """The open lock file `path` (created if need be), locked for as long as it stays open;
    None at once when another open file (this process's or another's) holds the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
