"""The OKX adapter's books: books5 as pushed, and the local full-depth book of `books`."""

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from collectors.exchanges.base import FrameError
from collectors.exchanges.okx import (
    fetch_okx_book_snapshot,
)
from collectors.types import DataType
from tests.collectors.exchanges.okx_frames import (
    AT,
    RESYNC,
    SNAPSHOT_ASKS,
    SNAPSHOT_BIDS,
    TS,
    books,
    books_session,
    push,
    rest_book,
    session,
    synced_books,
)
from tests.helpers import signed_crc32

# books5 ------------------------------------------------------------------------------------


BOOKS5_ITEM = {
    "asks": [["8476.98", "415", "0", "13"], ["8477", "7", "0", "2"]],
    "bids": [["8476.97", "256", "0", "12"], ["8475.55", "101", "0", "1"]],
    "instId": "BTC-USDT",
    "ts": TS,
    "seqId": 123456,
}


def test_a_books5_push_becomes_an_orderbook_snapshot_point_with_the_exchange_strings():
    handled = session(DataType.ORDERBOOK).handle(push("books5", [BOOKS5_ITEM]))
    assert handled.errors == []
    [point] = handled.points
    assert (point.data_type, point.timestamp) == (DataType.ORDERBOOK, AT)
    assert point.data == {
        "channel": "books5",
        "action": "snapshot",
        "bids": [["8476.97", "256"], ["8475.55", "101"]],
        "asks": [["8476.98", "415"], ["8477", "7"]],
        "seq_id": 123456,
        "checksum": None,
        "raw": BOOKS5_ITEM,
    }
    orjson.dumps(point.data)  # bound for JSONB


def test_a_books5_checksum_is_carried_when_present():
    item = {**BOOKS5_ITEM, "checksum": -1200119424}
    [point] = session(DataType.ORDERBOOK).handle(push("books5", [item])).points
    assert point.data["checksum"] == -1200119424


@pytest.mark.parametrize(
    "asks", [[["0", "1", "0", "1"]], [["8477", "-1", "0", "1"]], [["x", "1"]], "nope"]
)
def test_a_books5_push_with_a_bad_level_is_reported_and_skipped(asks):
    handled = session(DataType.ORDERBOOK).handle(push("books5", [{**BOOKS5_ITEM, "asks": asks}]))
    assert handled.points == []
    [error] = handled.errors
    assert error.startswith("books5 item skipped")


# books: the local full-depth book ----------------------------------------------------------


def test_a_books_snapshot_becomes_an_orderbook_point_of_the_top_levels():
    okx_session = books_session()
    [point] = okx_session.handle(books("snapshot", 10, -1, SNAPSHOT_BIDS, SNAPSHOT_ASKS)).points
    assert (point.data_type, point.timestamp) == (DataType.ORDERBOOK, AT)
    assert point.data == {
        "channel": "books",
        "action": "snapshot",
        "bids": [["100.5", "2"], ["100", "4"], ["99", "1"]],
        "asks": [["101", "3"], ["102", "5"]],
        "seq_id": 10,
        "checksum": None,
    }


def test_books_updates_change_insert_and_delete_levels():
    okx_session = synced_books()
    okx_session.handle(books("update", 11, 10, bids=[("100", "0", "0", "0")]))
    handled = okx_session.handle(
        books("update", 12, 11, bids=[("100.7", "1", "0", "1")], asks=[("101", "0", "0", "0")])
    )
    assert handled.errors == [] and handled.send == []
    [point] = handled.points
    assert point.data == {
        "channel": "books",
        "action": "update",
        "bids": [["100.7", "1"], ["100.5", "2"], ["99", "1"]],
        "asks": [["102", "5"]],
        "seq_id": 12,
        "checksum": None,
    }


def test_a_books_point_holds_at_most_25_levels_a_side():
    bids = [(str(1000 - i), "1", "0", "1") for i in range(30)]
    asks = [(str(2000 + i), "1", "0", "1") for i in range(30)]
    [point] = books_session().handle(books("snapshot", 1, -1, bids, asks)).points
    assert len(point.data["bids"]) == len(point.data["asks"]) == 25
    assert point.data["bids"][-1] == ["976", "1"]


