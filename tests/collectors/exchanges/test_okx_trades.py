"""The OKX adapter's trades: pushed, fetched over REST after a subscription, paged back."""

import socket
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from collectors.exchanges.okx import (
    RATE_LIMIT_PAUSE,
)
from collectors.types import DataType
from tests.collectors.exchanges.okx_frames import (
    AT,
    SPEC_TRADE_FRAME,
    TRADES_ACK,
    push,
    queries,
    reconnected,
    rest_trades,
    session,
    trade,
    trades_between,
)

# trades ------------------------------------------------------------------------------------


def test_the_spec_trade_message_becomes_one_trade_point():
    handled = session(DataType.TRADE).handle(SPEC_TRADE_FRAME)
    assert handled.errors == []
    [point] = handled.points
    assert (point.exchange, point.symbol, point.data_type) == ("okx", "BTC-USDT", DataType.TRADE)
    assert point.timestamp == AT
    assert point.timestamp.utcoffset().total_seconds() == 0
    assert point.data == {
        "trade_id": "12345678",
        "price": Decimal("50000.5"),
        "size": Decimal("0.001"),
        "side": "buy",
        "raw": orjson.loads(SPEC_TRADE_FRAME)["data"][0],
    }
    assert isinstance(point.data["price"], Decimal)


def test_unknown_trade_fields_are_tolerated_and_kept_in_raw():
    item = trade(tradeId="99", count="3", source="0", seqId=1234)
    [point] = session(DataType.TRADE).handle(push("trades", [item])).points
    assert point.data["trade_id"] == "99"
    assert point.data["raw"] == item


def test_bytes_frames_parse_like_text():
    [point] = session(DataType.TRADE).handle(SPEC_TRADE_FRAME.encode()).points
    assert point.data["price"] == Decimal("50000.5")


def test_every_trade_in_a_frame_becomes_a_point_in_order():
    items = [trade(tradeId=str(i), px=f"100.{i}", side="buy") for i in range(3)]
    points = session(DataType.TRADE).handle(push("trades", items)).points
    assert [(p.data["trade_id"], p.data["price"]) for p in points] == [
        ("0", Decimal("100.0")),
        ("1", Decimal("100.1")),
        ("2", Decimal("100.2")),
    ]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (trade(px="-1"), "price -1 is not positive"),
        (trade(sz="0"), "size 0 is not positive"),
        (trade(px="abc"), "not a number"),
        (trade(px=100.5), "strings"),
        (trade(side="BUY"), "Invalid trade side"),
        (trade(tradeId=""), "Invalid trade_id"),
        ({k: v for k, v in trade().items() if k != "tradeId"}, "missing 'tradeId'"),
        (trade(ts="yesterday"), "invalid literal"),
        ("not an object", ""),
    ],
)
def test_a_bad_trade_is_reported_and_skipped_while_the_others_are_delivered(bad, words):
    items = [trade(tradeId="1"), bad, trade(tradeId="3")]
    handled = session(DataType.TRADE).handle(push("trades", items))
    assert [p.data["trade_id"] for p in handled.points] == ["1", "3"]
    [error] = handled.errors
    assert error.startswith("trades item skipped")
    assert words in error


# trades: the recent trades over REST after each trades subscription ------------------------


def test_a_trades_subscription_brings_the_recent_trades_over_rest_oldest_first(rest):
    newest_first = [trade(tradeId=str(i), px=f"100.{i}", count="1", source="0") for i in (9, 8, 7)]
    rest.answers.append(rest_trades(*newest_first))
    okx_session = session(DataType.TRADE, rest_url=rest.url)

    handled = okx_session.handle(TRADES_ACK)

    assert handled.subscribed and handled.errors == []
    assert [p.data["trade_id"] for p in handled.points] == ["7", "8", "9"]
    pushed = okx_session.handle(push("trades", newest_first[::-1])).points
    assert handled.points == pushed  # the same points as had they come over the WebSocket
    [path] = rest.paths
    assert urlsplit(path).path == "/api/v5/market/trades"
    assert parse_qs(urlsplit(path).query) == {"instId": ["BTC-USDT"], "limit": ["100"]}


def test_every_trades_subscription_fetches_again_with_the_configured_limit(rest):
    rest.answers += [rest_trades(trade(tradeId="1")), rest_trades(trade(tradeId="2"))]
    okx_session = session(DataType.TRADE, rest_url=rest.url, trade_backfill=500)

    first, second = okx_session.handle(TRADES_ACK), okx_session.handle(TRADES_ACK)

    assert [p.data["trade_id"] for p in first.points + second.points] == ["1", "2"]
    assert [parse_qs(urlsplit(path).query)["limit"] for path in rest.paths] == [["500"]] * 2


def test_a_trade_backfill_of_zero_fetches_nothing(rest):
    handled = session(DataType.TRADE, rest_url=rest.url, trade_backfill=0).handle(TRADES_ACK)
    assert handled.subscribed and (handled.points, handled.errors) == ([], [])
    assert rest.paths == []


def test_only_the_trades_acknowledgement_fetches_trades(rest):
    okx_session = session(DataType.TRADE, DataType.ORDERBOOK, rest_url=rest.url)
    ack = '{"event":"subscribe","arg":{"channel":"books5","instId":"BTC-USDT"},"connId":"a4"}'
    assert okx_session.handle(ack).subscribed
    assert rest.paths == []


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ((503, b"busy"), "HTTP Error 503"),
        (rest_trades(code="50011", msg="Too Many Requests"), "okx REST error 50011"),
        ((200, b"<html>"), "unexpected character"),
        ((200, b'{"code":"0","msg":"","data":{}}'), "no data list"),
    ],
)
def test_a_failed_trade_backfill_is_reported_and_the_stream_carries_on(rest, answer, words):
    rest.answers.append(answer)
    okx_session = session(DataType.TRADE, rest_url=rest.url)

    handled = okx_session.handle(TRADES_ACK)

    assert handled.subscribed and handled.points == []
    [error] = handled.errors
    assert error.startswith("trade backfill failed: ") and words in error
    assert [p.data["trade_id"] for p in okx_session.handle(SPEC_TRADE_FRAME).points] == ["12345678"]


