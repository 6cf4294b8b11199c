"""OKX `books` pushes of each era, as OKX sent them, kept by what each one carries.

2022: a CRC32 checksum and no seqId/prevSeqId. Later: both. From 2026: seqId/prevSeqId
and a checksum of 0 (none). The frames below are written the way OKX wrote them then:
`arg` with channel and instId, `action`, and data items of asks, bids (price, size, "0",
number of orders), ts as a string and, depending on the era, checksum, prevSeqId, seqId.
"""

import random

import orjson
import pytest

from collectors.exchanges.okx import OkxAdapter
from collectors.factory import ExchangeFactory
from collectors.types import DataType, ExchangeCollectorConfig
from marketdata.models import MarketData
from tests.helpers import ReplayServer, run, signed_crc32, wait_until

SYMBOLS = ("BTC-USDT", "ETH-USDT", "LTC-USDT")


def crc_of(bids: list, asks: list) -> int:
    """OKX's checksum string, built here from its documented rule: the top 25 bids and asks
    interleaved as price:size, the longer side's rest after."""
    pieces = []
    for index in range(25):
        if index < len(bids):
            pieces.append(f"{bids[index][0]}:{bids[index][1]}")
        if index < len(asks):
            pieces.append(f"{asks[index][0]}:{asks[index][1]}")
    return signed_crc32(":".join(pieces))


class RecordedBook:
    """A market's book moving as a session of OKX pushes would show it, one era's fields."""

    def __init__(self, symbol: str, era: int, seed: int, mid: float = 41006.5) -> None:
        self.symbol, self.era = symbol, era
        self.random = random.Random(f"{symbol}:{seed}")
        self.bids = {round(mid - 0.5 - i * 0.1, 1): self.size() for i in range(30)}
        self.asks = {round(mid + 0.3 + i * 0.1, 1): self.size() for i in range(30)}
        self.ts = 1643784245436  # 2022-02-02
        self.seq = 3_000_000_000

    def size(self) -> str:
        return f"{self.random.randint(1, 90_000_000) / 1e8:.8f}".rstrip("0").rstrip(".")

    def levels(self, side: dict, reverse: bool) -> list[list[str]]:
        return [
            [f"{price:.1f}", size, "0", str(1 + len(size) % 4)]
            for price, size in sorted(side.items(), reverse=reverse)
        ]

    def frame(self, action: str, bids: list, asks: list, prev: int) -> str:
        item = {"asks": asks, "bids": bids, "ts": str(self.ts)}
        top_bids = self.levels(self.bids, True)
        top_asks = self.levels(self.asks, False)
        if self.era == 2022:
            item["checksum"] = crc_of(top_bids, top_asks)
        elif self.era == 2024:
            item |= {"checksum": crc_of(top_bids, top_asks), "prevSeqId": prev, "seqId": self.seq}
        else:  # 2026: the checksum is no longer filled in
            item |= {"checksum": 0, "prevSeqId": prev, "seqId": self.seq}
        arg = {"channel": "books", "instId": self.symbol}
        return orjson.dumps({"arg": arg, "action": action, "data": [item]}).decode()

    def snapshot(self) -> str:
        return self.frame(
            "snapshot", self.levels(self.bids, True), self.levels(self.asks, False), -1
        )

    def update(self) -> str:
        prev = self.seq
        self.seq += self.random.randint(1, 5)
        self.ts += self.random.randint(10, 100)
        changed = {"bids": [], "asks": []}
        for _ in range(self.random.randint(1, 4)):
            name = self.random.choice(["bids", "asks"])
            side = getattr(self, name)
            price = self.random.choice(sorted(side)[:10] if name == "asks" else sorted(side)[-10:])
            size = "0" if self.random.random() < 0.3 and len(side) > 10 else self.size()
            if size == "0":
                del side[price]
            else:
                side[price] = size
            changed[name].append([f"{price:.1f}", size, "0", "0" if size == "0" else "1"])
        changed["bids"].sort(key=lambda level: -float(level[0]))
        changed["asks"].sort(key=lambda level: float(level[0]))
        return self.frame("update", changed["bids"], changed["asks"], prev)

    def session(self, updates: int) -> list[str]:
        return [self.snapshot(), *(self.update() for _ in range(updates))]


