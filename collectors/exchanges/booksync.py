"""Keeping a local order book from a snapshot plus updates, for any exchange.

An exchange module turns each book message into a BookMessage: its levels, its time, and
whatever integrity data the exchange put in it. Integrity is judged by what a message
carries, because exchanges add and drop fields over the years (OKX's `books` updates
carried a CRC32 checksum and no sequence numbers in 2022, both later, and a checksum of 0
from 2026):

- a sequence (`seq` and `prev_seq`) is checked against the chain: a message must follow
  the one before it (prev_seq == the last seq), and a reset (seq < prev_seq) or a gap is
  evidence that the book is wrong;
- a checksum is checked against the book after the message is applied; a mismatch is
  evidence too;
- a message carrying neither is applied, with a counted warning, since nothing in it can
  prove the book right or wrong.

Only evidence resynchronizes: with `resync_frames` (OKX) they are sent (unsubscribe and
subscribe again) and updates are dropped until the new subscription is acknowledged and
its snapshot arrives; without them (Binance), the book is rebuilt from a REST snapshot.

The book keeps at most `max_levels` levels a side (collectors.bounds): levels beyond the
deepest are dropped, with a counted warning; a message with more levels a side than that is
refused by the exchange module before it gets here.

When the stream opens with updates instead of a snapshot, updates are buffered and a
snapshot is fetched (`fetch_snapshot`) and aligned with them:

- a snapshot with a sequence number S: buffered updates with seq <= S are in it and are
  dropped; the first one applied must have prev_seq <= S < seq, else the snapshot is too
  old and is fetched again (Binance's diff-depth rule: U <= lastUpdateId + 1 <= u);
- a snapshot without one is aligned by time: every buffered update is applied over it in
  chain order, which is safe because an update carries each changed level's new total
  size, so replaying one the snapshot already holds changes nothing once the later ones
  follow. Points are emitted and checksums checked only from the first update stamped
  after the snapshot's time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collectors.bounds import DEFAULT_MAX_BOOK_LEVELS
from collectors.exchanges.base import Handled
from collectors.exchanges.orderbook import OrderBook
from collectors.exchanges.parsing import describe_error
from collectors.types import MarketDataPoint

UPDATE_BUFFER = 1000  # buffered updates while a snapshot is awaited
FETCH_ATTEMPTS = 3  # fetches in a row when a snapshot is older than the buffered updates
FETCH_RETRY_SECONDS = 2.0  # pause after a failed fetch, so a broken REST is not hammered


@dataclass(slots=True, frozen=True)
class BookMessage:
    """One book message (a snapshot or an update), with what it carries, None where absent."""

    bids: Any  # levels as the exchange sent them: [[price, size, ...], ...]
    asks: Any
    ts: int  # exchange time, epoch milliseconds
    seq: int | None = None  # the book's sequence number after this message
    prev_seq: int | None = None  # the book's sequence number before it
    checksum: int | None = None

    @property
    def has_sequence(self) -> bool:
        return self.seq is not None and self.prev_seq is not None

    @property
    def changes(self) -> bool:
        return bool(self.bids or self.asks)


# (action, message, book) -> the point to emit, or None
Emit = Callable[[str, BookMessage, OrderBook], MarketDataPoint | None]


class BookSync:
    """One connection's local book of one market.

    States: awaiting a resubscription's acknowledgement (stale updates dropped); no book
    (updates buffered, snapshot fetched); anchored to a fetched snapshot (aligning); in
    sync (updates chained and checked as far as they allow).
    """

    def __init__(
        self,
        name: str,
        emit: Emit,
        *,
        checksum: Callable[[OrderBook], int] | None = None,
        fetch_snapshot: Callable[[], BookMessage] | None = None,
        resync_frames: list[str] | None = None,
        labels: tuple[str, str] = ("seq", "prev_seq"),
        max_levels: int = DEFAULT_MAX_BOOK_LEVELS,
    ) -> None:
        self.name = name  # the channel, as errors name it
        self.emit = emit
        self.checksum = checksum
        self.fetch_snapshot = fetch_snapshot
        self.resync_frames = list(resync_frames or [])
        self.seq_label, self.prev_label = labels
        self.max_levels = max_levels
        self.book: OrderBook | None = None
        self.last_seq: int | None = None
        self.anchor: BookMessage | None = None  # a fetched snapshot not caught up with yet
        self.buffer: deque[BookMessage] = deque(maxlen=UPDATE_BUFFER)
        self.awaiting_ack = False  # a first subscription has no stale updates in flight
        self.next_fetch_at = 0.0

    def on_subscribed(self) -> None:
        self.awaiting_ack = False

    # messages ---------------------------------------------------------------------------

    def snapshot(self, message: BookMessage, handled: Handled) -> None:
        book = OrderBook(self.max_levels)
        try:
            dropped = book.apply_snapshot(message.bids, message.asks)
        except ValueError as error:
            self.resync(handled, f"{self.name} bad snapshot: {describe_error(error)}")
            return
        self._dropped(dropped, handled)
        self._forget()
        self.awaiting_ack = False
        self.book, self.last_seq = book, message.seq
        self._verify_and_emit(handled, "snapshot", message, changed=True)

    def update(self, message: BookMessage, handled: Handled) -> None:
        if self.awaiting_ack:
            return  # sent before the resubscription: the new snapshot holds it
        if self.anchor is not None:
            if self._align(message, handled):
                return
            self._forget()  # the snapshot is too old for this update: fetch a newer one
        if self.book is None:
            self._buffer(message, handled)
        else:
            self._apply(message, handled)

    def bad_message(self, handled: Handled, reason: str) -> None:
        """A message that cannot be read: the book misses it, so it is rebuilt."""
        self.resync(handled, reason)

    def resync(self, handled: Handled, reason: str) -> None:
        self._forget()
        if self.resync_frames:
            handled.errors.append(f"{reason}; resubscribing")
            handled.send.extend(self.resync_frames)
            self.awaiting_ack = True
        else:
            handled.errors.append(f"{reason}; fetching a new snapshot")

    # in sync -----------------------------------------------------------------------------

    def _apply(self, message: BookMessage, handled: Handled) -> None:
        if message.has_sequence:
            if message.seq < message.prev_seq:
                self.resync(
                    handled,
                    f"{self.name} sequence reset: {self.seq_label} {message.seq} < "
                    f"{self.prev_label} {message.prev_seq}",
                )
                return
            if self.last_seq is not None and message.prev_seq != self.last_seq:
                self.resync(
                    handled,
                    f"{self.name} sequence break: {self.prev_label} {message.prev_seq}, "
                    f"expected {self.last_seq}",
                )
                return
        elif message.checksum is None or self.checksum is None:
            handled.warnings.append(
                f"{self.name} update carries neither a sequence number nor a checksum: "
                "applied unchecked"
            )
        if self._apply_levels(message, handled):
            self.last_seq = message.seq
            self._verify_and_emit(handled, "update", message, changed=message.changes)

    def _apply_levels(self, message: BookMessage, handled: Handled) -> bool:
        assert self.book is not None
        try:
            dropped = self.book.apply_update(message.bids, message.asks)
        except ValueError as error:
            self.resync(handled, f"{self.name} bad update: {describe_error(error)}")
            return False
        self._dropped(dropped, handled)
        return True

    def _dropped(self, levels: int, handled: Handled) -> None:
        if levels:
            handled.warnings.append(
                f"{self.name} book deeper than {self.max_levels} levels a side: "
                f"{levels} deepest dropped"
            )

    def _verify_and_emit(
        self, handled: Handled, action: str, message: BookMessage, changed: bool
    ) -> None:
        book = self.book
        assert book is not None
        if message.checksum is not None and self.checksum is not None:
            ours = self.checksum(book)
            if message.checksum != ours:
                at = f" at {self.seq_label} {message.seq}" if message.seq is not None else ""
                self.resync(
                    handled,
                    f"{self.name} checksum mismatch{at}: got {message.checksum}, book has {ours}",
                )
                return
        if not changed:  # a keepalive repeating the last sequence number
            return
        point = self.emit(action, message, book)
        if point is not None:
            handled.points.append(point)

    # opening with updates: buffer, fetch a snapshot, align ---------------------------------

    def _buffer(self, message: BookMessage, handled: Handled) -> None:
        last = self.buffer[-1] if self.buffer else None
        chained = last is not None and message.has_sequence and last.has_sequence
        if chained and message.prev_seq != last.seq:
            self.buffer.clear()  # only an unbroken run of updates can be replayed
        self.buffer.append(message)
        if self.fetch_snapshot is not None and time.monotonic() >= self.next_fetch_at:
            self._sync_from_snapshot(handled)

    def _sync_from_snapshot(self, handled: Handled) -> None:
        assert self.fetch_snapshot is not None
        for _ in range(FETCH_ATTEMPTS):
            book = OrderBook(self.max_levels)
            try:
                snapshot = self.fetch_snapshot()
                dropped = book.apply_snapshot(snapshot.bids, snapshot.asks)
            except (OSError, KeyError, TypeError, ValueError) as error:
                handled.errors.append(f"{self.name} REST snapshot failed: {describe_error(error)}")
                break
            self._dropped(dropped, handled)
            self.book, self.anchor, self.last_seq = book, snapshot, None
            if self._replay_buffer(handled):
                self.buffer.clear()
                return
        else:
            handled.errors.append(
                f"{self.name} REST snapshot older than the buffered updates {FETCH_ATTEMPTS} times"
            )
        self.book, self.anchor, self.last_seq = None, None, None
        self.next_fetch_at = time.monotonic() + FETCH_RETRY_SECONDS

    def _replay_buffer(self, handled: Handled) -> bool:
        """Fold the buffered updates into the fresh snapshot; False on a gap."""
        for message in list(self.buffer):  # a resync clears the buffer
            if self.book is None:  # resynced on a bad level
                return True
            if self.anchor is None:
                self._apply(message, handled)
            elif not self._align(message, handled):
                return False
        return True

    def _align(self, message: BookMessage, handled: Handled) -> bool:
        """Fold one update into a fetched snapshot; False when the snapshot is too old for it."""
        anchor = self.anchor
        assert anchor is not None
        if message.has_sequence:
            if message.seq < message.prev_seq:
                return False
            if anchor.seq is not None:
                if message.seq <= anchor.seq:
                    return True  # already in the snapshot
                if message.prev_seq > anchor.seq:
                    return False
            elif self.last_seq is not None and message.prev_seq != self.last_seq:
                return False
        if not self._apply_levels(message, handled):
            return True  # resynced
        self.last_seq = message.seq
        if (anchor.seq is not None and message.has_sequence) or message.ts > anchor.ts:
            self.anchor = None
            self._verify_and_emit(handled, "update", message, changed=True)
        return True

    def _forget(self) -> None:
        self.book, self.anchor, self.last_seq = None, None, None
        self.buffer.clear()