def test_a_correct_books_checksum_is_accepted():
    okx_session = books_session()
    checksum = signed_crc32("100.5:2:101:3:100:4:102:5:99:1")
    handled = okx_session.handle(
        books("snapshot", 10, -1, SNAPSHOT_BIDS, SNAPSHOT_ASKS, checksum=checksum)
    )
    assert handled.errors == []
    assert handled.points[0].data["checksum"] == checksum
    after_update = signed_crc32("100.5:2:101:3:99:1:102:5")
    handled = okx_session.handle(
        books("update", 11, 10, bids=[("100", "0", "0", "0")], checksum=after_update)
    )
    assert (handled.errors, handled.send) == ([], [])
    assert handled.points[0].data["checksum"] == after_update


def test_it_resyncs_when_the_checksum_is_wrong():
    okx_session = synced_books()
    handled = okx_session.handle(
        books("update", 11, 10, bids=[("100", "0", "0", "0")], checksum=123456789)
    )
    assert handled.points == []
    [error] = handled.errors
    assert error.startswith("books checksum mismatch at seqId 11")
    assert handled.send == RESYNC
    assert okx_session.books.book is None


def test_a_wrong_checksum_on_a_snapshot_also_resyncs():
    handled = books_session().handle(
        books("snapshot", 10, -1, SNAPSHOT_BIDS, SNAPSHOT_ASKS, checksum=42)
    )
    assert handled.points == [] and handled.send == RESYNC


def test_a_zero_checksum_means_none_and_is_not_checked():
    okx_session = synced_books()
    handled = okx_session.handle(books("update", 11, 10, bids=[("98", "1", "0", "1")], checksum=0))
    assert (handled.errors, handled.send) == ([], [])
    assert handled.points[0].data["checksum"] is None


def test_it_resyncs_when_the_sequence_breaks():
    okx_session = synced_books()
    handled = okx_session.handle(books("update", 13, 12, bids=[("98", "1", "0", "1")]))
    assert handled.points == []
    assert handled.errors == ["books sequence break: prevSeqId 12, expected 10; resubscribing"]
    assert handled.send == RESYNC


def test_it_resyncs_when_the_sequence_resets():
    okx_session = synced_books()
    handled = okx_session.handle(books("update", 3, 10, bids=[("98", "1", "0", "1")]))
    assert handled.points == []
    assert handled.errors == ["books sequence reset: seqId 3 < prevSeqId 10; resubscribing"]
    assert handled.send == RESYNC


def test_a_keepalive_repeating_the_seq_id_is_accepted_without_a_point():
    okx_session = synced_books()
    handled = okx_session.handle(books("update", 10, 10))
    assert (handled.points, handled.errors, handled.send) == ([], [], [])
    handled = okx_session.handle(books("update", 11, 10, asks=[("101", "1", "0", "1")]))
    assert handled.points[0].data["asks"] == [["101", "1"], ["102", "5"]]


def test_a_bad_level_in_an_update_resyncs():
    okx_session = synced_books()
    handled = okx_session.handle(books("update", 11, 10, bids=[("-5", "1", "0", "1")]))
    assert handled.send == RESYNC
    assert handled.errors[0].startswith("books bad update")


def test_after_a_resync_stale_updates_wait_for_the_new_subscription_and_its_snapshot():
    okx_session = synced_books()
    assert okx_session.handle(books("update", 13, 12)).send == RESYNC
    # still in flight from the old subscription: dropped without a word
    stale = okx_session.handle(books("update", 14, 13, bids=[("98", "1", "0", "1")]))
    assert (stale.points, stale.errors, stale.send) == ([], [], [])
    ack = '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4"}'
    assert okx_session.handle(ack).subscribed
    [point] = okx_session.handle(books("snapshot", 20, -1, [("90", "1")], [("91", "2")])).points
    assert (point.data["bids"], point.data["asks"], point.data["seq_id"]) == (
        [["90", "1"]],
        [["91", "2"]],
        20,
    )
    assert okx_session.handle(books("update", 21, 20, bids=[("90", "3")])).points


