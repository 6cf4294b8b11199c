"""StorageSink: batches data points into raw_trades and market_data, through database outages.

Collector threads call `put()`; one writer thread owns the database connection and
commits in groups. When it is idle, whatever is pending is committed at once. Under load
(a tenth of `buffer_size` or more rows arrived while it committed) it lets the next batch
fill up to `buffer_size`, but never holds a row longer than `flush_interval`
(COLLECTOR_FLUSH_INTERVAL) after it arrived: batches grow with the backlog, a commit's
fixed cost is shared by more rows, and the interval is a ceiling, never a floor.
Points become row tuples of strings at `put()` time, so a bad point is dropped on its
own and never poisons a batch. While the database is away, batches are kept and
retried whole (trades are idempotent through their unique key); beyond
`max_memory_rows` a spill thread of the sink moves the oldest pending rows to spill
files (fsynced JSON lines, written under a temporary name and renamed) that are
replayed in order once the database is back, also by the next process of the same
name after a crash. A replayed file is recorded in the same transaction as its rows
(storage_replayed_spill_files), so no file is ever written twice.

When the database is down and the spill directory refuses rows too, memory stays over
`max_memory_rows`: `has_room()` is False and `problem()` says why. The collector then
stops reading its socket (collectors.collector) until there is room again: the exchange
keeps or drops what it sends, and a reconnect's REST gap-fill recovers it. What the sink
itself cannot keep is counted, never silent: rows beyond twice `max_memory_rows` are shed
(`rows_shed`), and `stop()` returns the number of rows it could neither store nor spill.

Every row has a sequence number in the order it was accepted. Rows are committed in
that order, oldest first: spill files (named by their first and last sequence number)
before rows still in memory, so "everything up to N is committed" is one counter.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
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
    set_aside_temporary_files,
    write_spill_file,
)
from collectors.types import MarketDataPoint
from tcp_dashboard.locks import try_lock

logger = logging.getLogger(__name__)

MIN_BATCH_ROWS = 20_000  # a backlog is written in batches this big, for throughput
SPILL_FILE_ROWS = 10_000  # rows per spill file; a file is replayed in one transaction
STOP_SPILL_RESERVE = 1.0  # seconds of a stop() timeout kept for spilling what is left
# Seconds a stop() during an outage still gives the database before spilling: the writer
# has been failing all along, so waiting out the whole timeout only makes the stop late.
STOP_OUTAGE_GRACE = 2.0
INTERRUPT_GRACE = 5.0  # seconds stop() waits after breaking a hung connection
REJECT_LOG_EVERY = 1000  # after the first ten, log one bad point in this many
SPILL_FAILURE_LOG_EVERY = 100  # a failing spill directory: the first failure, then one in this many
SHED_FACTOR = 2  # rows beyond this many times max_memory_rows are shed by put()
SHED_REPORT_SECONDS = 60.0  # problem() tells of shedding this long after the last
NAME_PATTERN = re.compile(r"^[\w.-]+$")
FULL_DISK = {errno.ENOSPC, errno.EDQUOT}


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


def describe_spill_error(error: OSError) -> str:
    if error.errno in FULL_DISK:
        return "spill directory full"
    return f"spill directory failing ({type(error).__name__}: {error.strerror or error})"


class StorageSink:
    """Stores data points in batches; `put()` never waits for the database."""

    def __init__(
        self,
        *,
        name: str = "default",
        buffer_size: int = 1000,
        flush_interval: float | None = None,  # default: settings.COLLECTOR_FLUSH_INTERVAL
        max_memory_rows: int | None = None,  # default: settings.COLLECTOR_MAX_MEMORY_ROWS
        spill_dir: Path | None = None,
        database: dict | None = None,
        on_commit: Callable[[list[MarketDataPoint], float], None] | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        if flush_interval is None:
            flush_interval = float(settings.COLLECTOR_FLUSH_INTERVAL)
        if max_memory_rows is None:
            max_memory_rows = int(settings.COLLECTOR_MAX_MEMORY_ROWS)
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
        self._load_rows = max(2, buffer_size // 10)

        self._cond = threading.Condition()
        self._pending: deque[Row] = deque()
        self._head_seq = 0  # sequence number of _pending[0]
        self._next_seq = 0  # sequence number of the next row accepted
        self._done_seq = 0  # every row below this is committed or rejected
        self._spill_files: list[SpillFile] = []  # in replay order
        self._spilling = False
        self._spill_in_hand = 0
        self._first_pending_at = 0.0  # when the oldest row in memory arrived
        self._under_load = False  # many rows came while the last batch was committed
        self._flush_seq = 0  # flush() waits for rows up to here: write them without delay
        self._thread: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._lock_file = None
        self._running = False
        self._stopped = False
        self._write_deadline: float | None = None  # set by stop(): write until then, then spill
        self._outage_since: float | None = None
        self._spill_error = ""  # why the last spill failed; "" once one works again
        self._spill_retry_at = 0.0

        self._rows_received = 0
        self._rows_rejected = 0
        self._rows_recovered = 0
        self._unstored = 0  # received or recovered, not yet committed nor rejected nor lost
        self._trades_inserted = 0
        self._duplicates_ignored = 0
        self._market_data_inserted = 0
        self._batches = 0
        self._write_failures = 0
        self._spilled_rows = 0
        self._spill_failures = 0
        self._rows_shed = 0
        self._rows_lost = 0  # shed, or left in memory by stop() when they could not be spilled
        self._lost_reported = 0
        self._shed_at = 0.0
        self._replays_skipped = 0
        self._temporary_files_set_aside = 0
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
        self._spiller = threading.Thread(
            target=self._run_spiller, name=f"storage-{self.name}-spill", daemon=True
        )
        self._thread.start()
        self._spiller.start()

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
        """Accept points for storage; converts them here, so a bad one is dropped alone.

        Never waits for the database or the disk: the writer and spill threads do that.
        """
        rows = []
        failures = []
        for point in points:
            try:
                rows.append(point_to_row(point))
            except Exception as error:  # whatever a point's fault is, it is only that point's
                failures.append((point, error))
        shed = 0
        with self._cond:
            self._rows_received += len(rows) + len(failures)
            self._rows_rejected += len(failures)
            rejected_so_far = self._rows_rejected
            if rows and self._running and not self._stopped:
                room = SHED_FACTOR * self.max_memory_rows - self._memory_rows()
                if room < len(rows):
                    shed = len(rows) - max(0, room)
                    rows = rows[: max(0, room)]
                    self._rows_shed += shed
                    self._shed_at = time.monotonic()
                    self._rows_lost += shed
                    shed_so_far = self._rows_shed
            if rows:
                self._unstored += len(rows)
                self._accept(rows)
            spill = self._stopped and not self._spilling and self._thread is not None
            if spill:
                self._spilling = True  # no writer any more: the caller spills
        if failures:
            self._log_rejected(failures, rejected_so_far)
        if shed:
            logger.error(
                "storage %s: shed %d rows: memory is full (%d rows) and neither the database"
                " nor the spill directory takes them (%d shed so far)",
                self.name,
                shed,
                SHED_FACTOR * self.max_memory_rows,
                shed_so_far,
            )
        if spill:
            self._spill_memory(keep=0)
            self._report_lost_rows()

    def has_room(self) -> bool:
        """False while more than max_memory_rows wait in memory: the caller should pause."""
        with self._cond:
            return self._has_room()

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Wait until has_room(); False if not within the timeout."""
        if self._has_room():  # called for every frame: no lock on the way through
            return True
        with self._cond:
            return self._cond.wait_for(self._has_room, timeout)

    def problem(self) -> str:
        """Why storage is not keeping up now, for a collector's health; '' when it is."""
        with self._cond:
            parts = []
            down = self._outage_since is not None
            full = not self._has_room()
            if down and self._spill_error:
                parts.append(f"database down and {self._spill_error}")
            elif down:
                seconds = time.monotonic() - self._outage_since
                parts.append(f"database down for {seconds:.0f}s; rows kept until it is back")
            elif full and self._spill_error:
                parts.append(self._spill_error)
            if full:
                parts.append(f"{self._memory_rows()} rows waiting in memory, receiving paused")
            if self._shed_at and time.monotonic() - self._shed_at < SHED_REPORT_SECONDS:
                parts.append(f"{self._rows_shed} rows shed since the start, the last just now")
            return "; ".join(parts)

    def flush(self, timeout: float | None = None, *, give_up_when_down: bool = False) -> bool:
        """Wait until every point put so far is committed; False if not within the timeout
        (or, with give_up_when_down, as soon as the database is known to be down)."""
        with self._cond:
            target = self._next_seq
            if self._done_seq >= target:
                return True
            if not self._running:
                return False

            def over() -> bool:
                if self._done_seq >= target or not self._running:
                    return True
                return give_up_when_down and self._outage_since is not None

            self._flush_seq = max(self._flush_seq, target)
            self._cond.notify_all()
            return self._cond.wait_for(over, timeout) and self._done_seq >= target

    def flush_unless_down(self, timeout: float | None = None) -> bool:
        """flush(), but False at once while the database is known to be down."""
        return self.flush(timeout, give_up_when_down=True)

    def stop(self, timeout: float = 30.0) -> int:
        """Write everything; spill what cannot be written in time; the number of rows lost.

        During an outage the database gets STOP_OUTAGE_GRACE seconds more, not the whole
        timeout. Rows neither committed nor spilled are lost: counted, logged, returned.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._stopped:
                return self._rows_lost
            self._stopped = True
            write_deadline = deadline - min(STOP_SPILL_RESERVE, timeout * 0.2)
            if self._outage_since is not None:
                write_deadline = min(write_deadline, time.monotonic() + STOP_OUTAGE_GRACE)
            self._write_deadline = write_deadline
            thread, spiller = self._thread, self._spiller
            self._cond.notify_all()
        if thread is None:
            self._spill_unstarted()
            return self._report_lost_rows()
        if spiller is not None:
            spiller.join(max(0.0, deadline - time.monotonic()))
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._backend.interrupt()
            thread.join(INTERRUPT_GRACE)
        if thread.is_alive():
            logger.error("storage %s: the writer did not stop in time", self.name)
        return self._report_lost_rows()

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
                "memory_rows": self._memory_rows(),
                "spilled_rows": self._spilled_rows,
                "spill_files": len(self._spill_files),
                "spill_failures": self._spill_failures,
                "rows_shed": self._rows_shed,
                "rows_lost": self._rows_lost,
                "replays_skipped": self._replays_skipped,
                "temporary_files_set_aside": self._temporary_files_set_aside,
                "last_error": self._last_error,
                "spill_error": self._spill_error,
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
        if not before or before <= self.max_memory_rows < len(pending):
            self._cond.notify_all()

    def _has_room(self) -> bool:
        return self._memory_rows() <= self.max_memory_rows or not self._running

    def _memory_rows(self) -> int:
        """Rows waiting in memory, with those a spill has in hand (they may come back)."""
        return len(self._pending) + self._spill_in_hand

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

    def _report_lost_rows(self) -> int:
        """After stop: rows still in memory, which nothing will write or spill, are lost;
        the number of rows lost in all (those and any shed), logged once."""
        with self._cond:
            if self._spilling or (self._thread is not None and self._thread.is_alive()):
                return self._rows_lost  # whoever is still at work reports
            left = len(self._pending)
            self._pending.clear()
            self._head_seq += left
            self._unstored -= left
            self._rows_lost += left
            lost, shed = self._rows_lost, self._rows_shed
            reported, self._lost_reported = self._lost_reported, lost
        if lost != reported:
            logger.error(
                "storage %s: %d rows could not be kept: neither stored nor spilled (%d of them"
                " shed while memory was full)",
                self.name,
                lost,
                shed,
            )
        return lost

    # spilling ---------------------------------------------------------------------

    def _lock_spill_directory(self) -> None:
        lock_file = try_lock(self.spill_dir / "lock")
        if lock_file is None:
            raise SpillDirectoryBusy(
                f"another process is running a storage sink named {self.name!r} "
                f"(spill directory {self.spill_dir}); give each process its own name"
            )
        self._lock_file = lock_file

    def _recover_spill_files(self) -> None:
        aside = set_aside_temporary_files(self.spill_dir)
        if aside:
            # A temporary file is one whose write did not finish: its rows went back to
            # memory (and were stored or spilled again) or died with the process.
            logger.warning(
                "storage %s: %d unfinished temporary spill files moved to %s, not replayed",
                self.name,
                len(aside),
                aside[0].parent,
            )
            self._temporary_files_set_aside += len(aside)
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

    def _run_spiller(self) -> None:
        """Keep memory under max_memory_rows by spilling the oldest rows, off put()'s thread."""
        while True:
            with self._cond:
                while not self._spill_due():
                    if self._stopped:
                        return
                    wait = None
                    if len(self._pending) > self.max_memory_rows:
                        wait = max(0.01, self._spill_retry_at - time.monotonic())
                    self._cond.wait(wait)
                self._spilling = True
            self._spill_memory(keep=self.max_memory_rows // 2)

    def _spill_due(self) -> bool:
        return (
            not self._stopped
            and not self._spilling
            and len(self._pending) > self.max_memory_rows
            and time.monotonic() >= self._spill_retry_at
        )

    def _spill_memory(self, keep: int) -> bool:
        """Move the oldest memory rows to spill files until `keep` remain; caller set _spilling.
        False when the disk refused some (they stay in memory)."""
        try:
            while True:
                with self._cond:
                    count = min(SPILL_FILE_ROWS, len(self._pending) - keep)
                    if count <= 0:
                        return True
                    first_seq = self._head_seq
                    rows = [self._pending.popleft() for _ in range(count)]
                    self._head_seq += count
                    self._spill_in_hand = count
                spilled = self._spill_rows(first_seq, rows)
                with self._cond:
                    self._spill_in_hand = 0
                    if not spilled:
                        self._pending.extendleft(reversed(rows))
                        self._head_seq = first_seq
                        return False
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
            with self._cond:
                self._spill_failures += 1
                failures = self._spill_failures
                first = not self._spill_error
                self._spill_error = describe_spill_error(error)
                self._spill_retry_at = time.monotonic() + self.retry_delay
            if first or failures % SPILL_FAILURE_LOG_EVERY == 0:
                logger.error(
                    "storage %s: cannot spill %d rows to disk: %s (failure %d; retrying every"
                    " %g s, rows stay in memory)",
                    self.name,
                    len(rows),
                    error,
                    failures,
                    self.retry_delay,
                )
            return False
        with self._cond:
            bisect.insort(self._spill_files, spill, key=lambda f: f.first_seq)
            self._spilled_rows += len(rows)
            recovered = bool(self._spill_error)
            self._spill_error = ""
            self._spill_retry_at = 0.0
        if recovered:
            logger.warning("storage %s: the spill directory takes rows again", self.name)
        return True

    def _spill_unstarted(self) -> None:
        with self._cond:
            if not self._pending or self._spilling:
                return
            self._spilling = True
        self._spill_memory(keep=0)

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
                        self._spill_or_lose(batch)
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

    def _spill_or_lose(self, batch: Batch) -> None:
        """A batch from memory the writer gave up on at stop: to disk, or counted as lost."""
        if self._spill_rows(batch.first_seq, batch.rows):
            return
        with self._cond:
            self._unstored -= len(batch.rows)
            self._rows_lost += len(batch.rows)

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
        """Seconds until memory rows are due: 0 when due now, None when there are none."""
        pending = len(self._pending)
        if not pending:
            return None
        if (
            not self._under_load
            or self._stopped
            or pending >= self.buffer_size
            or self._flush_seq > self._head_seq
        ):
            return 0
        return max(0.0, self._first_pending_at + self.flush_interval - time.monotonic())

    def _take_from_memory(self) -> Batch:
        """Everything pending, up to a batch: one row when idle, the backlog under load."""
        pending = self._pending
        full = len(pending) > self.max_memory_rows
        count = min(self._batch_rows, len(pending))
        rows = [pending.popleft() for _ in range(count)]
        first_seq = self._head_seq
        self._head_seq += count
        if pending:
            self._first_pending_at = time.monotonic()  # the rest are treated as new
        if full:
            self._cond.notify_all()  # room again for a paused receiver
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
                outcome = self._commit(batch)
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

    def _commit(self, batch: Batch) -> Outcome | None:
        """Write a batch in one transaction; None for a spill file already replayed."""
        outcome = Outcome()
        backend = self._backend
        if batch.spill is None:
            trades, market = split_rows(batch.rows)
            try:
                inserted = backend.write_batch(trades, market)
            except backend.data_errors:
                pass  # the database refuses some row: found below, in savepoints
            else:
                outcome.inserted = inserted
                outcome.duplicates = len(trades) - inserted
                outcome.market = len(market)
                return outcome
        with backend.transaction():
            if batch.spill is not None and not backend.record_replay(
                self.name, batch.spill.path.name
            ):
                return None
            self._write_isolating(batch.rows, outcome, isolated=False)
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

    def _record_commit(self, batch: Batch, outcome: Outcome | None, committed_at: float) -> None:
        if batch.spill is not None:
            with contextlib.suppress(FileNotFoundError):
                batch.spill.path.unlink()
            self._forget_replay(batch.spill)
        with self._cond:
            if batch.spill is not None:
                self._spill_files.remove(batch.spill)
            if outcome is None:
                self._replays_skipped += 1
            else:
                self._trades_inserted += outcome.inserted
                self._duplicates_ignored += outcome.duplicates
                self._market_data_inserted += outcome.market
                self._rows_rejected += len(outcome.rejected)
                self._batches += 1
            self._unstored -= len(batch.rows)
            self._under_load = len(self._pending) >= self._load_rows
            self._done_seq = max(self._done_seq, batch.end_seq)
            self._database_ok = True
            outage_since, self._outage_since = self._outage_since, None
            self._cond.notify_all()
        if outcome is None:
            logger.warning(
                "storage %s: spill file %s was replayed before (its rows are stored);"
                " removed without writing it again",
                self.name,
                batch.spill.path.name,
            )
            return
        if outage_since is not None:
            logger.warning(
                "storage %s: database back after %.1f s; writing what was kept",
                self.name,
                time.monotonic() - outage_since,
            )
        if self.on_commit is not None:
            self._call_on_commit(batch.rows, outcome.rejected, committed_at)

    def _forget_replay(self, spill: SpillFile) -> None:
        """The file is gone, so its replay record is not needed; a failure here costs a row."""
        try:
            with self._backend.transaction():
                self._backend.forget_replay(self.name, spill.path.name)
        except Exception as error:
            logger.warning(
                "storage %s: could not drop the replay record of %s: %s",
                self.name,
                spill.path.name,
                self._scrub(error),
            )

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
                self._cond.notify_all()
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
