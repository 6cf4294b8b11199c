"""The OKX simulator, spoken to over real loopback sockets as a collector would."""

import itertools
import json
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import websocket
from django.core.management import call_command
from django.core.management.base import CommandError

from collectors.exchanges.okx import okx_checksum
from collectors.simulators.market import MarketGenerator
from collectors.simulators.okx import OkxSimulator, bar_bounds
from tests.helpers import ROOT, service_env, wait_until

WS_TIMEOUT = 5.0


@pytest.fixture
def start_simulator():
    started = []

    def start(**options) -> OkxSimulator:
        options.setdefault("rate", 50)
        simulator = OkxSimulator(**options)
        simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def connect():
    opened = []

    def open_socket(url: str) -> websocket.WebSocket:
        ws = websocket.create_connection(url, timeout=WS_TIMEOUT)
        opened.append(ws)
        return ws

    yield open_socket
    for ws in opened:
        ws.close(timeout=0.2)
        ws.shutdown()


def parse(message):
    if isinstance(message, bytes) or message == "pong":
        return message
    try:
        return json.loads(message)
    except ValueError:
        return message


def read_for(ws, seconds: float):
    """Every message received in the next `seconds`, with its arrival time."""
    received = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            received.append((time.monotonic(), parse(ws.recv())))
        except websocket.WebSocketTimeoutException:
            break
    return received


def wait_for(ws, predicate, timeout: float = WS_TIMEOUT, seen=None):
    """The first message matching `predicate`; the others go to `seen` if given."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            message = parse(ws.recv())
        except websocket.WebSocketTimeoutException:
            break
        if predicate(message):
            return message
        if seen is not None:
            seen.append(message)
    raise AssertionError(f"no matching message within {timeout}s")


def is_channel(channel, inst_id=None):
    def matches(message):
        if not isinstance(message, dict) or "data" not in message:
            return False
        arg = message.get("arg", {})
        return arg.get("channel") == channel and inst_id in (None, arg.get("instId"))

    return matches


def is_event(event):
    return lambda message: isinstance(message, dict) and message.get("event") == event


def subscribe(ws, *args, op="subscribe"):
    ws.send(json.dumps({"op": op, "args": list(args)}))


def trades_of(messages):
    return [
        item for message in messages if is_channel("trades")(message) for item in message["data"]
    ]


def how_it_closed(ws, timeout: float = WS_TIMEOUT):
    """("close", code) for a close frame, ("lost", None) for a connection dropped without one."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ws.settimeout(left)
        try:
            opcode, frame = ws.recv_data_frame(True)
        except websocket.WebSocketConnectionClosedException:
            return "lost", None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            ws.shutdown()
            return "close", int.from_bytes(frame.data[:2], "big")
    raise AssertionError(f"still open after {timeout}s")


def http_json(url: str, body: dict | bytes | None = None):
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=WS_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Book:
    """An OKX book rebuilt from a snapshot and updates, as a collector keeps it."""

    def __init__(self):
        self.sides = {"bids": {}, "asks": {}}

    def apply(self, data):
        for side in ("bids", "asks"):
            for px, sz, _, _ in data[side]:
                if sz == "0":
                    self.sides[side].pop(px, None)
                else:
                    self.sides[side][px] = sz

    def top(self, side, depth=25):
        prices = sorted(self.sides[side], key=Decimal, reverse=side == "bids")[:depth]
        return [(px, self.sides[side][px]) for px in prices]

    def checksum(self):
        return okx_checksum(self.top("bids"), self.top("asks"))


def fold(trades):
    """(open, high, low, close, volume, quote volume) of trades, in Decimals."""
    prices = [Decimal(t["px"]) for t in trades]
    return (
        prices[0],
        max(prices),
        min(prices),
        prices[-1],
        sum(Decimal(t["sz"]) for t in trades),
        sum(Decimal(t["px"]) * Decimal(t["sz"]) for t in trades),
    )


def candle_values(row):
    return tuple(Decimal(value) for value in row[1:7])


# Subscriptions and errors


