"""StorageSink: batches data points into raw_trades and market_data, through database outages.

Collector threads call `put()`; one writer thread owns the database connection and
commits a batch when `buffer_size` rows are pending or `flush_interval` has passed
since the oldest pending row arrived (COLLECTOR_FLUSH_INTERVAL, 20 ms by default: rows
wait little at low rates, and at high rates batches fill by size while the previous one
is being written).
Points become row tuples of strings at `put()` time, so a bad point is dropped on its
own and never poisons a batch. While the database is away, batches are kept and
retried whole (trades are idempotent through their unique key); beyond
`max_memory_rows` the oldest pending rows go to spill files (fsynced JSON lines) that
are replayed in order once the database is back, also by the next process of the
same name after a crash.

Every row has a sequence number in the order it was accepted. Rows are committed in
that order, oldest first: spill files (named by their first and last sequence number)
before rows still in memory, so "everything up to N is committed" is one counter.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from collectors.storage.backends import backend_for
from collectors.storage.rows import Row, point_from_row, point_to_row, split_rows
from collectors.storage.spill import (
    SpillFile,
    list_spill_files,
    read_spill_lines,
    row_of_line,
    write_spill_file,
)
from collectors.types import MarketDataPoint

logger = logging.getLogger(__name__)

MIN_BATCH_ROWS = 20_000  # a backlog is written in batches this big, for throughput
SPILL_FILE_ROWS = 10_000  # rows per spill file; a file is replayed in one transaction
STOP_SPILL_RESERVE = 1.0  # seconds of a stop() timeout kept for spilling what is left
INTERRUPT_GRACE = 5.0  # seconds stop() waits after breaking a hung connection
REJECT_LOG_EVERY = 1000  # after the first ten, log one bad point in this many
NAME_PATTERN = re.compile(r"^[\w.-]+$")


class SpillDirectoryBusy(RuntimeError):
    """Another live process holds the spill directory of a sink with this name."""


@dataclass(slots=True)
class Batch:
    """Rows with sequence numbers first_seq..end_seq-1, from memory or from a spill file."""

    rows: list[Row]
    first_seq: int
    end_seq: int
    spill: SpillFile | None = None


@dataclass(slots=True)
class Outcome:
    inserted: int = 0
    duplicates: int = 0
    market: int = 0
    rejected: list[Row] = field(default_factory=list)


class StorageSink:
    """Stores data points in batches; `put()` never waits for the database."""

    def __init__(
        self,
        *,
        name: str = "default",
        buffer_size: int = 1000,
        flush_interval: float | None = None,  # default: settings.COLLECTOR_FLUSH_INTERVAL
        max_memory_rows: int = 200_000,
        spill_dir: Path | None = None,
        database: dict | None = None,
        on_commit: Callable[[list[MarketDataPoint], float], None] | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        if flush_interval is None:
            flush_interval = float(settings.COLLECTOR_FLUSH_INTERVAL)
        if not NAME_PATTERN.match(name):
            raise ValueError(f"a sink name is a file name (letters, digits, . _ -), not {name!r}")
        if buffer_size < 1 or max_memory_rows < 2 or flush_interval <= 0 or retry_delay <= 0:
            raise ValueError("buffer_size, max_memory_rows, flush_interval and retry_delay")
        self.name = name
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self.max_memory_rows = max_memory_rows
        self.retry_delay = retry_delay
        self.on_commit = on_commit
        self.spill_dir = Path(spill_dir or settings.COLLECTOR_SPILL_DIR) / name
        self._backend = backend_for(database or settings.DATABASES["default"], name)
        self._batch_rows = max(buffer_size, MIN_BATCH_ROWS)

        self._cond = threading.Condition()
        self._pending: deque[Row] = deque()
        self._head_seq = 0  # sequence number of _pending[0]
        self._next_seq = 0  # sequence number of the next row accepted
        self._done_seq = 0  # every row below this is committed or rejected
        self._first_pending_at: float | None = None
        self._flush_seq = 0  # write without waiting for the interval up to here
        self._spill_files: list[SpillFile] = []  # in replay order
        self._spilling = False
        self._thread: threading.Thread | None = None
        self._lock_file = None
        self._running = False
        self._stopped = False
        self._write_deadline: float | None = None  # set by stop(): write until then, then spill
        self._outage_since: float | None = None

        self._rows_received = 0
        self._rows_rejected = 0
        self._rows_recovered = 0
        self._unstored = 0  # received or recovered, not yet committed nor rejected
        self._trades_inserted = 0
        self._duplicates_ignored = 0
        self._market_data_inserted = 0
        self._batches = 0
        self._write_failures = 0
        self._spilled_rows = 0
        self._last_error = ""
        self._database_ok = False

    # public -------------------------------------------------------------------

    def start(self) -> None:
        """Lock the spill directory, pick up a previous process's spill files, start writing."""
        with self._cond:
            if self._running or self._stopped:
                raise RuntimeError(f"storage sink {self.name} was already started")
            self._lock_spill_directory()
            self._recover_spill_files()
            self._running = True
        self._thread = threading.Thread(target=self._run, name=f"storage-{self.name}", daemon=True)
        self._thread.start()

    def set_buffer_size(self, buffer_size: int) -> None:
        """Write a batch once this many rows are pending, from now on (a worker's sink
        follows the buffer_size of the collectors it serves as they come and go)."""
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, not {buffer_size}")
        with self._cond:
            self.buffer_size = buffer_size
            self._batch_rows = max(buffer_size, MIN_BATCH_ROWS)
            self._cond.notify_all()

    def put(self, points: Iterable[MarketDataPoint]) -> None:
        """Accept points for storage; converts them here, so a bad one is dropped alone."""
        rows = []
        failures = []
        for point in points:
            try:
                rows.append(point_to_row(point))
            except Exception as error:  # whatever a point's fault is, it is only that point's
                failures.append((point, error))
        with self._cond:
            self._rows_received += len(rows) + len(failures)
            self._rows_rejected += len(failures)
            rejected_so_far = self._rows_rejected
            if rows:
                self._unstored += len(rows)
                self._accept(rows)
            spill = self._should_spill()
            if spill:
                self._spilling = True
        if failures:
            self._log_rejected(failures, rejected_so_far)
        if spill:
            self._spill_memory(keep=self.max_memory_rows // 2)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every point put so far is committed; False if not within the timeout."""
        with self._cond:
            target = self._next_seq
            if self._done_seq >= target:
                return True
            if not self._running:
                return False
            self._flush_seq = max(self._flush_seq, target)
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._done_seq >= target or not self._running, timeout
            ) and (self._done_seq >= target)

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything; what cannot be written within the timeout is spilled to disk."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._write_deadline = deadline - min(STOP_SPILL_RESERVE, timeout * 0.2)
            thread = self._thread
            self._cond.notify_all()
        if thread is None:
            self._spill_unstarted()
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._backend.interrupt()
            thread.join(INTERRUPT_GRACE)
        if thread.is_alive():
            logger.error("storage %s: the writer did not stop in time", self.name)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "rows_received": self._rows_received,
                "rows_rejected": self._rows_rejected,
                "rows_recovered": self._rows_recovered,
                "trades_inserted": self._trades_inserted,
                "duplicates_ignored": self._duplicates_ignored,
                "market_data_inserted": self._market_data_inserted,
                "batches": self._batches,
                "write_failures": self._write_failures,
                "pending_rows": self._unstored,
                "memory_rows": len(self._pending),
                "spilled_rows": self._spilled_rows,
                "spill_files": len(self._spill_files),
                "last_error": self._last_error,
                "database_ok": self._database_ok,
            }

    # accepting ------------------------------------------------------------------

    def _accept(self, rows: list[Row]) -> None:
        pending = self._pending
        before = len(pending)
        pending.extend(rows)
        self._next_seq += len(rows)
        if not before:
            self._first_pending_at = time.monotonic()
            self._cond.notify_all()
        elif before < self.buffer_size <= len(pending) or len(pending) > self.max_memory_rows:
            self._cond.notify_all()

    def _log_rejected(self, failures: list[tuple[Any, Exception]], total: int) -> None:
        first = total - len(failures) + 1
        for count, (point, error) in enumerate(failures, start=first):
            if count <= 10 or count % REJECT_LOG_EVERY == 0:
                logger.warning(
                    "storage %s: dropped a data point that cannot be stored (%s): %.200r"
                    " (%d so far)",
                    self.name,
                    error,
                    point,
                    count,
                )

    # spilling ---------------------------------------------------------------------

    def _lock_spill_directory(self) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        lock_file = (self.spill_dir / "lock").open("a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise SpillDirectoryBusy(
                f"another process is running a storage sink named {self.name!r} "
                f"(spill directory {self.spill_dir}); give each process its own name"
            ) from None
        self._lock_file = lock_file

    def _recover_spill_files(self) -> None:
        files = list_spill_files(self.spill_dir)
        recovered = sum(len(read_spill_lines(f.path)) for f in files)
        if files:
            logger.warning(
                "storage %s: replaying %d rows from %d spill files left by a previous process",
                self.name,
                recovered,
                len(files),
            )
        # Rows accepted before start() take sequence numbers after the recovered ones.
        base = max((f.last_seq + 1 for f in files), default=0)
        self._head_seq += base
        self._next_seq += base
        self._done_seq += base
        self._flush_seq += base
        self._spill_files.extend(files)
        self._rows_recovered += recovered
        self._unstored += recovered

    def _should_spill(self) -> bool:
        """Over the memory bound, or stopped (nothing writes memory rows any more)."""
        if self._spilling or not (self._running or self._stopped):
            return False  # before start() the spill directory is not ours yet
        return self._stopped or len(self._pending) > self.max_memory_rows

    def _spill_memory(self, keep: int) -> None:
        """Move the oldest memory rows to spill files until `keep` remain; caller set _spilling."""
        try:
            while True:
                with self._cond:
                    count = min(
                        SPILL_FILE_ROWS, len(self._pending) - (0 if self._stopped else keep)
                    )
                    if count <= 0:
                        return
                    first_seq = self._head_seq
                    rows = [self._pending.popleft() for _ in range(count)]
                    self._head_seq += count
                    self._settle_pending_clock()
                if not self._spill_rows(first_seq, rows):
                    with self._cond:
                        self._pending.extendleft(reversed(rows))
                        self._head_seq = first_seq
                        if self._first_pending_at is None:
                            self._first_pending_at = time.monotonic()
                    return
        finally:
            with self._cond:
                self._spilling = False
                self._cond.notify_all()

    def _spill_rows(self, first_seq: int, rows: list[Row]) -> bool:
        """Write rows to a spill file; False (rows kept in memory) when the disk refuses."""
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            spill = write_spill_file(self.spill_dir, first_seq, rows)
        except OSError as error:
            logger.error(
                "storage %s: cannot spill %d rows to disk: %s", self.name, len(rows), error
            )
            return False
        with self._cond:
            bisect.insort(self._spill_files, spill, key=lambda f: f.first_seq)
            self._spilled_rows += len(rows)
        return True

    def _spill_unstarted(self) -> None:
        with self._cond:
            if not self._pending or self._spilling:
                return
            self._spilling = True
        self._spill_memory(keep=0)

    def _settle_pending_clock(self) -> None:
        if not self._pending:
            self._first_pending_at = None

    # writing ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._attempt_connect()
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                if not self._write_until_committed(batch):
                    if batch.spill is None:
                        self._spill_rows(batch.first_seq, batch.rows)
                    break
            self._spill_what_is_left()
        except Exception:
            logger.exception("storage %s: the writer failed; spilling what is left", self.name)
            self._spill_what_is_left()
        finally:
            self._backend.close()
            with self._cond:
                self._running = False
                self._cond.notify_all()
            if self._lock_file is not None:
                self._lock_file.close()

    def _next_batch(self) -> Batch | None:
        """The oldest rows to write: spill files first; None once stopping and nothing is left."""
        with self._cond:
            while True:
                if self._spilling:
                    self._cond.wait()
                    continue
                if self._stopping_now():
                    return None
                if self._spill_files:
                    spill = self._spill_files[0]
                    break
                wait = self._memory_wait()
                if wait == 0:
                    return self._take_from_memory()
                if wait is None and self._stopped:
                    return None
                self._cond.wait(wait)
        try:
            return self._read_spill(spill)
        except OSError as error:
            # Left on disk for an operator (or the next process); its rows stay pending.
            logger.error("storage %s: cannot read spill file %s: %s", self.name, spill.path, error)
            with self._cond:
                self._spill_files.remove(spill)
            return self._next_batch()

    def _memory_wait(self) -> float | None:
        """Seconds until memory rows are due; 0 when due now; None when there are none."""
        if not self._pending:
            return None
        if (
            self._stopped
            or len(self._pending) >= self.buffer_size
            or self._flush_seq > self._head_seq
        ):
            return 0
        return max(0.0, self._first_pending_at + self.flush_interval - time.monotonic())

    def _take_from_memory(self) -> Batch:
        count = min(self._batch_rows, len(self._pending))
        rows = [self._pending.popleft() for _ in range(count)]
        first_seq = self._head_seq
        self._head_seq += count
        self._settle_pending_clock()
        return Batch(rows, first_seq, first_seq + count)

    def _read_spill(self, spill: SpillFile) -> Batch:
        lines = read_spill_lines(spill.path)
        rows = [row for row in map(row_of_line, lines) if row is not None]
        if len(rows) < len(lines):
            logger.error(
                "storage %s: %d unreadable lines in %s dropped",
                self.name,
                len(lines) - len(rows),
                spill.path.name,
            )
            with self._cond:
                self._rows_rejected += len(lines) - len(rows)
                self._unstored -= len(lines) - len(rows)
        return Batch(rows, spill.first_seq, spill.last_seq + 1, spill)

    def _stopping_now(self) -> bool:
        deadline = self._write_deadline
        return deadline is not None and time.monotonic() >= deadline

    def _write_until_committed(self, batch: Batch) -> bool:
        """Write a batch, retrying through outages; False when stop() ran out of time."""
        retried_stale = False
        while True:
            fresh = not self._backend.connected
            try:
                self._backend.connect()
                outcome = self._commit(batch.rows)
            except Exception as error:
                self._backend.close()
                self._record_failure(error)
                if not fresh and not retried_stale:
                    # The connection may have died while idle: one fresh try before waiting.
                    retried_stale = True
                    continue
                if not self._wait_before_retry():
                    return False
                continue
            self._record_commit(batch, outcome, time.time())
            return True

    def _commit(self, rows: list[Row]) -> Outcome:
        outcome = Outcome()
        with self._backend.transaction():
            self._write_isolating(rows, outcome, isolated=False)
        return outcome

    def _write_isolating(self, rows: list[Row], outcome: Outcome, *, isolated: bool) -> None:
        """Write rows in a savepoint; when the database refuses one row, find it by halving."""
        trades, market = split_rows(rows)
        try:
            with self._backend.transaction():
                inserted = self._backend.write(trades, market, isolated=isolated)
        except self._backend.data_errors as error:
            if len(rows) == 1:
                logger.warning(
                    "storage %s: the database refused a row (%s): %.200r",
                    self.name,
                    self._scrub(error),
                    rows[0],
                )
                outcome.rejected.append(rows[0])
                return
            middle = len(rows) // 2
            self._write_isolating(rows[:middle], outcome, isolated=True)
            self._write_isolating(rows[middle:], outcome, isolated=True)
            return
        outcome.inserted += inserted
        outcome.duplicates += len(trades) - inserted
        outcome.market += len(market)

    def _record_commit(self, batch: Batch, outcome: Outcome, committed_at: float) -> None:
        if batch.spill is not None:
            with contextlib.suppress(FileNotFoundError):
                batch.spill.path.unlink()
        with self._cond:
            if batch.spill is not None:
                self._spill_files.remove(batch.spill)
            self._trades_inserted += outcome.inserted
            self._duplicates_ignored += outcome.duplicates
            self._market_data_inserted += outcome.market
            self._rows_rejected += len(outcome.rejected)
            self._unstored -= len(batch.rows)
            self._batches += 1
            self._done_seq = max(self._done_seq, batch.end_seq)
            self._database_ok = True
            outage_since, self._outage_since = self._outage_since, None
            self._cond.notify_all()
        if outage_since is not None:
            logger.warning(
                "storage %s: database back after %.1f s; writing what was kept",
                self.name,
                time.monotonic() - outage_since,
            )
        if self.on_commit is not None:
            self._call_on_commit(batch.rows, outcome.rejected, committed_at)

    def _call_on_commit(self, rows: list[Row], rejected: list[Row], committed_at: float) -> None:
        refused = {id(row) for row in rejected}
        try:
            points = [point_from_row(row) for row in rows if id(row) not in refused]
            self.on_commit(points, committed_at)
        except Exception:  # a consumer's bug must not stop the writer
            logger.exception("storage %s: on_commit callback failed", self.name)

    def _attempt_connect(self) -> None:
        try:
            self._backend.connect()
        except Exception as error:
            self._backend.close()
            self._record_failure(error)
            return
        with self._cond:
            self._database_ok = True

    def _record_failure(self, error: Exception) -> None:
        message = self._scrub(error)
        with self._cond:
            self._write_failures += 1
            self._last_error = message
            self._database_ok = False
            first = self._outage_since is None
            if first:
                self._outage_since = time.monotonic()
        if first:
            logger.error(
                "storage %s: database unavailable (%s); keeping rows, retrying every %g s",
                self.name,
                message,
                self.retry_delay,
            )

    def _scrub(self, error: Exception) -> str:
        message = f"{type(error).__name__}: {error}".strip()[:500]
        secret = self._backend.secret
        return message.replace(secret, "***") if secret else message

    def _wait_before_retry(self) -> bool:
        """Sleep retry_delay (less if stopping); False when stop() ran out of time."""
        wake_at = time.monotonic() + self.retry_delay
        with self._cond:
            while True:
                if self._stopping_now():
                    return False
                remaining = wake_at - time.monotonic()
                if remaining <= 0:
                    return True
                if self._write_deadline is not None:
                    remaining = min(remaining, self._write_deadline - time.monotonic())
                self._cond.wait(max(0.0, remaining))

    def _spill_what_is_left(self) -> None:
        with self._cond:
            while self._spilling:
                self._cond.wait()
            if not self._pending:
                return
            self._spilling = True
        self._spill_memory(keep=0)
