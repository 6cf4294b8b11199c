"""The local order book (snapshots, updates, deletes, top of book) and OKX's checksum over it."""

import zlib

import pytest

from collectors.exchanges.okx import book_checksum, okx_checksum
from collectors.exchanges.orderbook import OrderBook, parse_level
from tests.helpers import signed_crc32


def book_with(bids, asks) -> OrderBook:
    book = OrderBook()
    book.apply_snapshot(bids, asks)
    return book


def test_the_checksum_interleaves_bids_and_asks_best_first():
    bids = [["3366.1", "7"], ["3366", "6"]]
    asks = [["3366.8", "9"], ["3368", "8"], ["3372", "8"]]
    expected = signed_crc32("3366.1:7:3366.8:9:3366:6:3368:8:3372:8")
    assert okx_checksum(bids, asks) == expected


def test_the_checksum_is_signed_32_bit():
    # this string's unsigned CRC32 is above 2**31, so the checksum must come out negative
    text = "100.5:2:101:3"
    assert zlib.crc32(text.encode()) >= 2**31
    assert okx_checksum([["100.5", "2"]], [["101", "3"]]) == zlib.crc32(text.encode()) - 2**32


def test_the_checksum_covers_only_the_top_25_levels():
    bids = [[str(1000 - i), "1"] for i in range(30)]
    asks = [[str(2000 + i), "2"] for i in range(30)]
    text = ":".join(f"{1000 - i}:1:{2000 + i}:2" for i in range(25))
    assert okx_checksum(bids, asks) == signed_crc32(text)


def test_a_snapshot_is_sorted_best_first_whatever_the_order_it_came_in():
    book = book_with(
        bids=[["99", "1", "0", "1"], ["100.5", "2", "0", "3"], ["100", "4", "0", "1"]],
        asks=[["102", "5", "0", "1"], ["101", "3", "0", "2"]],
    )
    assert book.top(10) == (
        [["100.5", "2"], ["100", "4"], ["99", "1"]],
        [["101", "3"], ["102", "5"]],
    )


def test_an_update_changes_inserts_and_deletes_levels():
    book = book_with(
        bids=[["100.5", "2"], ["100", "4"], ["99", "1"]],
        asks=[["101", "3"], ["102", "5"]],
    )
    book.apply_update(
        bids=[["100", "0", "0", "0"], ["100.2", "7", "0", "2"], ["99", "1.5", "0", "1"]],
        asks=[["101.5", "1", "0", "1"], ["102", "0"]],
    )
    assert book.top(10) == (
        [["100.5", "2"], ["100.2", "7"], ["99", "1.5"]],
        [["101", "3"], ["101.5", "1"]],
    )


def test_deleting_a_level_the_book_does_not_hold_changes_nothing():
    book = book_with(bids=[["100", "1"]], asks=[["101", "1"]])
    book.apply_update(bids=[["98", "0"]], asks=[["105", "0.000"]])
    assert book.top(5) == ([["100", "1"]], [["101", "1"]])


def test_a_size_written_with_trailing_zeros_still_deletes_and_a_price_is_one_level_by_value():
    book = book_with(bids=[["100", "1"], ["99", "2"]], asks=[["101", "1"]])
    book.apply_update(bids=[["100.0", "3"], ["99", "0.0"]], asks=[])
    # the same price written differently is the same level; the latest string is kept
    assert book.top(5) == ([["100.0", "3"]], [["101", "1"]])


def test_a_snapshot_replaces_the_whole_book():
    book = book_with(bids=[["100", "1"]], asks=[["101", "1"]])
    book.apply_snapshot(bids=[["90", "2"]], asks=[["95", "3"]])
    assert book.top(5) == ([["90", "2"]], [["95", "3"]])


def test_top_returns_at_most_the_requested_depth():
    book = book_with(
        bids=[[str(100 - i), "1"] for i in range(10)], asks=[[str(200 + i), "1"] for i in range(10)]
    )
    bids, asks = book.top(3)
    assert bids == [["100", "1"], ["99", "1"], ["98", "1"]]
    assert asks == [["200", "1"], ["201", "1"], ["202", "1"]]


def test_the_book_checksum_matches_a_hand_built_string():
    book = book_with(bids=[["100.5", "2"], ["100", "4"]], asks=[["101", "3"]])
    book.apply_update(bids=[["100", "0"]], asks=[["101.5", "1"]])
    assert book_checksum(book) == signed_crc32("100.5:2:101:3:101.5:1")


@pytest.mark.parametrize(
    "level",
    [
        ["0", "1"],
        ["-1", "1"],
        ["100", "-1"],
        ["abc", "1"],
        ["NaN", "1"],
        ["100", "Infinity"],
        [100, "1"],
        ["100"],
        "100:1",
        None,
    ],
)
def test_a_bad_level_is_refused(level):
    with pytest.raises(ValueError):
        parse_level(level)


def test_a_bad_level_in_an_update_leaves_the_book_as_it_was():
    book = book_with(bids=[["100", "1"]], asks=[["101", "1"]])
    with pytest.raises(ValueError):
        book.apply_update(bids=[["100", "0"]], asks=[["bad", "1"]])
    assert book.top(5) == ([["100", "1"]], [["101", "1"]])


def test_a_snapshot_must_hold_lists_of_levels():
    book = OrderBook()
    with pytest.raises(ValueError, match="levels must be a list"):
        book.apply_snapshot(bids={"100": "1"}, asks=[])
