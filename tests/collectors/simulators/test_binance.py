"""The Binance simulator speaks Binance's protocol: streams, live subscriptions, limits,
pings, the connection lifetime, REST with its error answers, and faults."""

import itertools
import json
import time
import urllib.error
import urllib.request

import orjson
import pytest
import websocket

from collectors.simulators.binance import BinanceSimulator, kline_bounds
from tests.helpers import wait_until


@pytest.fixture
def sim():
    simulator = BinanceSimulator(seed=3, rate=100.0)
    simulator.start()
    yield simulator
    simulator.stop()


def connect(url: str) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=5)


def receive(ws: websocket.WebSocket, count: int, within: float = 5.0) -> list:
    messages = []
    deadline = time.monotonic() + within
    while len(messages) < count and time.monotonic() < deadline:
        messages.append(orjson.loads(ws.recv()))
    return messages


def receive_until(ws: websocket.WebSocket, predicate, within: float = 5.0) -> list:
    """Messages up to the first that `predicate` accepts."""
    messages = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        messages.append(orjson.loads(ws.recv()))
        if predicate(messages[-1]):
            return messages
    raise AssertionError(f"no such message within {within}s")


def rest(sim, path: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(f"{sim.rest_url}{path}", timeout=5) as answer:
            return answer.status, dict(answer.headers), json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def test_a_combined_stream_url_wraps_each_payload_with_its_stream_name(sim):
    ws = connect(f"{sim.stream_url}?streams=btcusdt@trade/ethusdt@aggTrade")
    messages = receive(ws, 20)
    ws.close()
    streams = {message["stream"] for message in messages}
    assert streams == {"btcusdt@trade", "ethusdt@aggTrade"}
    trade = next(m["data"] for m in messages if m["stream"] == "btcusdt@trade")
    assert trade["e"] == "trade" and trade["s"] == "BTCUSDT"
    assert isinstance(trade["t"], int) and isinstance(trade["m"], bool)


def test_a_raw_stream_sends_bare_payloads(sim):
    ws = connect(f"{sim.ws_url}/btcusdt@aggTrade")
    message = receive(ws, 1)[0]
    ws.close()
    assert message["e"] == "aggTrade" and message["f"] <= message["l"]


def test_subscribe_is_acknowledged_by_id_and_listed(sim):
    ws = connect(sim.stream_url)
    ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 7}))
    assert receive(ws, 1)[0] == {"result": None, "id": 7}
    ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
    answer = receive_until(ws, lambda message: message.get("id") == 8)[-1]
    assert answer == {"result": ["btcusdt@depth@100ms"], "id": 8}
    ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 9}))
    assert receive_until(ws, lambda message: "id" in message)[-1] == {"result": None, "id": 9}
    ws.close()


@pytest.mark.parametrize(
    "request_text, code, text",
    [
        ("{not json", 3, "Invalid JSON"),
        ('{"method": "SUBSCRIBLE", "params": [], "id": 1}', 2, "unknown variant SUBSCRIBLE"),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@trades"], "id": 1}', 2, "invalid stream"),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1.5}', 2, "request ID"),
        ('{"method": "GET_PROPERTY", "params": ["colour"], "id": 1}', 0, "Unknown property"),
    ],
)
def test_bad_requests_get_binance_error_answers(sim, request_text, code, text):
    ws = connect(sim.stream_url)
    ws.send(request_text)
    answer = receive(ws, 1)[0]
    ws.close()
    assert answer["code"] == code and text in answer["msg"]


def test_more_than_5_messages_a_second_close_the_connection(sim):
    ws = connect(sim.stream_url)
    for number in range(7):
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": number}))
    wait_until(lambda: sim.stats()["rate_limit_closes"] >= 1, 5, message="the close")
    with pytest.raises(websocket.WebSocketException):
        while True:
            ws.recv()


def test_more_than_1024_streams_are_refused():
    with_many = BinanceSimulator(seed=1, rate=1.0, instruments=[f"C{n}USDT" for n in range(3)])
    with_many.start()
    try:
        ws = connect(with_many.stream_url)
        streams = [f"x{n}usdt@trade" for n in range(1025)]
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        answer = receive(ws, 1)[0]
        ws.close()
    finally:
        with_many.stop()
    assert answer["code"] == 2 and "1024" in answer["msg"]


def test_a_client_that_does_not_answer_pings_is_closed():
    pinging = BinanceSimulator(seed=1, rate=1.0, ping_interval=0.2, pong_timeout=0.3)
    pinging.start()
    try:
        ws = connect(pinging.stream_url)  # never reads, so never answers a ping
        wait_until(lambda: pinging.stats()["open_connections"] == 0, 5, message="the close")
        ws.close()
    finally:
        pinging.stop()


def test_a_connection_is_cut_when_its_lifetime_ends():
    short = BinanceSimulator(seed=1, rate=20.0, connection_lifetime=0.5)
    short.start()
    try:
        ws = connect(f"{short.stream_url}?streams=btcusdt@trade")
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                ws.recv()
        assert short.stats()["lifetime_cuts"] == 1
    finally:
        short.stop()