def test_it_acknowledges_each_subscription_with_the_connection_id(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)
    args = [
        {"channel": "trades", "instId": "BTC-USDT"},
        {"channel": "tickers", "instId": "ETH-USDT"},
    ]
    subscribe(ws, *args)

    acks = [wait_for(ws, is_event("subscribe")), wait_for(ws, is_event("subscribe"))]

    assert [ack["arg"] for ack in acks] == args
    assert acks[0]["connId"] == acks[1]["connId"]
    assert re.fullmatch(r"[0-9a-f]{8}", acks[0]["connId"])
    subscribe(ws, args[0], op="unsubscribe")
    assert wait_for(ws, is_event("unsubscribe"))["arg"] == args[0]


def test_it_answers_ping_with_pong(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)

    ws.send("ping")

    assert wait_for(ws, lambda message: message == "pong") == "pong"
    assert simulator.stats()["pings_answered"] == 1


def test_it_answers_requests_it_cannot_read_with_60012(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)

    for request in ("not json", '{"op":"subscribe","argss":[{"channel":"trades"}]}', "[1]"):
        ws.send(request)
        error = wait_for(ws, is_event("error"))
        assert error["code"] == "60012"
        assert error["msg"] == f"Invalid request: {request}"
        assert error["connId"]
    ws.send_binary(b"\x00\xff")
    assert wait_for(ws, is_event("error"))["code"] == "60012"
    ws.send("ping")
    assert wait_for(ws, lambda message: message == "pong") == "pong"


def test_it_answers_an_unknown_op_with_60019(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)

    ws.send(json.dumps({"op": "subscrib", "args": [{"channel": "trades", "instId": "BTC-USDT"}]}))

    error = wait_for(ws, is_event("error"))
    assert (error["code"], error["msg"]) == ("60019", "Invalid op: subscrib")


def test_it_answers_an_unknown_channel_or_instrument_with_60018(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)

    subscribe(
        ws, {"channel": "trade", "instId": "BTC-USDT"}, {"channel": "trades", "instId": "X-Y"}
    )

    errors = [wait_for(ws, is_event("error")), wait_for(ws, is_event("error"))]
    assert [error["code"] for error in errors] == ["60018", "60018"]
    assert "channel:trade,instId:BTC-USDT doesn't exist" in errors[0]["msg"]
    assert "channel:trades,instId:X-Y doesn't exist" in errors[1]["msg"]


def test_candles_are_refused_on_the_public_path_and_served_on_business(start_simulator, connect):
    simulator = start_simulator()
    public, business = connect(simulator.public_url), connect(simulator.business_url)
    candle = {"channel": "candle1m", "instId": "BTC-USDT"}

    subscribe(public, candle)
    subscribe(business, candle, {"channel": "trades", "instId": "BTC-USDT"})

    assert wait_for(public, is_event("error"))["code"] == "60018"
    assert wait_for(business, is_event("subscribe"))["arg"] == candle
    assert wait_for(business, is_event("error"))["code"] == "60018"  # trades are public only


def test_the_private_path_wants_a_login_before_a_subscription(start_simulator, connect):
    simulator = start_simulator()
    private = connect(simulator.private_url)

    subscribe(private, {"channel": "account"})

    assert wait_for(private, is_event("error"))["code"] == "60011"  # Please log in


def test_it_closes_a_connection_where_nothing_passes_with_4004(start_simulator, connect):
    simulator = start_simulator(idle_timeout=1.0)
    pinging, silent = connect(simulator.public_url), connect(simulator.public_url)
    opened = time.monotonic()

    for _ in range(12):  # 2.4 s of pings every 0.2 s keeps a connection open
        pinging.send("ping")
        assert wait_for(pinging, lambda message: message == "pong") == "pong"
        time.sleep(0.2)

    assert how_it_closed(silent) == ("close", 4004)
    assert 1.0 <= time.monotonic() - opened < 5
    assert simulator.stats()["idle_closes"] == 1
    assert how_it_closed(pinging) == ("close", 4004)


# Channels


