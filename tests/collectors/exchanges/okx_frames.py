"""OKX frames and REST answers as the OKX adapter tests build them."""

from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import orjson

from collectors.exchanges.okx import (
    OkxAdapter,
    OkxSession,
)
from collectors.types import DataType, ExchangeCollectorConfig

SYMBOL = "BTC-USDT"
SPEC_TRADE_FRAME = """{
  "arg": { "channel": "trades", "instId": "BTC-USDT" },
  "data": [
    {
      "instId": "BTC-USDT",
      "tradeId": "12345678",
      "px": "50000.5",
      "sz": "0.001",
      "side": "buy",
      "ts": "1697123456789"
    }
  ]
}"""
TS = "1697123456789"
AT = datetime(2023, 10, 12, 15, 10, 56, 789000, tzinfo=UTC)


def adapter(*data_types: DataType, symbol: str = SYMBOL, **params) -> OkxAdapter:
    config = ExchangeCollectorConfig("okx", symbol, list(data_types), custom_params=params or None)
    return OkxAdapter(config)


def session(*data_types: DataType, endpoint: str = "public", **params) -> OkxSession:
    okx = adapter(*data_types, **params)
    [chosen] = [e for e in okx.endpoints() if e.key == endpoint]
    return okx.session(chosen)


def push(channel: str, data: list, inst_id: str = SYMBOL, **extra) -> str:
    return orjson.dumps({"arg": {"channel": channel, "instId": inst_id}, "data": data, **extra})


def trade(**fields) -> dict:
    item = {"instId": SYMBOL, "tradeId": "1", "px": "100", "sz": "1", "side": "sell", "ts": TS}
    return {**item, **fields}


def books_session(**params) -> OkxSession:
    return session(DataType.ORDERBOOK, channels={"orderbook": "books"}, **params)


def books(action: str, seq: int, prev: int, bids=(), asks=(), checksum=0, ts=TS) -> str:
    item = {
        "asks": [list(level) for level in asks],
        "bids": [list(level) for level in bids],
        "ts": ts,
        "checksum": checksum,
        "prevSeqId": prev,
        "seqId": seq,
    }
    return push("books", [item], action=action)


SNAPSHOT_BIDS = [("100.5", "2", "0", "1"), ("100", "4", "0", "2"), ("99", "1", "0", "1")]
SNAPSHOT_ASKS = [("101", "3", "0", "1"), ("102", "5", "0", "2")]
RESYNC = [
    '{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}',
    '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}',
]


def synced_books() -> OkxSession:
    okx_session = books_session()
    handled = okx_session.handle(books("snapshot", 10, -1, SNAPSHOT_BIDS, SNAPSHOT_ASKS))
    assert handled.errors == []
    return okx_session


class CannedOkx(BaseHTTPRequestHandler):
    """Answers each GET with the next canned (status, body) or (status, headers, body) and
    records the request path."""

    def do_GET(self):
        server = self.server
        server.paths.append(self.path)
        answer = server.answers.pop(0) if server.answers else (500, b"{}")
        status, headers, body = answer if len(answer) == 3 else (answer[0], {}, answer[1])
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def rest_book(seq_id=None, ts="1697123456000", bids=SNAPSHOT_BIDS, asks=SNAPSHOT_ASKS, code="0"):
    item = {"asks": [list(a) for a in asks], "bids": [list(b) for b in bids], "ts": ts}
    if seq_id is not None:
        item["seqId"] = seq_id
    return 200, orjson.dumps({"code": code, "msg": "", "data": [item]})


TRADES_ACK = '{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4"}'


def rest_trades(*items, code="0", msg=""):
    return 200, orjson.dumps({"code": code, "msg": msg, "data": list(items)})


def trades_between(newest: int, oldest: int) -> list[dict]:
    """Trade items with ids newest..oldest, newest first, as OKX's REST answers."""
    return [trade(tradeId=str(i), ts=str(1697123456000 + i)) for i in range(newest, oldest - 1, -1)]


def reconnected(rest, had: int, **params):
    """A collector's second connection, after its first delivered trades up to `had`."""
    okx = adapter(DataType.TRADE, rest_url=rest.url, **params)
    [public] = okx.endpoints()
    okx.session(public).handle(push("trades", trades_between(had, had - 2)[::-1]))
    return okx.session(public)


def queries(rest) -> list[tuple[str, dict]]:
    return [(urlsplit(path).path, parse_qs(urlsplit(path).query)) for path in rest.paths]