def test_a_books_push_with_an_unknown_action_raises_frame_error():
    with pytest.raises(FrameError, match="unknown action"):
        books_session().handle(books("partial", 1, -1))


# books: opening with an update, snapshot over REST -----------------------------------------


def test_fetching_a_snapshot_asks_okx_rest_for_400_levels(rest):
    rest.answers.append(rest_book(seq_id=123))
    book = fetch_okx_book_snapshot(rest.url, "BTC-USDT", 400)
    assert book["seqId"] == 123
    assert book["bids"][0] == ["100.5", "2", "0", "1"]
    [path] = rest.paths
    assert urlsplit(path).path == "/api/v5/market/books"
    assert parse_qs(urlsplit(path).query) == {"instId": ["BTC-USDT"], "sz": ["400"]}


def test_an_okx_rest_error_answer_raises_value_error(rest):
    rest.answers.append((200, b'{"code":"51001","msg":"Instrument ID does not exist","data":[]}'))
    with pytest.raises(ValueError, match="okx REST error 51001: Instrument ID does not exist"):
        fetch_okx_book_snapshot(rest.url, "BTC-USDT", 400)


def test_an_http_failure_raises_os_error(rest):
    rest.answers.append((503, b"busy"))
    with pytest.raises(OSError):
        fetch_okx_book_snapshot(rest.url, "BTC-USDT", 400)


def test_only_http_rest_urls_are_fetched():
    with pytest.raises(ValueError, match="http"):
        fetch_okx_book_snapshot("file:///etc/passwd", "BTC-USDT", 400)


def test_opening_with_an_update_fetches_a_snapshot_and_drops_what_it_already_holds(rest):
    rest.answers.append(rest_book(seq_id=20))
    okx_session = books_session(rest_url=rest.url)
    # seqId 15 is older than the REST snapshot (20): already in it
    first = okx_session.handle(books("update", 15, 10, bids=[("1", "1")]))
    assert (first.points, first.errors, first.send) == ([], [], [])
    assert len(rest.paths) == 1
    older = okx_session.handle(books("update", 20, 15, bids=[("2", "1")]))
    assert older.points == []
    # the first update past the snapshot: prevSeqId <= 20 < seqId
    handled = okx_session.handle(books("update", 25, 20, bids=[("100.7", "1", "0", "1")]))
    assert handled.errors == []
    [point] = handled.points
    assert point.data["bids"] == [["100.7", "1"], ["100.5", "2"], ["100", "4"], ["99", "1"]]
    assert (point.data["action"], point.data["seq_id"]) == ("update", 25)
    # in sync from here on: the chain is checked again
    assert okx_session.handle(books("update", 26, 25, asks=[("101", "0")])).points
    assert okx_session.handle(books("update", 30, 29)).send == RESYNC
    assert len(rest.paths) == 1


def test_buffered_updates_past_the_snapshot_are_applied_at_once(rest):
    rest.answers.append(rest_book(seq_id=20))
    okx_session = books_session(rest_url=rest.url)
    # the first fetch of this session fails, so updates are buffered until the next one
    rest.answers.insert(0, (500, b"{}"))
    failed = okx_session.handle(books("update", 18, 15, bids=[("1", "1")]))
    assert failed.errors[0].startswith("books REST snapshot failed")
    okx_session.books.next_fetch_at = 0.0  # the retry pause is over
    handled = okx_session.handle(books("update", 22, 18, bids=[("100.2", "3")]))
    [point] = handled.points
    assert point.data["seq_id"] == 22
    assert point.data["bids"][:2] == [["100.5", "2"], ["100.2", "3"]]