def test_trade_ids_strictly_increase_and_match_what_it_says_it_sent(start_simulator, connect):
    simulator = start_simulator(rate=200)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(ws, is_event("subscribe"))

    received = trades_of(message for _, message in read_for(ws, 0.5))
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"}, op="unsubscribe")
    wait_for(ws, is_event("unsubscribe"), seen=(rest := []))
    received += trades_of(rest)

    ids = [int(trade["tradeId"]) for trade in received]
    assert len(ids) > 20
    assert all(later > earlier for earlier, later in itertools.pairwise(ids))
    assert received == simulator.sent_trades("BTC-USDT")
    trade = received[0]
    assert set(trade) == {"instId", "tradeId", "px", "sz", "side", "ts", "count", "source"}
    assert trade["side"] in ("buy", "sell") and Decimal(trade["sz"]) > 0
    assert abs(int(trade["ts"]) - time.time() * 1000) < 5000


def test_books_snapshot_and_updates_rebuild_a_book_whose_checksums_verify(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "books", "instId": "BTC-USDT"})

    snapshot = wait_for(ws, is_channel("books"))
    assert snapshot["action"] == "snapshot"
    data = snapshot["data"][0]
    assert data["prevSeqId"] == -1 and len(data["bids"]) == len(data["asks"]) == 400
    book, last_seq = Book(), data["seqId"]
    book.apply(data)
    assert book.checksum() == data["checksum"]
    for _ in range(15):
        update = wait_for(ws, is_channel("books"))
        data = update["data"][0]
        assert update["action"] == "update"
        assert data["prevSeqId"] == last_seq and data["seqId"] > last_seq
        book.apply(data)
        assert book.checksum() == data["checksum"]
        last_seq = data["seqId"]


def test_books_checksum_can_be_turned_off_and_is_then_zero(start_simulator, connect):
    simulator = start_simulator(books_checksum=False)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "books", "instId": "ETH-USDT"})

    pushes = [wait_for(ws, is_channel("books")) for _ in range(3)]

    assert [push["action"] for push in pushes] == ["snapshot", "update", "update"]
    assert [push["data"][0]["checksum"] for push in pushes] == [0, 0, 0]


def test_without_snapshots_books_open_with_updates_that_align_with_the_rest_book(
    start_simulator, connect
):
    simulator = start_simulator(books_snapshot=False)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "books", "instId": "BTC-USDT"})

    first = wait_for(ws, is_channel("books"))
    status, rest = http_json(f"{simulator.rest_url}/api/v5/market/books?instId=BTC-USDT&sz=400")

    assert first["action"] == "update"
    assert status == 200 and rest["code"] == "0"
    book, last_seq = Book(), rest["data"][0]["seqId"]
    book.apply(rest["data"][0])
    applied = 0
    while applied < 5:
        data = wait_for(ws, is_channel("books"))["data"][0]
        if data["seqId"] <= last_seq:
            continue  # already in the REST snapshot
        assert data["prevSeqId"] == last_seq
        book.apply(data)
        assert book.checksum() == data["checksum"]
        last_seq, applied = data["seqId"], applied + 1


def test_books5_pushes_the_five_best_levels_of_each_side(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "books5", "instId": "UNI-USD-SWAP"})

    for _ in range(3):
        data = wait_for(ws, is_channel("books5"))["data"][0]
        bids = [Decimal(level[0]) for level in data["bids"]]
        asks = [Decimal(level[0]) for level in data["asks"]]
        assert len(bids) == len(asks) == 5
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]
        assert data["instId"] == "UNI-USD-SWAP" and isinstance(data["seqId"], int)
        assert all(len(level) == 4 and level[2] == "0" for level in data["bids"] + data["asks"])


def test_tickers_report_the_last_trade_and_the_best_quotes(start_simulator, connect):
    simulator = start_simulator(tickers_interval=0.1)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "UNI-USD-SWAP"})
    wait_for(ws, is_channel("trades"))
    subscribe(ws, {"channel": "tickers", "instId": "UNI-USD-SWAP"})

    ticker = wait_for(ws, is_channel("tickers"))["data"][0]

    fields = "instType instId last lastSz askPx askSz bidPx bidSz open24h high24h low24h"
    assert set(ticker) == {*fields.split(), "volCcy24h", "vol24h", "ts", "sodUtc0", "sodUtc8"}
    assert (ticker["instType"], ticker["instId"]) == ("SWAP", "UNI-USD-SWAP")
    sent = simulator.sent_trades("UNI-USD-SWAP")
    assert (ticker["last"], ticker["lastSz"]) in {(t["px"], t["sz"]) for t in sent}
    assert Decimal(ticker["bidPx"]) < Decimal(ticker["askPx"])
    assert Decimal(ticker["low24h"]) <= Decimal(ticker["last"]) <= Decimal(ticker["high24h"])
    assert Decimal(ticker["vol24h"]) >= Decimal(ticker["lastSz"])


