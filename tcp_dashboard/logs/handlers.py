"""Where log records go: one file per process, cleaned to `max_files`, and a JSON format.

Several processes never share a file: each writes `{role}-{host}-{pid}-{UTC start}.log`
and starts a new one at midnight UTC or past LOG_MAX_FILE_MB, without renaming anything,
so no process can rotate a file from under another. A forked child (a Celery prefork
pool process, a gunicorn worker) opens its own file on its first record. Opening a file
deletes the oldest files of the directory beyond `max_files`, except those that live
processes are still writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import weakref
from datetime import UTC, datetime
from pathlib import Path

FILE_NAME = re.compile(r"^(?P<role>.+)-(?P<host>[^-]+)-(?P<pid>\d+)-(?P<stamp>\d{8}T\d{12})\.log$")
RECENT_SECONDS = 86400  # another host's newest file this fresh may still be open

_open_handlers: weakref.WeakSet[ProcessFileHandler] = weakref.WeakSet()


def process_role(argv: list[str] | None = None, environ=os.environ) -> str:
    """What this process is, for its log file's name: web, worker-collectors, beat, ..."""
    argv = sys.argv if argv is None else argv
    role = environ.get("LOG_PROCESS_ROLE", "")
    if not role and argv:
        program, args = Path(argv[0]).name, argv[1:]
        if program in ("", "-c", "-m"):
            role = "python"
        elif program == "gunicorn":
            role = "web"
        elif program == "celery" or Path(argv[0]).parent.name == "celery":
            role = next((arg for arg in args if arg in ("worker", "beat", "flower")), "celery")
            queues = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in ("-Q", "--queues")]
            if role == "worker" and queues:
                role = f"worker-{queues[0]}"
        elif program == "manage.py" and args:
            role = args[0]
        elif "pytest" in program or Path(argv[0]).parent.name == "pytest":
            role = "pytest"
        else:
            role = program.removesuffix(".py")
    return re.sub(r"[^A-Za-z0-9_.]+", "_", role or "python")[:40]


def host_name() -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", socket.gethostname())[:40] or "host"


class ProcessFileHandler(logging.FileHandler):
    """This process's own log file in `directory`."""

    def __init__(
        self,
        directory: str,
        role: str,
        max_files: int = 30,
        cleanup: bool = True,
        max_bytes: int = 100 << 20,
    ) -> None:
        self.directory = Path(directory)
        self.role = role
        self.max_files = max_files
        self.cleanup = cleanup
        self.max_bytes = max_bytes
        self.opened_day = None
        super().__init__(self.new_file_name(), encoding="utf-8", delay=True)
        _open_handlers.add(self)

    def new_file_name(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{self.role}-{host_name()}-{os.getpid()}-{stamp}.log"
        return os.path.abspath(self.directory / name)

    def _open(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        stream = super()._open()
        if self.cleanup:
            clean_log_directory(self.directory, self.max_files, Path(self.baseFilename))
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        day = datetime.fromtimestamp(record.created, UTC).date()
        if self.stream is not None and (
            day != self.opened_day or (self.max_bytes and self.stream.tell() >= self.max_bytes)
        ):
            self.start_new_file()
        if self.stream is None:
            self.opened_day = day
        super().emit(record)

    def start_new_file(self) -> None:
        """Close this file; the next record opens a new one (in this process's name)."""
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None
        self.baseFilename = self.new_file_name()


def _after_fork_in_child() -> None:
    for handler in list(_open_handlers):
        handler.start_new_file()


os.register_at_fork(after_in_child=_after_fork_in_child)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_log_directory(directory: Path, keep: int, current: Path | None = None) -> list[Path]:
    """Delete the oldest log files beyond `keep`, sparing any live process's newest one;
    returns what was deleted."""
    files = []
    for path in directory.glob("*.log"):
        found = FILE_NAME.match(path.name)
        if found:
            with contextlib.suppress(FileNotFoundError):
                files.append((path.stat().st_mtime, path, found))
    files.sort(key=lambda item: (item[0], item[1].name), reverse=True)
    newest_of: dict[tuple[str, str], str] = {}
    for _, _, found in files:
        key = (found["host"], found["pid"])
        newest_of[key] = max(newest_of.get(key, ""), found["stamp"])
    removed = []
    for mtime, path, found in files[keep:]:
        if path == current or still_written(found, mtime, newest_of):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def still_written(found: re.Match, mtime: float, newest_of: dict) -> bool:
    """Is this the newest file of a process that may still be running? Processes of this
    host are asked; another host's (a shared volume) are trusted for a day."""
    if newest_of[found["host"], found["pid"]] != found["stamp"]:
        return False
    if found["host"] == host_name():
        return process_alive(int(found["pid"]))
    return datetime.now(UTC).timestamp() - mtime < RECENT_SECONDS


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers."""

    def __init__(self, role: str = "", **kwargs) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
            "role": self.role,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)