def test_a_snapshot_older_than_the_buffered_updates_is_fetched_again(rest):
    rest.answers += [rest_book(seq_id=5), rest_book(seq_id=12)]
    okx_session = books_session(rest_url=rest.url)
    # prevSeqId 10 > 5: the first snapshot misses an update; the second (12) covers it
    handled = okx_session.handle(books("update", 15, 10, asks=[("101.5", "1")]))
    assert handled.errors == []
    assert len(rest.paths) == 2
    [point] = handled.points
    assert point.data["asks"] == [["101", "3"], ["101.5", "1"], ["102", "5"]]
    assert point.data["seq_id"] == 15


def test_a_snapshot_that_stays_too_old_is_reported_and_retried_after_a_pause(rest):
    rest.answers += [rest_book(seq_id=5)] * 3
    okx_session = books_session(rest_url=rest.url)
    handled = okx_session.handle(books("update", 15, 10))
    assert handled.points == []
    assert handled.errors == ["books REST snapshot older than the buffered updates 3 times"]
    assert len(rest.paths) == 3
    # inside the pause: buffered, not fetched
    assert okx_session.handle(books("update", 16, 15)).errors == []
    assert len(rest.paths) == 3


def test_a_failed_rest_fetch_is_reported_and_not_retried_at_once(rest):
    rest.answers.append((200, b'{"code":"50011","msg":"Too Many Requests","data":[]}'))
    okx_session = books_session(rest_url=rest.url)
    handled = okx_session.handle(books("update", 15, 10))
    assert handled.errors == ["books REST snapshot failed: okx REST error 50011: Too Many Requests"]
    assert okx_session.handle(books("update", 16, 15)).errors == []
    assert len(rest.paths) == 1


def test_a_rest_snapshot_without_seq_id_is_aligned_by_replaying_the_chain(rest):
    # the snapshot (ts ...000) already holds update 15 (ts ...999 earlier); replaying is harmless
    rest.answers.append(
        rest_book(ts="1697123456000", bids=[("100.5", "2"), ("100", "9")], asks=[("101", "3")])
    )
    okx_session = books_session(rest_url=rest.url)
    before = okx_session.handle(books("update", 15, 10, bids=[("100", "9")], ts="1697123455999"))
    assert (before.points, before.errors) == ([], [])
    # not later than the snapshot: applied, not yet trusted
    same_ms = okx_session.handle(books("update", 16, 15, asks=[("102", "1")], ts="1697123456000"))
    assert (same_ms.points, same_ms.errors) == ([], [])
    checksum = signed_crc32("100.5:2:101:3:100:0.5:102:1")
    after = okx_session.handle(
        books("update", 17, 16, bids=[("100", "0.5")], checksum=checksum, ts="1697123456001")
    )
    assert after.errors == []
    [point] = after.points
    assert point.data["bids"] == [["100.5", "2"], ["100", "0.5"]]
    assert point.data["asks"] == [["101", "3"], ["102", "1"]]
    assert point.data["checksum"] == checksum


def test_without_seq_id_a_break_in_the_chain_fetches_again(rest):
    rest.answers += [rest_book(ts="1697123456000"), rest_book(seq_id=30)]
    okx_session = books_session(rest_url=rest.url)
    okx_session.handle(books("update", 15, 10, ts="1697123455999"))
    handled = okx_session.handle(books("update", 31, 29, bids=[("100.7", "1")]))
    assert len(rest.paths) == 2
    assert handled.points[0].data["seq_id"] == 31


def test_without_seq_id_only_the_unbroken_tail_of_the_buffer_is_replayed(rest):
    rest.answers += [(500, b"{}"), rest_book(ts="1697123456000")]
    okx_session = books_session(rest_url=rest.url)
    okx_session.handle(books("update", 15, 10, bids=[("1", "1")], ts="1697123455000"))
    okx_session.books.next_fetch_at = 0.0  # the retry pause is over
    # 22 does not follow 15: what came before the break cannot be replayed
    handled = okx_session.handle(books("update", 22, 20, asks=[("101.5", "1")], ts=TS))
    assert handled.errors == []
    [point] = handled.points
    assert point.data["bids"] == [["100.5", "2"], ["100", "4"], ["99", "1"]]
    assert point.data["asks"] == [["101", "3"], ["101.5", "1"], ["102", "5"]]