def test_candle1m_is_stamped_at_its_start_and_agrees_with_the_trades(start_simulator, connect):
    simulator = start_simulator(rate=100)
    public, business = connect(simulator.public_url), connect(simulator.business_url)
    subscribe(public, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(public, is_channel("trades"))
    subscribe(business, {"channel": "candle1m", "instId": "BTC-USDT"})

    for _ in range(2):
        row = wait_for(business, is_channel("candle1m"))["data"][0]
        start = int(row[0])
        every = simulator.sent_trades("BTC-USDT")
        sent = [t for t in every if start <= int(t["ts"]) < start + 60_000]
        prefixes = {fold(sent[:n]) for n in range(1, len(sent) + 1)}
        before = [t for t in every if int(t["ts"]) < start]
        if before:  # a bar pushed before its first trade: flat at the last price, no volume
            px = Decimal(before[-1]["px"])
            prefixes.add((px, px, px, px, Decimal(0), Decimal(0)))
        assert start % 60_000 == 0
        assert len(row) == 9 and row[8] in ("0", "1")
        assert candle_values(row) in prefixes
        assert row[7] == row[6]  # spot: volCcyQuote is the quote volume too


def test_a_closed_candle_is_confirmed_with_every_trade_of_its_interval(start_simulator, connect):
    simulator = start_simulator(rate=100)
    public, business = connect(simulator.public_url), connect(simulator.business_url)
    subscribe(public, {"channel": "trades", "instId": "ETH-USDT"})
    wait_for(public, is_channel("trades"))
    subscribe(business, {"channel": "candle1s", "instId": "ETH-USDT"})

    row = wait_for(business, lambda m: is_channel("candle1s")(m) and m["data"][0][8] == "1")[
        "data"
    ][0]

    start = int(row[0])
    sent = [t for t in simulator.sent_trades("ETH-USDT") if start <= int(t["ts"]) < start + 1000]
    assert start % 1000 == 0
    assert candle_values(row) == fold(sent)


def test_candle_bars_start_where_okx_starts_them():
    ts = int(datetime(2024, 3, 13, 10, 17, 42, tzinfo=UTC).timestamp() * 1000)

    def start(bar):
        return datetime.fromtimestamp(bar_bounds(bar, ts)[0] / 1000, UTC).isoformat()

    assert start("1m") == "2024-03-13T10:17:00+00:00"
    assert start("4H") == "2024-03-13T08:00:00+00:00"
    assert start("1D") == "2024-03-12T16:00:00+00:00"  # Hong Kong midnight
    assert start("1Dutc") == "2024-03-13T00:00:00+00:00"
    assert start("1Wutc") == "2024-03-11T00:00:00+00:00"  # a Monday
    assert start("1Mutc") == "2024-03-01T00:00:00+00:00"
    assert bar_bounds("3Mutc", ts)[1] == int(datetime(2024, 4, 1, tzinfo=UTC).timestamp() * 1000)


# REST and control over HTTP


def test_the_rest_book_answers_like_okx(start_simulator):
    simulator = start_simulator()
    books = f"{simulator.rest_url}/api/v5/market/books"

    status, ok = http_json(f"{books}?instId=ETH-USDT&sz=5")
    assert status == 200 and (ok["code"], ok["msg"]) == ("0", "")
    assert len(ok["data"][0]["bids"]) == 5 and isinstance(ok["data"][0]["seqId"], int)
    assert http_json(f"{books}?instId=NOPE-USDT") == (
        200,
        {"code": "51001", "msg": "Instrument ID does not exist", "data": []},
    )
    assert http_json(f"{books}?instId=ETH-USDT&sz=0")[1]["code"] == "51000"
    assert http_json(books) == (
        400,
        {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []},
    )


def test_rest_recent_trades_are_the_newest_generated_newest_first_even_unsent(start_simulator):
    simulator = start_simulator(rate=1)
    trades = f"{simulator.rest_url}/api/v5/market/trades"
    simulator.fault("burst", count=150, inst_id="ETH-USDT")  # no connection to send them to

    generated = simulator.generated_trades("ETH-USDT")
    assert len(generated) == 150 and simulator.sent_trades("ETH-USDT") == []
    status, answer = http_json(f"{trades}?instId=ETH-USDT")
    assert status == 200 and (answer["code"], answer["msg"]) == ("0", "")
    assert answer["data"] == generated[::-1][:100]  # OKX's default limit
    assert http_json(f"{trades}?instId=ETH-USDT&limit=3")[1]["data"] == generated[::-1][:3]
    assert http_json(f"{trades}?instId=ETH-USDT&limit=500")[1]["data"] == generated[::-1]
    assert http_json(f"{trades}?instId=BTC-USDT")[1]["data"] == []
    assert simulator.stats()["rest_requests"] == 4


def test_rest_history_trades_page_back_by_trade_id_or_time(start_simulator):
    simulator = start_simulator(rate=1)
    history = f"{simulator.rest_url}/api/v5/market/history-trades?instId=ETH-USDT"
    # two bursts in different milliseconds, so that there is something to page by time
    simulator.fault("burst", count=125, inst_id="ETH-USDT")
    first_burst_ts = int(simulator.generated_trades("ETH-USDT")[-1]["ts"])
    wait_until(lambda: time.time() * 1000 >= first_burst_ts + 2, 1, 0.001, "the next ms")
    simulator.fault("burst", count=125, inst_id="ETH-USDT")
    generated = simulator.generated_trades("ETH-USDT")
    newest_first = generated[::-1]

    def page(query: str = "") -> list[dict]:
        status, answer = http_json(history + query)
        assert status == 200 and answer["code"] == "0", answer
        return answer["data"]

    assert page() == newest_first[:100]  # no cursor: the newest, 100 by default
    # after=<tradeId>: the page just older than that trade, newest first; paging on from
    # each page's oldest id walks back through every trade once
    walked, cursor = [], None
    while batch := page(f"&limit=70&after={cursor}" if cursor else "&limit=70"):
        walked.extend(batch)
        cursor = batch[-1]["tradeId"]
    assert walked == newest_first
    middle = generated[120]
    assert page(f"&after={middle['tradeId']}&limit=5") == generated[115:120][::-1]
    assert page(f"&type=1&before={middle['tradeId']}&limit=5") == generated[121:126][::-1]
    # type=2 pages by ts: the trades stamped before that millisecond
    second_burst = generated[125]
    assert int(second_burst["ts"]) > first_burst_ts
    older = page(f"&type=2&after={second_burst['ts']}&limit=100")
    assert older == newest_first[125:225]  # the newest 100 of the first burst


def test_rest_history_trades_refuse_what_okx_refuses(start_simulator):
    simulator = start_simulator()
    history = f"{simulator.rest_url}/api/v5/market/history-trades"

    def refused(name: str) -> tuple[int, dict]:
        return 200, {"code": "51000", "msg": f"Parameter {name} error", "data": []}

    for limit in ("0", "101", "ten", "%C2%B2"):
        assert http_json(f"{history}?instId=ETH-USDT&limit={limit}") == refused("limit")
    assert http_json(f"{history}?instId=ETH-USDT&after=x1") == refused("after")
    assert http_json(f"{history}?instId=ETH-USDT&type=3") == refused("type")
    assert http_json(f"{history}?instId=ETH-USDT&type=2&before=1") == refused("before")
    assert http_json(f"{history}?instId=NOPE-USDT")[1]["code"] == "51001"
    assert http_json(history)[0] == 400


def test_rest_recent_trades_refuse_what_okx_refuses(start_simulator):
    simulator = start_simulator()
    trades = f"{simulator.rest_url}/api/v5/market/trades"

    assert http_json(f"{trades}?instId=NOPE-USDT") == (
        200,
        {"code": "51001", "msg": "Instrument ID does not exist", "data": []},
    )
    for limit in ("0", "501", "ten", "-1", "%C2%B2"):  # the last is a superscript two
        assert http_json(f"{trades}?instId=ETH-USDT&limit={limit}") == (
            200,
            {"code": "51000", "msg": "Parameter limit error", "data": []},
        ), limit
    assert http_json(trades) == (
        400,
        {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []},
    )


def test_trades_sent_on_the_wire_are_also_the_generated_ones(start_simulator, connect):
    simulator = start_simulator(rate=200)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(ws, is_event("subscribe"))
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= 20, 5, message="trades")
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"}, op="unsubscribe")
    wait_for(ws, is_event("unsubscribe"))

    sent = simulator.sent_trades("BTC-USDT")
    assert simulator.generated_trades("BTC-USDT") == sent  # it stops when nobody listens