def test_an_unreachable_rest_is_a_reported_backfill_failure():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nothing listens there
    handled = session(DataType.TRADE, rest_url=url).handle(TRADES_ACK)
    assert handled.subscribed
    [error] = handled.errors
    assert error.startswith("trade backfill failed: ") and "refused" in error


def test_a_bad_backfilled_trade_is_skipped_and_the_others_kept(rest):
    rest.answers.append(rest_trades(trade(tradeId="3"), trade(tradeId="2", px="-1"), trade()))
    handled = session(DataType.TRADE, rest_url=rest.url).handle(TRADES_ACK)
    assert [p.data["trade_id"] for p in handled.points] == ["1", "3"]
    [error] = handled.errors
    assert error.startswith("trades item skipped") and "price -1 is not positive" in error


# trades: paging back over REST to the last trade had before a reconnect --------------------


def test_after_a_long_outage_older_trades_are_paged_back_to_the_last_one_had(rest):
    rest.answers += [
        rest_trades(*trades_between(350, 251)),  # the recent 100 do not reach back to 100
        rest_trades(*trades_between(250, 151)),
        rest_trades(*trades_between(150, 51)),  # reaches 100: the gap is closed
    ]
    handled = reconnected(rest, had=100).handle(TRADES_ACK)

    assert handled.errors == []
    assert [p.data["trade_id"] for p in handled.points] == [str(i) for i in range(101, 351)]
    assert queries(rest)[1:] == [
        (
            "/api/v5/market/history-trades",
            {"instId": ["BTC-USDT"], "type": ["1"], "after": [after], "limit": ["100"]},
        )
        for after in ("251", "151")
    ]


def test_recent_trades_that_reach_back_need_no_older_pages(rest):
    rest.answers.append(rest_trades(*trades_between(150, 51)))
    handled = reconnected(rest, had=100).handle(TRADES_ACK)

    assert handled.errors == []
    assert [p.data["trade_id"] for p in handled.points] == [str(i) for i in range(101, 151)]
    assert [path for path, _ in queries(rest)] == ["/api/v5/market/trades"]


def test_a_gap_too_long_to_page_back_is_reported_with_the_ids_it_may_miss(rest):
    rest.answers += [rest_trades(*trades_between(500, 401)), rest_trades(*trades_between(400, 301))]
    handled = reconnected(rest, had=100, trade_backfill_pages=1).handle(TRADES_ACK)

    [error] = handled.errors
    assert error == (
        "trade backfill stopped after 1 pages of older trades: trade ids 101 to 300 may be missing"
    )
    # what it did fetch is delivered
    assert [p.data["trade_id"] for p in handled.points] == [str(i) for i in range(301, 501)]


def test_a_failed_page_of_older_trades_is_reported_and_the_rest_delivered(rest):
    rest.answers += [rest_trades(*trades_between(300, 201)), (503, b"busy")]
    handled = reconnected(rest, had=100).handle(TRADES_ACK)

    [error] = handled.errors
    assert error.startswith("trade backfill failed: HTTP Error 503")
    assert error.endswith("trade ids 101 to 200 may be missing")
    assert [p.data["trade_id"] for p in handled.points] == [str(i) for i in range(201, 301)]


def test_a_first_subscription_takes_the_recent_trades_only(rest):
    rest.answers.append(rest_trades(*trades_between(300, 201)))
    handled = session(DataType.TRADE, rest_url=rest.url).handle(TRADES_ACK)

    assert handled.errors == [] and len(handled.points) == 100
    assert [path for path, _ in queries(rest)] == ["/api/v5/market/trades"]


@pytest.mark.parametrize(
    "too_many",
    [
        (429, b'{"code":"50011","msg":"Too Many Requests"}'),
        rest_trades(code="50011", msg="Too Many Requests"),
    ],
)
def test_a_rate_limited_page_is_asked_for_again(rest, too_many):
    rest.answers += [rest_trades(*trades_between(300, 201)), too_many]
    rest.answers.append(rest_trades(*trades_between(200, 101)))
    started = time.monotonic()
    handled = reconnected(rest, had=100).handle(TRADES_ACK)

    assert handled.errors == []
    assert [p.data["trade_id"] for p in handled.points] == [str(i) for i in range(101, 301)]
    history = [query["after"] for path, query in queries(rest) if path.endswith("history-trades")]
    assert history == [["201"], ["201"]]
    assert time.monotonic() - started >= RATE_LIMIT_PAUSE  # it waited before asking again


def test_a_rate_limit_that_outlasts_the_budget_is_reported(rest, monkeypatch):
    monkeypatch.setattr("collectors.exchanges.okx.TRADE_BACKFILL_BUDGET", 1.2)
    rest.answers.append(rest_trades(*trades_between(300, 201)))
    rest.answers += [rest_trades(code="50011", msg="Too Many Requests")] * 10
    handled = reconnected(rest, had=100).handle(TRADES_ACK)

    [error] = handled.errors
    assert error == (
        "trade backfill stopped after 0 pages of older trades: trade ids 101 to 200 may be missing"
    )
    assert [p.data["trade_id"] for p in handled.points] == [str(i) for i in range(201, 301)]