def test_diff_depth_updates_chain_onto_the_rest_snapshot(sim):
    ws = connect(f"{sim.stream_url}?streams=btcusdt@depth@100ms")
    first = receive(ws, 1)[0]["data"]
    status, _, snapshot = rest(sim, "/api/v3/depth?symbol=BTCUSDT&limit=50")
    assert status == 200 and len(snapshot["bids"]) == 50
    updates = [m["data"] for m in receive(ws, 10)]
    ws.close()
    chain = [first, *updates]
    for before, after in itertools.pairwise(chain):
        assert after["U"] == before["u"] + 1
    last_id = snapshot["lastUpdateId"]
    assert any(u["U"] <= last_id + 1 <= u["u"] for u in chain) or chain[-1]["u"] <= last_id


def test_a_depth_gap_fault_skips_an_update_id(sim):
    ws = connect(f"{sim.stream_url}?streams=btcusdt@depth@100ms")
    before = receive(ws, 2)
    sim.fault("depth_gap")
    updates = [m["data"] for m in [*before, *receive(ws, 5)]]
    ws.close()
    gaps = [b["U"] - a["u"] for a, b in itertools.pairwise(updates)]
    assert 2 in gaps


def test_rest_trades_and_aggregates_page_forward_by_from_id(sim):
    ws = connect(f"{sim.stream_url}?streams=btcusdt@trade")
    receive(ws, 50)
    ws.close()
    _, _, recent = rest(sim, "/api/v3/trades?symbol=BTCUSDT&limit=10")
    first = recent[0]["id"]
    _, _, page = rest(sim, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={first}&limit=5")
    assert [t["id"] for t in page] == list(range(first, first + 5))
    _, _, aggregates = rest(sim, "/api/v3/aggTrades?symbol=BTCUSDT&limit=3")
    from_id = aggregates[0]["a"]
    _, _, forward = rest(sim, f"/api/v3/aggTrades?symbol=BTCUSDT&fromId={from_id}&limit=3")
    assert forward == aggregates
    covered = [t["id"] for t in sim.generated_trades("BTCUSDT")]
    for aggregate in forward:  # an aggregate names the trades it holds
        assert aggregate["f"] in covered and aggregate["l"] in covered


@pytest.mark.parametrize(
    "path, code",
    [
        ("/api/v3/depth?symbol=NOSUCHCOIN", -1121),
        ("/api/v3/exchangeInfo?symbol=NOSUCHCOIN", -1121),
        ("/api/v3/trades", -1102),
        ("/api/v3/aggTrades?symbol=BTCUSDT&fromId=x", -1100),
    ],
)
def test_rest_errors_are_binance_error_answers(sim, path, code):
    status, _, body = rest(sim, path)
    assert status == 400 and body["code"] == code


def test_rate_limit_and_ban_faults_answer_429_and_418_with_retry_after(sim):
    sim.fault("rate_limit", count=1, seconds=3)
    status, headers, body = rest(sim, "/api/v3/ping")
    assert (status, headers["Retry-After"], body["code"]) == (429, "3", -1003)
    assert rest(sim, "/api/v3/ping")[0] == 200
    sim.fault("ip_ban", seconds=30)
    status, headers, body = rest(sim, "/api/v3/ping")
    assert status == 418 and int(headers["Retry-After"]) >= 29 and "banned" in body["msg"]


def test_a_shutdown_fault_announces_itself_then_closes(sim):
    ws = connect(f"{sim.stream_url}?streams=btcusdt@trade")
    receive(ws, 1)
    sim.fault("shutdown", seconds=0.3)
    seen = []
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            frame = ws.recv()
            if frame:  # the close frame reads as ""
                seen.append(orjson.loads(frame))
    assert any(m["data"].get("e") == "serverShutdown" for m in seen)


def test_klines_close_with_x_true_on_their_interval_boundary():
    fast = BinanceSimulator(seed=2, rate=50.0, kline_interval=0.2)
    fast.start()
    try:
        ws = connect(f"{fast.stream_url}?streams=btcusdt@kline_1s")
        klines = [m["data"]["k"] for m in receive(ws, 15)]
        ws.close()
    finally:
        fast.stop()
    closed = [k for k in klines if k["x"]]
    assert closed and all(k["T"] == k["t"] + 999 for k in klines)
    assert all(kline_bounds("1s", k["t"]) == (k["t"], k["T"] + 1) for k in closed)


def test_the_same_seed_makes_the_same_market():
    prices = []
    for _ in range(2):
        simulator = BinanceSimulator(seed=9, rate=0.0)
        trades = [simulator.generator.next_trade("BTCUSDT").trade for _ in range(20)]
        prices.append([(t.px, t.sz, t.side) for t in trades])
    assert prices[0] == prices[1]