def test_with_linger_a_market_trades_on_after_its_last_subscriber_leaves(start_simulator, connect):
    simulator = start_simulator(rate=200, linger=0.5)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(ws, is_event("subscribe"))
    wait_until(lambda: len(simulator.sent_trades("BTC-USDT")) >= 20, 5, message="trades")
    ws.close(timeout=0.2)
    wait_until(lambda: simulator.stats()["open_connections"] == 0, 5, message="gone")
    sent = len(simulator.sent_trades("BTC-USDT"))

    wait_until(
        lambda: len(simulator.generated_trades("BTC-USDT")) >= sent + 20, 5, message="trading on"
    )
    assert len(simulator.sent_trades("BTC-USDT")) == sent

    def stopped():
        before = len(simulator.generated_trades("BTC-USDT"))
        time.sleep(0.1)  # 20 trades at this rate, unless the market has stopped
        return len(simulator.generated_trades("BTC-USDT")) == before

    wait_until(stopped, 5, message="the market to stop after lingering")


def test_faults_and_stats_can_be_driven_over_http(start_simulator, connect):
    simulator = start_simulator(rate=1)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "ETH-USDT"})
    wait_for(ws, is_event("subscribe"))

    assert http_json(f"{simulator.rest_url}/_sim/fault", {"kind": "burst", "count": 50}) == (
        200,
        {"ok": True, "fault": "burst"},
    )
    assert len(trades_of(wait_for(ws, is_channel("trades")) for _ in range(50))) == 50
    status, stats = http_json(f"{simulator.rest_url}/_sim/stats")
    assert status == 200
    assert stats["connections"] == stats["open_connections"] == 1
    assert stats["subscriptions"] == stats["active_subscriptions"] == 1
    assert stats["frames_sent"] >= 51  # the acknowledgement and the trades
    assert stats["trades_sent"]["ETH-USDT"] >= 50 and stats["messages_sent"]["trades"] >= 50
    assert stats["faults"] == {"burst": 1}
    status, listed = http_json(f"{simulator.rest_url}/_sim/trades?instId=ETH-USDT")
    assert listed["trades"] == simulator.sent_trades("ETH-USDT")
    status, refused = http_json(f"{simulator.rest_url}/_sim/fault", {"kind": "meteor"})
    assert status == 400 and "Unknown fault kind" in refused["error"]
    assert http_json(f"{simulator.rest_url}/_sim/fault", b"{not json")[0] == 400
    assert http_json(f"{simulator.rest_url}/_sim/fault", {"kind": "pause"})[0] == 400


