"""The exchange-neutral book sync: integrity judged by what each message carries."""

from datetime import UTC, datetime

import pytest

from collectors.exchanges.base import Handled
from collectors.exchanges.booksync import BookMessage, BookSync
from collectors.exchanges.orderbook import OrderBook
from collectors.types import DataType, MarketDataPoint

BIDS = [["100", "2"], ["99", "1"]]
ASKS = [["101", "3"]]


def top_checksum(book: OrderBook) -> int:
    """A stand-in exchange checksum: anything that changes with the book will do here."""
    bids, asks = book.top(25)
    return hash((tuple(map(tuple, bids)), tuple(map(tuple, asks)))) & 0x7FFFFFFF


def emit(action: str, message: BookMessage, book: OrderBook) -> MarketDataPoint:
    bids, asks = book.top(25)
    data = {"action": action, "bids": bids, "asks": asks, "seq": message.seq}
    return MarketDataPoint("x", "BTC", datetime.now(UTC), DataType.ORDERBOOK, data)


def sync(**options) -> BookSync:
    options.setdefault("checksum", top_checksum)
    return BookSync("book", emit, **options)


def checksum_after(*messages: BookMessage) -> int:
    book = OrderBook()
    book.apply_snapshot(messages[0].bids, messages[0].asks)
    for message in messages[1:]:
        book.apply_update(message.bids, message.asks)
    return top_checksum(book)


def test_a_sequence_only_stream_is_chained_and_a_gap_resyncs():
    books, handled = sync(resync_frames=["unsub", "sub"]), Handled()
    books.snapshot(BookMessage(BIDS, ASKS, ts=1, seq=10), handled)
    books.update(BookMessage([["98", "1"]], [], ts=2, seq=11, prev_seq=10), handled)
    assert (len(handled.points), handled.errors, handled.warnings) == (2, [], [])

    gap = Handled()
    books.update(BookMessage([["97", "1"]], [], ts=3, seq=13, prev_seq=12), gap)

    assert gap.points == [] and gap.send == ["unsub", "sub"]
    assert gap.errors == ["book sequence break: prev_seq 12, expected 11; resubscribing"]
    assert books.book is None and books.awaiting_ack


def test_a_checksum_only_stream_is_verified_without_any_sequence():
    books, handled = sync(resync_frames=["unsub", "sub"]), Handled()
    snapshot = BookMessage(BIDS, ASKS, ts=1)
    snapshot = BookMessage(BIDS, ASKS, ts=1, checksum=checksum_after(snapshot))
    books.snapshot(snapshot, handled)
    update = BookMessage([["100", "0"]], [["102", "1"]], ts=2)
    update = BookMessage(update.bids, update.asks, ts=2, checksum=checksum_after(snapshot, update))
    books.update(update, handled)

    assert (handled.errors, handled.warnings, handled.send) == ([], [], [])
    assert handled.points[-1].data["bids"] == [["99", "1"]]


def test_a_checksum_mismatch_resyncs_even_without_a_sequence():
    books, handled = sync(resync_frames=["unsub", "sub"]), Handled()
    books.snapshot(BookMessage(BIDS, ASKS, ts=1), handled)

    books.update(BookMessage([["98", "1"]], [], ts=2, checksum=12345), handled)

    assert handled.send == ["unsub", "sub"]
    assert handled.errors[-1].startswith("book checksum mismatch: got 12345, book has ")


def test_a_message_carrying_neither_is_applied_with_a_counted_warning():
    books, handled = sync(), Handled()
    books.snapshot(BookMessage(BIDS, ASKS, ts=1), handled)
    books.update(BookMessage([["98", "1"]], [], ts=2), handled)
    books.update(BookMessage([["97", "1"]], [], ts=3), handled)

    assert handled.errors == [] and handled.send == []
    assert len(handled.warnings) == 2
    assert "neither a sequence number nor a checksum" in handled.warnings[0]
    assert handled.points[-1].data["bids"] == [["100", "2"], ["99", "1"], ["98", "1"], ["97", "1"]]


def test_a_missing_sequence_after_a_sequenced_one_is_no_evidence_of_a_gap():
    books, handled = sync(), Handled()
    books.snapshot(BookMessage(BIDS, ASKS, ts=1, seq=10), handled)
    books.update(BookMessage([["98", "1"]], [], ts=2, seq=11, prev_seq=10), handled)
    books.update(BookMessage([["97", "1"]], [], ts=3, checksum=None), handled)
    books.update(BookMessage([["96", "1"]], [], ts=4, seq=20, prev_seq=19), handled)

    assert handled.errors == [] and handled.send == []
    assert len(handled.points) == 4


def test_without_resync_frames_a_gap_rebuilds_from_a_fresh_snapshot():
    fetched = []

    def fetch() -> BookMessage:
        fetched.append(True)
        return BookMessage([["90", "1"]], [["91", "1"]], ts=5, seq=30)

    books, handled = sync(fetch_snapshot=fetch), Handled()
    books.snapshot(BookMessage(BIDS, ASKS, ts=1, seq=10), handled)
    books.update(BookMessage([["98", "1"]], [], ts=2, seq=12, prev_seq=11), handled)

    assert handled.errors == [
        "book sequence break: prev_seq 11, expected 10; fetching a new snapshot"
    ]
    assert handled.send == [] and not books.awaiting_ack
    books.update(BookMessage([["89", "1"]], [], ts=6, seq=31, prev_seq=30), handled)
    assert fetched == [True]
    assert handled.points[-1].data["bids"] == [["90", "1"], ["89", "1"]]


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        # the snapshot holds up to 20: 15 is dropped; 21 follows it (prev 20 <= 20 < 21)
        ((15, 10), (21, 15), True),
        # the first update past the snapshot may straddle it: prev 18 <= 20 < 22
        ((22, 18), (23, 22), True),
    ],
)
def test_a_fetched_snapshot_is_aligned_by_sequence_as_binance_documents(first, second, kept):
    books = sync(fetch_snapshot=lambda: BookMessage(BIDS, ASKS, ts=1, seq=20))
    handled = Handled()
    books.update(BookMessage([["1", "1"]], [], ts=2, seq=first[0], prev_seq=first[1]), handled)
    books.update(BookMessage([["95", "1"]], [], ts=3, seq=second[0], prev_seq=second[1]), handled)

    assert handled.errors == []
    assert handled.points[-1].data["seq"] == second[0]
    assert (["1", "1"] in handled.points[-1].data["bids"]) is (first[0] > 20)