def okx_session():
    config = ExchangeCollectorConfig(
        "okx",
        "BTC-USDT",
        [DataType.ORDERBOOK],
        custom_params={"channels": {"orderbook": "books"}, "rest_url": "http://127.0.0.1:9"},
    )
    okx = OkxAdapter(config)
    [endpoint] = okx.endpoints()
    return okx.session(endpoint)


@pytest.mark.parametrize("era", [2022, 2024, 2026])
def test_a_session_of_each_era_is_kept_without_an_error_or_a_resync(era):
    session = okx_session()
    frames = RecordedBook("BTC-USDT", era, seed=1).session(200)

    results = [session.handle(frame) for frame in frames]

    assert [error for r in results for error in r.errors] == []
    assert [frame for r in results for frame in r.send] == []
    assert sum(len(r.points) for r in results) == 201
    if era == 2026:
        assert results[0].points[0].data["checksum"] is None  # 0 means none
    warnings = [warning for r in results for warning in r.warnings]
    assert warnings == []  # every era carries a sequence or a checksum


def test_the_2022_book_is_the_one_the_updates_describe():
    recorded = RecordedBook("BTC-USDT", 2022, seed=2)
    session = okx_session()
    for frame in recorded.session(50):
        handled = session.handle(frame)
    bids, asks = handled.points[-1].data["bids"], handled.points[-1].data["asks"]
    assert bids == [level[:2] for level in recorded.levels(recorded.bids, True)][:25]
    assert asks == [level[:2] for level in recorded.levels(recorded.asks, False)][:25]


def test_a_2022_update_whose_checksum_does_not_match_resyncs():
    recorded = RecordedBook("BTC-USDT", 2022, seed=3)
    session = okx_session()
    session.handle(recorded.snapshot())
    item = orjson.loads(recorded.update())
    item["data"][0]["checksum"] += 1

    handled = session.handle(orjson.dumps(item))

    assert handled.points == []
    assert handled.errors[0].startswith("books checksum mismatch: got ")
    assert len(handled.send) == 2  # unsubscribe, subscribe: a fresh snapshot follows


def test_a_2026_update_with_a_gap_in_the_sequence_resyncs():
    recorded = RecordedBook("BTC-USDT", 2026, seed=4)
    session = okx_session()
    session.handle(recorded.snapshot())
    recorded.update()  # lost on the way

    handled = session.handle(recorded.update())

    assert handled.points == [] and len(handled.send) == 2
    assert handled.errors[0].startswith("books sequence break: prevSeqId ")


def test_an_update_carrying_neither_is_stored_with_a_counted_warning():
    recorded = RecordedBook("BTC-USDT", 2026, seed=5)
    session = okx_session()
    session.handle(recorded.snapshot())
    item = orjson.loads(recorded.update())
    for key in ("seqId", "prevSeqId"):
        del item["data"][0][key]

    handled = session.handle(orjson.dumps(item))

    assert handled.errors == [] and handled.send == [] and len(handled.points) == 1
    assert handled.warnings == [
        "books update carries neither a sequence number nor a checksum: applied unchecked"
    ]


@pytest.mark.django_db(transaction=True)
def test_a_replayed_2022_session_of_three_instruments_stores_every_book(sink):
    sessions = {symbol: RecordedBook(symbol, 2022, seed=9).session(120) for symbol in SYMBOLS}
    with ReplayServer(sessions) as server:
        collectors = []
        for symbol in SYMBOLS:
            config = ExchangeCollectorConfig(
                "okx",
                symbol,
                [DataType.ORDERBOOK],
                custom_params={
                    "public_ws_url": server.url,
                    "rest_url": "http://127.0.0.1:9",
                    "channels": {"orderbook": "books"},
                    "reconnect_delay": 0.1,
                },
            )
            collector = ExchangeFactory.create_collector(config)
            collector.sink = sink
            collectors.append(collector)
            assert run(collector.start())

        def stored() -> int:
            return MarketData.objects.filter(data_type="orderbook").count()

        wait_until(lambda: stored() >= 3 * 121, 20, message="every book of the replay")
        for collector in collectors:
            run(collector.stop())
    sink.flush(10)
    for collector in collectors:
        assert collector.counters()["errors"] == 0, collector.last_error
        assert collector.counters()["warnings"] == 0
    for symbol in SYMBOLS:
        rows = MarketData.objects.filter(symbol=symbol, data_type="orderbook")
        assert rows.count() == 121
        assert rows.filter(data__action="update").count() == 120