# Faults


def test_drop_cuts_every_connection_without_a_close_frame(start_simulator, connect):
    simulator = start_simulator()
    sockets = [connect(simulator.public_url), connect(simulator.business_url)]
    simulator.wait_for_connections(2, timeout=5)

    simulator.fault("drop")

    assert [how_it_closed(ws) for ws in sockets] == [("lost", None), ("lost", None)]


def test_stall_goes_quiet_and_answers_no_ping_but_keeps_the_connection(start_simulator, connect):
    simulator = start_simulator(rate=100)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(ws, is_channel("trades"))

    simulator.fault("stall", seconds=1.0)
    stalled_at = time.monotonic()
    ws.send("ping")
    received = read_for(ws, 1.5)

    quiet = [m for at, m in received if stalled_at + 0.2 < at < stalled_at + 0.9]
    pong_at = next(at for at, message in received if message == "pong")
    assert quiet == []
    assert pong_at - stalled_at >= 0.9
    assert trades_of(message for at, message in received if at > pong_at)  # data flows again
    assert simulator.stats()["stalled"] is False


def test_malformed_frames_arrive_and_the_connection_carries_on(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(ws, is_event("subscribe"))

    simulator.fault("malformed", count=4)
    seen = []
    ws.send("ping")
    wait_for(ws, lambda message: message == "pong", seen=seen)

    assert any(isinstance(m, str) and m.startswith('{"arg"') for m in seen)  # broken JSON
    assert any(isinstance(m, bytes) for m in seen)  # binary junk
    assert any(isinstance(m, dict) and isinstance(m.get("data"), dict) for m in seen)  # wrong shape
    assert [1, 2, 3] in seen


def test_bad_checksum_spoils_the_checksum_of_exactly_one_update(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "books", "instId": "BTC-USDT"})
    book = Book()
    book.apply(wait_for(ws, is_channel("books"))["data"][0])

    simulator.fault("bad_checksum", inst_id="BTC-USDT")
    verified = []
    for _ in range(8):
        data = wait_for(ws, is_channel("books"))["data"][0]
        book.apply(data)
        verified.append(book.checksum() == data["checksum"])

    assert verified.count(False) == 1


def test_seq_break_sends_one_update_that_does_not_chain(start_simulator, connect):
    simulator = start_simulator()
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "books", "instId": "ETH-USDT"})
    last_seq = wait_for(ws, is_channel("books"))["data"][0]["seqId"]

    simulator.fault("seq_break")
    chained = []
    for _ in range(8):
        data = wait_for(ws, is_channel("books"))["data"][0]
        chained.append(data["prevSeqId"] == last_seq)
        last_seq = data["seqId"]

    assert chained.count(False) == 1


def test_burst_sends_many_trades_at_once(start_simulator, connect):
    simulator = start_simulator(rate=0.5)
    ws = connect(simulator.public_url)
    subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
    wait_for(ws, is_event("subscribe"))

    simulator.fault("burst", count=300, inst_id="BTC-USDT")
    started = time.monotonic()
    trades = trades_of(wait_for(ws, is_channel("trades")) for _ in range(300))

    assert time.monotonic() - started < 2
    ids = [int(trade["tradeId"]) for trade in trades]
    assert ids == list(range(ids[0], ids[0] + 300))


def test_notice_warns_every_connection_then_drops_only_those(start_simulator, connect):
    simulator = start_simulator()
    warned = [connect(simulator.public_url), connect(simulator.business_url)]
    simulator.wait_for_connections(2, timeout=5)

    simulator.fault("notice", seconds=0.5)
    later = connect(simulator.public_url)

    for ws in warned:
        notice = wait_for(ws, is_event("notice"))
        assert notice["code"] == "64008"
        assert notice["msg"].startswith("The connection will soon be closed for a service upgrade")
        assert how_it_closed(ws) == ("lost", None)
    later.send("ping")
    assert wait_for(later, lambda message: message == "pong") == "pong"


def test_pause_silences_one_instrument_until_resumed(start_simulator, connect):
    simulator = start_simulator(rate=50)
    ws = connect(simulator.public_url)
    subscribe(ws, *({"channel": "trades", "instId": i} for i in ("BTC-USDT", "ETH-USDT")))
    wait_for(ws, is_channel("trades", "BTC-USDT"))

    simulator.fault("pause", inst_id="BTC-USDT")
    last_before = simulator.sent_trades("BTC-USDT")[-1]["tradeId"]
    during = trades_of(message for _, message in read_for(ws, 0.6))

    assert [
        t for t in during if t["instId"] == "BTC-USDT" and int(t["tradeId"]) > int(last_before)
    ] == []
    assert any(t["instId"] == "ETH-USDT" for t in during)
    assert simulator.stats()["paused"] == ["BTC-USDT"]
    simulator.fault("resume", inst_id="BTC-USDT")
    resumed = wait_for(ws, is_channel("trades", "BTC-USDT"))
    assert int(resumed["data"][0]["tradeId"]) > int(last_before)


# Determinism


def test_the_same_seed_gives_the_same_market():
    def run(seed, instruments):
        generator = MarketGenerator(seed, instruments, clock=lambda: 0)
        steps = [generator.next_event("ETH-USDT") for _ in range(500)]
        return [(s.trade and (s.trade.price, s.trade.size, s.trade.side), s.changes) for s in steps]

    assert run(3, ["ETH-USDT"]) == run(3, ["BTC-USDT", "ETH-USDT"])
    assert run(3, ["ETH-USDT"]) != run(4, ["ETH-USDT"])


def test_book_changes_replay_to_the_same_book_and_trades_take_the_best_price():
    generator = MarketGenerator(5, ["BTC-USDT"], clock=lambda: 0)
    book = {
        side: {px: sz for px, sz, _ in levels}
        for side, levels in generator.book("BTC-USDT").items()
    }
    trades = 0
    for _ in range(2000):
        best_bid, best_ask = generator.best("BTC-USDT")
        step = generator.next_event("BTC-USDT")
        if step.trade is not None:
            trades += 1
            assert step.trade.px == (best_ask if step.trade.side == "buy" else best_bid)[0]
            assert step.trade.size <= Decimal(
                (best_ask if step.trade.side == "buy" else best_bid)[1]
            )
        for change in step.changes:
            px = generator.price_str("BTC-USDT", change.ticks)
            if change.lots == 0:
                del book[change.side][px]
            else:
                book[change.side][px] = generator.size_str("BTC-USDT", change.lots)

    current = generator.book("BTC-USDT")
    assert book == {side: {px: sz for px, sz, _ in levels} for side, levels in current.items()}
    assert 800 < trades < 1200
    assert Decimal(current["bids"][0][0]) < Decimal(current["asks"][0][0])


def test_it_serves_instruments_it_is_given_and_refuses_ids_okx_would_not_have(
    start_simulator, connect
):
    simulator = start_simulator(instruments=["SOL-USDT", "ETH-USDT-SWAP"])
    ws = connect(simulator.public_url)

    subscribe(ws, {"channel": "trades", "instId": "SOL-USDT"})

    assert wait_for(ws, is_channel("trades", "SOL-USDT"))["data"][0]["instId"] == "SOL-USDT"
    with pytest.raises(ValueError, match="Not an instrument id"):
        OkxSimulator(instruments=["sol/usdt"])


def test_simulators_with_the_same_seed_send_the_same_trades(start_simulator, connect):
    def first_trades(seed):
        ws = connect(start_simulator(seed=seed, rate=200).public_url)
        subscribe(ws, {"channel": "trades", "instId": "BTC-USDT"})
        return trades_of(wait_for(ws, is_channel("trades")) for _ in range(25))

    def market(trades):
        return [(t["px"], t["sz"], t["side"]) for t in trades]

    first, again = first_trades(7), first_trades(7)
    assert market(first) == market(again)
    assert market(first) != market(first_trades(8))
    # trade ids come from the clock: a later simulator's never repeat an earlier one's
    assert int(again[0]["tradeId"]) > int(first[-1]["tradeId"])


# The management command


def test_the_command_serves_okx_until_terminated(tmp_path):
    log = (tmp_path / "simulator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_exchange", "okx", "--port", "0", "--rate", "5"],
        cwd=ROOT,
        env=service_env(),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the command printed nothing"
        line = process.stdout.readline()
        urls = dict(re.findall(r"(public|business|rest) (\S+)", line))
        assert set(urls) == {"public", "business", "rest"}, line
        ws = websocket.create_connection(urls["public"], timeout=5)
        ws.send("ping")
        assert wait_for(ws, lambda message: message == "pong") == "pong"
        ws.close()
        process.terminate()
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def test_the_command_refuses_an_unknown_exchange_and_a_public_address():
    with pytest.raises(CommandError, match="supported: binance, okx"):
        call_command("simulate_exchange", "kraken")
    with pytest.raises(CommandError, match="loopback"):
        call_command("simulate_exchange", "okx", "--host", "0.0.0.0")
