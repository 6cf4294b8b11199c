"""An OKX v5 simulator on loopback: public, business and private WebSockets, the REST order book,
the signed REST account endpoints and a control API on one port, fed by the seeded market
generator, with injectable faults. The private side (login checks, scripted accounts) is
collectors.simulators.okx_account.

A collector pointed at it cannot tell it from OKX for trades, books5, books, tickers and
candles: the same subscribe acknowledgements and error events, text ping/pong, the 30-second
idle close (4004), book snapshots and updates chained by seqId/prevSeqId with CRC32
checksums, the service-upgrade notice, and the REST book and recent trades. Control:
POST /_sim/fault, GET /_sim/stats, GET /_sim/trades?instId=X.
"""

from __future__ import annotations

import asyncio
import bisect
import http
import logging
import os
import random
import re
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, ClassVar

import orjson
from websockets.http11 import Request, Response

from collectors.simulators.market import (
    Instrument,
    MarketGenerator,
    Tape,
    contract_instrument,
    decimal_str,
    listed_spot,
    spot_instrument,
    wall_clock_ms,
)
from collectors.simulators.okx_account import (
    SPOT,
    ApiKey,
    LoginRefused,
    ScriptedAccount,
    check_login,
    check_rest,
)
from collectors.simulators.server import (
    COMMON_FAULTS,
    Binary,
    Client,
    Connection,
    Fault,
    MarketFeed,
    SimulatorServer,
    dumps,
    json_response,
)

log = logging.getLogger(__name__)

PUBLIC_PATH = "/ws/v5/public"
BUSINESS_PATH = "/ws/v5/business"
PRIVATE_PATH = "/ws/v5/private"
PUBLIC_CHANNELS = frozenset({"trades", "books", "books5", "tickers"})
BOOK_LEVELS = 400  # OKX's "books" depth, and the most the REST book returns
CHECKSUM_DEPTH = 25  # levels per side in OKX's book checksum
REST_BOOKS_PATH = "/api/v5/market/books"
REST_TRADES_PATH = "/api/v5/market/trades"
REST_TRADES_DEFAULT = 100  # OKX's default `limit` for recent trades
REST_TRADES_MAX = 500  # and the most it serves
REST_HISTORY_TRADES_PATH = "/api/v5/market/history-trades"
REST_INSTRUMENTS_PATH = "/api/v5/public/instruments"
INST_TYPES = ("SPOT", "SWAP", "FUTURES", "OPTION", "MARGIN")
REST_HISTORY_TRADES_MAX = 100  # a page of older trades: default and most
REST_BALANCE_PATH = "/api/v5/account/balance"
REST_POSITIONS_PATH = "/api/v5/account/positions"
PRIVATE_CHANNELS = frozenset({"account", "positions", "orders"})

FAULT_KINDS = (
    *COMMON_FAULTS,
    "bad_checksum",
    "burst",
    "notice",
    "pause",
    "resume",
    "seq_break",
)
IDLE_CLOSE_CODE = 4004
NOTICE_MSG = "The connection will soon be closed for a service upgrade. Please reconnect."

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
UTC8 = 8 * HOUR  # OKX's unsuffixed bars of 6H and longer open at Hong Kong midnight
MONDAY = 4 * DAY  # 1970-01-05, the first Monday after the epoch
_FIXED_BARS = {
    "1s": SECOND,
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1H": HOUR,
    "2H": 2 * HOUR,
    "4H": 4 * HOUR,
}
_ZONED_BARS = {
    "6H": 6 * HOUR,
    "12H": 12 * HOUR,
    "1D": DAY,
    "2D": 2 * DAY,
    "3D": 3 * DAY,
    "5D": 5 * DAY,
    "1W": 7 * DAY,
}
_MONTH_BARS = {"1M": 1, "3M": 3, "6M": 6, "1Y": 12}
CANDLE_BARS = frozenset(
    [*_FIXED_BARS, *_ZONED_BARS, *_MONTH_BARS] + [f"{bar}utc" for bar in [*_ZONED_BARS, "1M", "3M"]]
)


# SPOT "BTC-USDT", SWAP "BTC-USDT-SWAP", FUTURES "BTC-USD-220527", OPTION "BTC-USD-220527-30000-C"
INST_ID_PATTERN = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}(-SWAP|-\d{6}(-\d+(\.\d+)?-[CP])?)?")
DEFAULT_INSTRUMENTS = ("BTC-USDT", "ETH-USDT", "UNI-USD-SWAP", "BTC-USD-220527")
KNOWN_INSTRUMENTS = {
    item.inst_id: item
    for item in (
        spot_instrument("BTC-USDT", "0.1", "0.00000001", "42000", 100_000),
        spot_instrument("ETH-USDT", "0.01", "0.000001", "2500", 20_000),
        contract_instrument("UNI-USD-SWAP", "SWAP", "0.001", "7.5", "10", "inverse"),
        contract_instrument("BTC-USD-220527", "FUTURES", "0.1", "42000", "100", "inverse"),
        contract_instrument("BTC-USDT-SWAP", "SWAP", "0.1", "42000", "0.01", "linear"),
    )
}


def instrument_type(inst_id: str) -> str:
    parts = inst_id.split("-")
    if parts[-1] == "SWAP":
        return "SWAP"
    if parts[-1] in ("C", "P"):
        return "OPTION"
    return "FUTURES" if len(parts) == 3 else "SPOT"


def okx_instrument(inst_id: str | Instrument) -> Instrument:
    """The known instrument of that id, or a plausible one for any valid OKX instId."""
    if isinstance(inst_id, Instrument):
        return inst_id
    if inst_id in KNOWN_INSTRUMENTS:
        return KNOWN_INSTRUMENTS[inst_id]
    if not INST_ID_PATTERN.fullmatch(inst_id):
        raise ValueError(f"Not an instrument id: {inst_id!r}")
    kind = instrument_type(inst_id)
    if kind == "SPOT":
        return spot_instrument(inst_id)
    if inst_id.split("-")[1] == "USD":
        return contract_instrument(inst_id, kind, "0.01", "100", "10", "inverse")
    return contract_instrument(inst_id, kind, "0.01", "100", "0.01", "linear")


def candle_bar(channel: str) -> str | None:
    """ "candle1m" -> "1m"; None for anything that is not an OKX candle channel."""
    if channel.startswith("candle") and channel[6:] in CANDLE_BARS:
        return channel[6:]
    return None


def bar_bounds(bar: str, ts: int) -> tuple[int, int]:
    """Start and end (epoch ms) of the OKX candle of that bar holding `ts`."""
    zone = 0 if bar.endswith("utc") else UTC8
    name = bar.removesuffix("utc")
    if name in _FIXED_BARS:
        width = _FIXED_BARS[name]
        start = ts - ts % width
        return start, start + width
    if name in _ZONED_BARS:
        width = _ZONED_BARS[name]
        origin = (MONDAY if name == "1W" else 0) - zone
        start = ts - (ts - origin) % width
        return start, start + width
    months = _MONTH_BARS[name]
    local = datetime.fromtimestamp((ts + zone) / 1000, UTC)
    index = (local.year * 12 + local.month - 1) // months * months
    return _month_start(index) - zone, _month_start(index + months) - zone


def _month_start(index: int) -> int:
    return int(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp()) * 1000


def _levels(levels: Iterable[tuple[str, str, int]]) -> list[list[str]]:
    return [[px, sz, "0", str(orders)] for px, sz, orders in levels]


def book_checksum(bids: list, asks: list) -> int:
    """OKX's book checksum, written here apart from the adapter's so that each checks the other:
    CRC32 (as a signed 32-bit number) of the top 25 bids and asks interleaved, "px:sz" each,
    joined by ":"; where one side runs out, the other's levels follow alone."""
    pieces = []
    for index in range(CHECKSUM_DEPTH):
        for side in (bids, asks):
            if index < len(side):
                pieces.append(f"{side[index][0]}:{side[index][1]}")
    value = zlib.crc32(":".join(pieces).encode())
    return value - 2**32 if value > 2**31 - 1 else value


def _wrong_checksum(checksum: int) -> int:
    flipped = (checksum + 1) & 0xFFFFFFFF
    return flipped - (1 << 32) if flipped >= 1 << 31 else flipped


_MALFORMED = (
    b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-',
    b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":{"px":null,"side":7}}',
    Binary(b"\x00\xff\xfe\x80 not a frame \x1f\x8b\x08\x00"),
    b"[1,2,3]",
)


class _Market(MarketFeed):
    """One instrument: its subscribers, the trades it sent, its book sequence and pushes."""

    sim: OkxSimulator

    def __init__(self, sim: OkxSimulator, instrument: Instrument, seq_start: int) -> None:
        super().__init__(sim, instrument.inst_id)
        self.instrument = instrument
        self.tape = Tape(instrument.contract_type == "inverse")
        self.sent: list[tuple[int, str, str, str, int]] = []  # (tradeId, px, sz, side, ts)
        self.generated: list[tuple[int, str, str, str, int]] = []  # sent or not, as REST has them
        self.seq = seq_start
        self.pushed_seq = seq_start  # seqId of the last books push
        self.pending: dict[tuple[str, int], None] = {}  # levels changed since that push
        self.last_books_push = 0.0
        self.books5_sig: Any = None
        self.ticker_sig: Any = None
        self.candles: dict[str, list] = {}  # bar -> [start of the bar being pushed, last row]
        self.trades_arg = f'{{"channel":"trades","instId":"{self.inst_id}"}}'
        self.trade_head = (
            f'{{"arg":{self.trades_arg},"data":[{{"instId":"{self.inst_id}","tradeId":"'
        )

    def trade_clients(self) -> set[Client]:
        return self.subs["trades"]

    def runs(self) -> list[Coroutine]:
        runs = super().runs()
        if self.sim.quote_rate > 0:
            runs.append(self._run_quotes())
        return runs

    async def _run_quotes(self) -> None:
        interval = 1.0 / self.sim.quote_rate
        while True:
            await self._ready()
            changes = self.sim.generator.move_quotes(self.inst_id).changes
            self.seq += len(changes)
            if self.subs["books"]:
                for change in changes:
                    self.pending[(change.side, change.ticks)] = None
            await asyncio.sleep(interval)

    async def _run_pushes(self) -> None:
        sim = self.sim
        loop = sim.loop
        now = loop.time()
        due = {"books": now, "books5": now, "tickers": now}
        intervals = {
            "books": sim.books_interval,
            "books5": sim.books5_interval,
            "tickers": sim.tickers_interval,
        }
        pushes = {"books": self.push_books, "books5": self.push_books5, "tickers": self.push_ticker}
        candles_due = now
        while True:
            await sim.unstalled.wait()
            now = loop.time()
            for name, at in due.items():
                if now >= at:
                    pushes[name]()
                    due[name] = now + intervals[name]
            if now >= candles_due:
                self.push_candles()
                # On the clock's second boundaries, so a closed bar is confirmed promptly.
                wait_ms = sim.candle_interval * 1000 - sim.clock() % 1000 + 5
                candles_due = now + wait_ms / 1000
            await asyncio.sleep(max(0.0, min(*due.values(), candles_due) - loop.time()))

    # Trades

    def emit_trades(self, count: int) -> None:
        """Generate trades and write them at once to every open trades subscriber, so that
        `sent` holds exactly the trades that went out on some connection and `generated`
        every trade, as the REST recent trades have them."""
        generator = self.sim.generator
        subscribers = [client for client in self.subs["trades"] if client.is_open()]
        keep_changes = bool(self.subs["books"])
        pending, tape, sent, generated = self.pending, self.tape, self.sent, self.generated
        head = self.trade_head
        frames: list[bytes] = []
        for _ in range(count):
            step = generator.next_trade(self.inst_id)
            trade = step.trade
            self.seq += len(step.changes)
            if keep_changes:
                for change in step.changes:
                    pending[(change.side, change.ticks)] = None
            tape.add(trade)
            record = (trade.trade_id, trade.px, trade.sz, trade.side, trade.ts)
            generated.append(record)
            if subscribers:
                frames.append(
                    f'{head}{trade.trade_id}","px":"{trade.px}","sz":"{trade.sz}",'
                    f'"side":"{trade.side}","ts":"{trade.ts}","count":"1","source":"0"}}]}}'.encode()
                )
                sent.append(record)
        if frames:
            for client in subscribers:
                client.out.extend(frames)
                client.flush()
            self.sim.counts["trades"] += len(frames) * len(subscribers)

    # Books

    def _book_frame(self, action: str, asks: list, bids: list, prev: int, seq: int) -> bytes:
        sim = self.sim
        checksum = 0
        if sim.books_checksum:
            book = sim.generator.book(self.inst_id, CHECKSUM_DEPTH)
            checksum = book_checksum(book["bids"], book["asks"])
        if action == "update" and sim.take_book_fault("bad_checksum", self.inst_id):
            checksum = _wrong_checksum(checksum)
        if action == "update" and sim.take_book_fault("seq_break", self.inst_id):
            prev += 1
        data = {
            "asks": asks,
            "bids": bids,
            "ts": str(sim.clock()),
            "checksum": checksum,
            "prevSeqId": prev,
            "seqId": seq,
        }
        arg = {"channel": "books", "instId": self.inst_id}
        return dumps({"arg": arg, "action": action, "data": [data]})

    def push_books(self, heartbeat: bool = True) -> None:
        """Send the levels changed since the last push; after a quiet spell, an empty update
        with seqId == prevSeqId, as OKX does to show the stream is alive."""
        subscribers = self.subs["books"]
        now = self.sim.loop.time()
        if not subscribers:
            self.pending.clear()
            self.pushed_seq = self.seq
            return
        if not self.pending and (
            not heartbeat or now - self.last_books_push < self.sim.books_heartbeat
        ):
            return
        asks, bids = [], []
        generator = self.sim.generator
        for side, ticks in sorted(self.pending, key=lambda key: key[1]):
            level = generator.level(self.inst_id, side, ticks)
            row = [generator.price_str(self.inst_id, ticks), "0", "0", "0"]
            if level is not None:
                row = [level[0], level[1], "0", str(level[2])]
            (asks if side == "asks" else bids).append(row)
        bids.reverse()
        frame = self._book_frame("update", asks, bids, self.pushed_seq, self.seq)
        for client in subscribers:
            client.send(frame)
        self.sim.counts["books"] += len(subscribers)
        self.pending.clear()
        self.pushed_seq = self.seq
        self.last_books_push = now

    def add_books_subscriber(self, client: Client) -> None:
        """Bring the others up to date first, so a snapshot and the next update chain."""
        self.push_books(heartbeat=False)
        self.pending.clear()
        self.pushed_seq = self.seq
        self.last_books_push = self.sim.loop.time()
        self.subs["books"].add(client)
        if self.sim.books_snapshot:
            book = self.sim.generator.book(self.inst_id, BOOK_LEVELS)
            frame = self._book_frame(
                "snapshot", _levels(book["asks"]), _levels(book["bids"]), -1, self.seq
            )
            client.send(frame)
            self.sim.counts["books"] += 1

    def rest_book(self, depth: int) -> dict[str, Any]:
        self.push_books(heartbeat=False)
        self.pending.clear()
        self.pushed_seq = self.seq
        book = self.sim.generator.book(self.inst_id, depth)
        return {
            "asks": _levels(book["asks"]),
            "bids": _levels(book["bids"]),
            "ts": str(self.sim.clock()),
            "seqId": self.seq,
        }

    def push_books5(self, to: Client | None = None) -> None:
        subscribers = [to] if to else self.subs["books5"]
        if not subscribers:
            return
        book = self.sim.generator.book(self.inst_id, 5)
        signature = (book["asks"], book["bids"])
        if to is None and signature == self.books5_sig:
            return
        self.books5_sig = signature
        data = {
            "asks": _levels(book["asks"]),
            "bids": _levels(book["bids"]),
            "instId": self.inst_id,
            "ts": str(self.sim.clock()),
            "seqId": self.seq,
        }
        frame = dumps({"arg": {"channel": "books5", "instId": self.inst_id}, "data": [data]})
        for client in subscribers:
            client.send(frame)
        self.sim.counts["books5"] += len(subscribers)

    # Tickers

    def push_ticker(self, to: Client | None = None) -> None:
        subscribers = [to] if to else self.subs["tickers"]
        if not subscribers:
            return
        bid, ask = self.sim.generator.best(self.inst_id)
        last = self.tape.last
        signature = (last and last.trade_id, bid, ask)
        if to is None and signature == self.ticker_sig:
            return
        self.ticker_sig = signature
        frame = dumps(
            {"arg": {"channel": "tickers", "instId": self.inst_id}, "data": [self.ticker(bid, ask)]}
        )
        for client in subscribers:
            client.send(frame)
        self.sim.counts["tickers"] += len(subscribers)

    def ticker(self, bid: tuple[str, str, int], ask: tuple[str, str, int]) -> dict[str, str]:
        now = self.sim.clock()
        px = self.sim.generator.price_str
        last = self.tape.last
        day = self._rolled_up(now - DAY, now)
        vol, vol_ccy, _ = self._volumes(day) if day else ("0", "0", "0")
        return {
            "instType": self.instrument.inst_type,
            "instId": self.inst_id,
            "last": last.px if last else bid[0],
            "lastSz": last.sz if last else "0",
            "askPx": ask[0],
            "askSz": ask[1],
            "bidPx": bid[0],
            "bidSz": bid[1],
            "open24h": px(self.inst_id, day[0]) if day else bid[0],
            "high24h": px(self.inst_id, day[1]) if day else bid[0],
            "low24h": px(self.inst_id, day[2]) if day else bid[0],
            "volCcy24h": vol_ccy,
            "vol24h": vol,
            "ts": str(now),
            "sodUtc0": self._day_open(now, 0, bid[0]),
            "sodUtc8": self._day_open(now, UTC8, bid[0]),
        }

    def _rolled_up(self, since: int, now: int) -> list | None:
        start = since - since % MINUTE + MINUTE
        return self.tape.ohlcv(start, now - now % MINUTE + MINUTE)

    def _day_open(self, now: int, zone: int, fallback: str) -> str:
        day_start = now - (now + zone) % DAY
        day = self.tape.ohlcv(day_start, now - now % MINUTE + MINUTE)
        if day:
            return self.sim.generator.price_str(self.inst_id, day[0])
        return self.tape.last.px if self.tape.last else fallback

    def _volumes(self, bar: list) -> tuple[str, str, str]:
        """(vol, volCcy, volCcyQuote) as OKX reports them for this kind of instrument."""
        instrument = self.instrument
        size = Decimal(bar[4]) * instrument.lot_size
        quote = Decimal(bar[5]) * instrument.tick_size * instrument.lot_size
        value = instrument.contract_value
        if value is None:
            return decimal_str(size), decimal_str(quote), decimal_str(quote)
        if instrument.contract_type == "inverse":
            base = (bar[7] * instrument.lot_size * value / instrument.tick_size).quantize(
                Decimal("0.00000001")
            )
            return decimal_str(size), decimal_str(base), decimal_str(size * value)
        return decimal_str(size), decimal_str(size * value), decimal_str(quote * value)

    # Candles

    def candle_row(self, bar: str, start: int, confirm: str) -> list[str] | None:
        end = bar_bounds(bar, start)[1]
        folded = self.tape.ohlcv(start, end)
        px = self.sim.generator.price_str
        if folded is None:
            last = self.tape.last
            if last is None:
                return None
            return [str(start), last.px, last.px, last.px, last.px, "0", "0", "0", confirm]
        prices = [px(self.inst_id, ticks) for ticks in folded[:4]]
        return [str(start), *prices, *self._volumes(folded), confirm]

    def push_candles(self) -> None:
        """Each subscribed bar: its final row once it has closed, then the open bar's row
        if it changed since the last push."""
        now = self.sim.clock()
        for channel, subscribers in list(self.subs.items()):
            bar = candle_bar(channel)
            if bar is None or not subscribers:
                continue
            start = bar_bounds(bar, now)[0]
            state = self.candles.get(bar)
            if state is not None and state[0] != start:
                self._send_candle(channel, subscribers, self.candle_row(bar, state[0], "1"))
            if state is None or state[0] != start:
                state = self.candles[bar] = [start, None]
            row = self.candle_row(bar, start, "0")
            if row is not None and row != state[1]:
                state[1] = row
                self._send_candle(channel, subscribers, row)

    def push_candle_to(self, client: Client, channel: str) -> None:
        bar = candle_bar(channel)
        assert bar is not None
        start = bar_bounds(bar, self.sim.clock())[0]
        self._send_candle(channel, [client], self.candle_row(bar, start, "0"))

    def _send_candle(self, channel: str, subscribers: Iterable[Client], row: Any) -> None:
        if row is None:
            return
        subscribers = list(subscribers)
        frame = dumps({"arg": {"channel": channel, "instId": self.inst_id}, "data": [row]})
        for client in subscribers:
            client.send(frame)
        self.sim.counts[channel] += len(subscribers)


class OkxSimulator(SimulatorServer):
    """The OKX v5 public, business and private WebSockets, the REST book and account, and a
    control API, on one loopback port. `start()` runs it on a background thread;
    `serve_forever()` in the caller's event loop."""

    name: ClassVar[str] = "OKX simulator"
    fault_kinds: ClassVar[tuple[str, ...]] = FAULT_KINDS
    malformed_frames: ClassVar[tuple[bytes, ...]] = _MALFORMED
    idle_close_code: ClassVar[int] = IDLE_CLOSE_CODE
    protocol_ping_interval = None  # OKX keeps connections alive with text "ping", not frames

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        rate: float = 10.0,
        instruments: Iterable[str | Instrument] | None = None,
        books_checksum: bool = True,
        books_snapshot: bool = True,
        idle_timeout: float = 30.0,
        *,
        books_interval: float = 0.1,
        books5_interval: float = 0.1,
        tickers_interval: float = 1.0,
        candle_interval: float = 1.0,
        books_heartbeat: float = 5.0,
        quote_rate: float = 0.0,
        notice_delay: float = 2.0,
        linger: float = 0.0,
        clock: Callable[[], int] | None = None,
        api_keys: Iterable[ApiKey] = (),
        account_interval: float = 0.5,
    ) -> None:
        super().__init__(host, port, idle_timeout)
        self.seed = seed
        self.rate = float(rate)
        self.books_checksum = books_checksum
        self.books_snapshot = books_snapshot
        self.books_interval = books_interval
        self.books5_interval = books5_interval
        self.tickers_interval = tickers_interval
        self.candle_interval = candle_interval
        self.books_heartbeat = books_heartbeat
        # quote changes a second per instrument besides those trades make (0: none)
        self.quote_rate = float(quote_rate)
        self.notice_delay = notice_delay
        # seconds a market keeps trading after its last subscriber left, as OKX trades
        # whether anyone listens or not; trades a reconnecting client missed come from REST
        self.linger = linger
        self.clock = clock or wall_clock_ms
        # The listed spot markets come last: the others keep the order (and seqIds) they had.
        chosen = [*DEFAULT_INSTRUMENTS, *(instruments or ())]
        chosen += [item for item in listed_spot("-") if item.inst_id not in KNOWN_INSTRUMENTS]
        self.generator = MarketGenerator(
            seed, [okx_instrument(item) for item in chosen], self.clock, BOOK_LEVELS
        )
        self._book_faults: Counter[tuple[str, str]] = Counter()
        # the private side: keys it accepts, each key's scripted account, who is logged in
        self.api_keys = {key.api_key: key for key in api_keys}
        self.accounts = {
            key.api_key: ScriptedAccount(uid=f"{index + 1:08d}")
            for index, key in enumerate(self.api_keys.values())
        }
        self.account_interval = account_interval
        self.logins: Counter[str] = Counter()  # login attempts by answer code ("0": success)
        self.rest_logins: Counter[str] = Counter()  # signed REST requests by answer code
        self._logged_in: dict[Client, ApiKey] = {}
        self._private_subs: dict[Client, set[str]] = {}
        self._account_task: asyncio.Task | None = None
        seqs = random.Random(f"{seed}:seqId")
        self._markets = {
            inst_id: _Market(self, instrument, seqs.randint(1_000_000, 9_999_999))
            for inst_id, instrument in self.generator.instruments.items()
        }

    # Running it

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument("--no-checksum", action="store_true", help="OKX: book checksum 0.")
        parser.add_argument(
            "--no-snapshot", action="store_true", help="OKX: books open with updates."
        )
        parser.add_argument(
            "--api-key",
            action="append",
            default=[],
            metavar="KEY_ENV,SECRET_ENV,PASSPHRASE_ENV",
            help="OKX: accept the API key these environment variables hold, with a scripted "
            "account (repeatable; the same names an exchange's credentials give).",
        )

    @classmethod
    def options_from(cls, options: dict[str, Any]) -> dict[str, Any]:
        return {
            "books_checksum": not options.get("no_checksum"),
            "books_snapshot": not options.get("no_snapshot"),
            "api_keys": [api_key_from_env(names) for names in options.get("api_key") or ()],
        }

    def describe(self) -> str:
        return (
            f"Simulating OKX: public {self.public_url} business {self.business_url}"
            f" rest {self.rest_url}"
            + (
                f" private {self.private_url} ({len(self.api_keys)} API keys)"
                if self.api_keys
                else ""
            )
        )

    @property
    def public_url(self) -> str:
        return f"ws://{self.host}:{self.port}{PUBLIC_PATH}"

    @property
    def business_url(self) -> str:
        return f"ws://{self.host}:{self.port}{BUSINESS_PATH}"

    @property
    def private_url(self) -> str:
        return f"ws://{self.host}:{self.port}{PRIVATE_PATH}"

    def add_api_key(self, key: ApiKey) -> ScriptedAccount:
        """Accept another API key (another account); its scripted account."""

        def add() -> ScriptedAccount:
            self.api_keys[key.api_key] = key
            uid = f"{len(self.accounts) + 1:08d}"
            return self.accounts.setdefault(key.api_key, ScriptedAccount(uid=uid))

        return self.in_loop(add)

    def account(self, api_key: str) -> ScriptedAccount:
        return self.accounts[api_key]

    def sent_trades(self, inst_id: str) -> list[dict[str, str]]:
        """Every trade item sent for that instrument, in order, as it went on the wire."""
        return [_trade_item(inst_id, record) for record in list(self._market(inst_id).sent)]

    def generated_trades(self, inst_id: str) -> list[dict[str, str]]:
        """Every trade of that instrument, in order, whether or not a connection was there to
        send it to; the REST recent trades are the newest of these."""
        return [_trade_item(inst_id, record) for record in list(self._market(inst_id).generated)]

    def _market(self, inst_id: str) -> _Market:
        market = self._markets.get(inst_id)
        if market is None:
            raise KeyError(f"Unknown instrument {inst_id!r}")
        return market

    def check_fault(self, fault: Fault) -> None:
        if fault.inst_id is not None and fault.inst_id not in self._markets:
            raise ValueError(f"Unknown instrument {fault.inst_id!r}")

    def extra_stats(self) -> dict[str, Any]:
        return {
            "trades_sent": {inst_id: len(m.sent) for inst_id, m in self._markets.items()},
            "paused": sorted(inst_id for inst_id, m in self._markets.items() if m.paused),
            "logins": dict(self.logins),
            "login_attempts": sum(self.logins.values()),
            "rest_logins": dict(self.rest_logins),
            "logged_in": len(self._logged_in),
        }

    def on_shutdown(self) -> None:
        if self._account_task is not None:
            self._account_task.cancel()
        for market in self._markets.values():
            for task in market.tasks:
                task.cancel()

    # Faults

    def apply_fault(self, fault: Fault) -> None:
        if fault.kind in ("bad_checksum", "seq_break"):
            self._book_faults[(fault.kind, fault.inst_id or "*")] += fault.count or 1
        elif fault.kind == "burst":
            for market in self._markets.values():
                if fault.inst_id in (None, market.inst_id) and (
                    fault.inst_id or market.subs["trades"]
                ):
                    market.emit_trades(fault.count or 100)
        elif fault.kind == "notice":
            delay = self.notice_delay if fault.seconds is None else fault.seconds
            self._notice(self.clients(), delay)
        else:
            self._markets[fault.inst_id].set_paused(fault.kind == "pause")

    def take_book_fault(self, kind: str, inst_id: str) -> bool:
        for key in ((kind, inst_id), (kind, "*")):
            if self._book_faults[key] > 0:
                self._book_faults[key] -= 1
                return True
        return False

    def _notice(self, clients: list[Client], delay: float) -> None:
        for client in clients:
            self._event(client, {"event": "notice", "code": "64008", "msg": NOTICE_MSG})

        def close() -> None:
            for client in clients:
                client.conn.transport.abort()  # OKX drops the link after the notice

        self.loop.call_later(delay, close)

    # Connections

    def on_disconnect(self, client: Client) -> None:
        self._logged_in.pop(client, None)
        self._private_subs.pop(client, None)
        for channel, inst_id in client.subs:
            market = self._markets[inst_id]
            market.subs[channel].discard(client)
            market.deactivate_if_idle()

    # The WebSocket protocol

    def on_message(self, client: Client, message: str | bytes) -> None:
        if message == "ping":
            client.send(b"pong")
            self.events["pings_answered"] += 1
            self.counts["pong"] += 1
            return
        text = message if isinstance(message, str) else message.decode(errors="replace")
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self._error(client, "60012", f"Invalid request: {text}")
            return
        request_id = request.get("id") if isinstance(request.get("id"), str) else None
        op, args = request.get("op"), request.get("args")
        if client.path == PRIVATE_PATH:
            self._private_message(client, op, args, request_id, text)
            return
        if op in ("subscribe", "unsubscribe"):
            if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
                self._error(client, "60012", f"Invalid request: {text}", request_id)
                return
            for arg in args:
                self._subscription(client, op, arg, request_id)
        elif op == "login":
            self._error(client, "60009", "Login failed.", request_id)
        elif isinstance(op, str) and op:
            self._error(client, "60019", f"Invalid op: {op}", request_id)
        else:
            self._error(client, "60012", f"Invalid request: {text}", request_id)

    def _subscription(self, client: Client, op: str, arg: dict, request_id: str | None) -> None:
        channel, inst_id = arg.get("channel"), arg.get("instId")
        if not isinstance(channel, str) or not channel or not isinstance(inst_id, str):
            self._error(client, "60012", f"Invalid request: {orjson.dumps(arg).decode()}")
            return
        market = self._markets.get(inst_id)
        business = client.path == BUSINESS_PATH
        served = candle_bar(channel) is not None if business else channel in PUBLIC_CHANNELS
        if market is None or not served:
            self._error(
                client,
                "60018",
                f"{op.capitalize()} failed, wrong URL or channel:{channel},instId:{inst_id} "
                "doesn't exist. Please use the correct URL, channel and parameters referring "
                "to API document.",
                request_id,
            )
            return
        self._event(
            client, {"event": op, "arg": {"channel": channel, "instId": inst_id}}, request_id
        )
        key = (channel, inst_id)
        self.events["subscriptions" if op == "subscribe" else "unsubscriptions"] += 1
        if op == "unsubscribe":
            client.subs.discard(key)
            market.subs[channel].discard(client)
            market.deactivate_if_idle()
            return
        client.subs.add(key)
        market.subs[channel].discard(client)
        if channel == "books":
            market.add_books_subscriber(client)
        else:
            market.subs[channel].add(client)
        if channel == "books5":
            market.push_books5(to=client)
        elif channel == "tickers":
            market.push_ticker(to=client)
        elif channel != "trades" and channel != "books":
            market.push_candle_to(client, channel)
        market.activate()

    def _event(self, client: Client, event: dict, request_id: str | None = None) -> None:
        if request_id is not None:
            event["id"] = request_id
        event["connId"] = client.conn_id
        client.send(dumps(event))
        self.counts["event"] += 1

    def _error(self, client: Client, code: str, msg: str, request_id: str | None = None) -> None:
        self.events["bad_requests"] += 1
        log.warning("OKX simulator: error %s to %s: %s", code, client.conn_id, msg[:200])
        self._event(client, {"event": "error", "msg": msg, "code": code}, request_id)

    # The private WebSocket: login, account channels, the scripted accounts' pushes

    def _private_message(
        self, client: Client, op: Any, args: Any, request_id: str | None, text: str
    ) -> None:
        if op == "login":
            self._login(client, args, request_id)
        elif op in ("subscribe", "unsubscribe"):
            if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
                self._error(client, "60012", "Invalid request", request_id)
            elif client not in self._logged_in:
                self._error(client, "60011", "Please log in", request_id)
            else:
                for arg in args:
                    self._private_subscription(client, op, arg, request_id)
        elif isinstance(op, str) and op:
            self._error(client, "60019", f"Invalid op: {op[:50]}", request_id)
        else:
            self._error(client, "60012", "Invalid request", request_id)

    def _login(self, client: Client, args: Any, request_id: str | None) -> None:
        """OKX's login: one argument, checked as OKX does; the request is never echoed."""
        if client in self._logged_in:
            self._error(client, "60030", "The WebSocket endpoint does not allow multiple "
                        "or repeated logins.", request_id)  # fmt: skip
            return
        if not isinstance(args, list) or len(args) != 1:
            self.logins["60012"] += 1
            self._error(client, "60012", "Invalid request", request_id)
            return
        ip = client.conn.remote_address[0]
        try:
            key = check_login(self.api_keys, args[0], self.clock() / 1000, ip)
        except LoginRefused as refused:
            self.logins[refused.code] += 1
            self._error(client, refused.code, refused.msg, request_id)
            return
        self.logins["0"] += 1
        self._logged_in[client] = key
        self._private_subs[client] = set()
        self._event(client, {"event": "login", "code": "0", "msg": ""}, request_id)
        if self._account_task is None or self._account_task.done():
            self._account_task = asyncio.create_task(self._run_accounts())

    def _private_subscription(
        self, client: Client, op: str, arg: dict, request_id: str | None
    ) -> None:
        channel = arg.get("channel")
        if channel not in PRIVATE_CHANNELS or (
            channel != "account" and arg.get("instType") not in ("ANY", "SPOT", "SWAP")
        ):
            self._error(
                client,
                "60018",
                f"{op.capitalize()} failed, wrong URL or channel:{str(channel)[:50]} doesn't "
                "exist. Please use the correct URL, channel and parameters referring to API "
                "document.",
                request_id,
            )
            return
        account = self.accounts[self._logged_in[client].api_key]
        answer = {key: value for key, value in arg.items() if key in ("channel", "instType")}
        self._event(client, {"event": op, "arg": answer}, request_id)
        self.events["subscriptions" if op == "subscribe" else "unsubscriptions"] += 1
        subs = self._private_subs[client]
        if op == "unsubscribe":
            subs.discard(channel)
            return
        subs.add(channel)
        # OKX pushes the current state of the account and positions on subscribing
        if channel == "account":
            self._push(client, account, "account", [account.balance()])
        elif channel == "positions":
            self._push(client, account, "positions", account.positions(open_only=True))

    def _push(self, client: Client, account: ScriptedAccount, channel: str, data: list) -> None:
        arg: dict[str, str] = {"channel": channel, "uid": account.uid}
        if channel != "account":
            arg["instType"] = "ANY"
        client.send(dumps({"arg": arg, "data": data}))
        self.counts[channel] += 1

    async def _run_accounts(self) -> None:
        """Each logged-in key's account takes a step every account_interval seconds."""
        while self._logged_in:
            await asyncio.sleep(self.account_interval)
            await self.unstalled.wait()
            bid, ask = self.generator.best(SPOT)
            now = self.clock()
            for api_key in sorted({key.api_key for key in self._logged_in.values()}):
                account = self.accounts[api_key]
                changes = account.step(bid[0], ask[0], now)
                for client, key in list(self._logged_in.items()):
                    if key.api_key != api_key or not client.is_open():
                        continue
                    for channel, data in changes.items():
                        if channel in self._private_subs.get(client, ()) and data:
                            self._push(client, account, channel, data)

    def _rest_private(self, connection: Connection, request: Request, path: str) -> Response:
        """Signed GET /api/v5/account/balance and /api/v5/account/positions."""
        ip = connection.remote_address[0]
        try:
            key = check_rest(
                self.api_keys, request.headers, "GET", request.path, self.clock() / 1000, ip
            )
        except LoginRefused as refused:
            self.rest_logins[refused.code] += 1
            return json_response(401, {"code": refused.code, "msg": refused.msg, "data": []})
        self.rest_logins["0"] += 1
        account = self.accounts[key.api_key]

        def answer() -> list:
            if path == REST_BALANCE_PATH:
                return [account.balance()]
            return account.positions(open_only=True)

        return json_response(200, {"code": "0", "msg": "", "data": answer()})

    # HTTP on the same port

    def process_request(
        self, connection: Connection, request: Request, path: str, query: dict[str, list[str]]
    ) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if path in (PUBLIC_PATH, BUSINESS_PATH, PRIVATE_PATH):
                return None
            return connection.respond(
                http.HTTPStatus.NOT_FOUND,
                "Only the public, business and private WebSockets are simulated\n",
            )
        if path in (REST_BALANCE_PATH, REST_POSITIONS_PATH) and request.method == "GET":
            self.events["rest_requests"] += 1
            return self._rest_private(connection, request, path)
        if path == REST_BOOKS_PATH and request.method == "GET":
            self.events["rest_requests"] += 1
            return self._rest_books(query)
        if path == REST_TRADES_PATH and request.method == "GET":
            self.events["rest_requests"] += 1
            return self._rest_trades(query)
        if path == REST_HISTORY_TRADES_PATH and request.method == "GET":
            self.events["rest_requests"] += 1
            return self._rest_history_trades(query)
        if path == REST_INSTRUMENTS_PATH and request.method == "GET":
            self.events["rest_requests"] += 1
            return self._rest_instruments(query)
        if path == "/_sim/trades" and request.method == "GET":
            inst_id = (query.get("instId") or [""])[0]
            if inst_id not in self._markets:
                return json_response(404, {"error": f"Unknown instrument {inst_id!r}"})
            return json_response(200, {"instId": inst_id, "trades": self.sent_trades(inst_id)})
        if path in (PUBLIC_PATH, BUSINESS_PATH, PRIVATE_PATH):
            return None  # websockets answers 426 Upgrade Required
        return json_response(404, {"code": "404", "msg": "Not Found", "data": []})

    def _rest_books(self, query: dict[str, list[str]]) -> Response:
        inst_id = (query.get("instId") or [""])[0]
        if not inst_id:
            return json_response(
                400, {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []}
            )
        depth = (query.get("sz") or ["1"])[0]
        if not depth.isdigit() or not 1 <= int(depth) <= BOOK_LEVELS:
            return _param_error("sz")
        market = self._markets.get(inst_id)
        if market is None:
            return json_response(
                200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
            )
        return json_response(200, {"code": "0", "msg": "", "data": [market.rest_book(int(depth))]})

    def _rest_trades(self, query: dict[str, list[str]]) -> Response:
        """OKX's recent trades of an instrument, newest first."""
        inst_id = (query.get("instId") or [""])[0]
        if not inst_id:
            return json_response(
                400, {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []}
            )
        limit = (query.get("limit") or [str(REST_TRADES_DEFAULT)])[0]
        if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= REST_TRADES_MAX:
            return _param_error("limit")
        market = self._markets.get(inst_id)
        if market is None:
            return json_response(
                200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
            )
        newest = market.generated[-int(limit) :]
        data = [_trade_item(inst_id, record) for record in reversed(newest)]
        return json_response(200, {"code": "0", "msg": "", "data": data})

    def _rest_history_trades(self, query: dict[str, list[str]]) -> Response:
        """OKX's older trades, a page at a time, newest first: `type` 1 pages by tradeId
        (the default), 2 by ts; `after` gives the page just older than it, `before` the
        page just newer; `limit` up to 100."""
        inst_id = (query.get("instId") or [""])[0]
        if not inst_id:
            return json_response(
                400, {"code": "50014", "msg": "Parameter instId can not be empty.", "data": []}
            )
        params = {name: (query.get(name) or [""])[0] for name in ("type", "after", "before")}
        limit = (query.get("limit") or [str(REST_HISTORY_TRADES_MAX)])[0]
        for name, value in (*params.items(), ("limit", limit)):
            if value and not (value.isascii() and value.isdigit()):
                return _param_error(name)
        if params["type"] not in ("", "1", "2"):
            return _param_error("type")
        if not 1 <= int(limit) <= REST_HISTORY_TRADES_MAX:
            return _param_error("limit")
        if params["type"] == "2" and params["before"]:
            return _param_error("before")  # OKX pages newer by tradeId only
        market = self._markets.get(inst_id)
        if market is None:
            return json_response(
                200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
            )
        field = 4 if params["type"] == "2" else 0  # ts or tradeId in a record
        trades = market.generated
        if params["after"]:
            end = bisect.bisect_left(trades, int(params["after"]), key=itemgetter(field))
            page = trades[max(0, end - int(limit)) : end]
        elif params["before"]:
            start = bisect.bisect_right(trades, int(params["before"]), key=itemgetter(field))
            page = trades[start : start + int(limit)]
        else:
            page = trades[-int(limit) :]
        data = [_trade_item(inst_id, record) for record in reversed(page)]
        return json_response(200, {"code": "0", "msg": "", "data": data})

    def _rest_instruments(self, query: dict[str, list[str]]) -> Response:
        """OKX's instrument list of one instType (every market this simulator serves of that
        type), or the one instrument `instId` names."""
        inst_type = (query.get("instType") or [""])[0]
        if not inst_type:
            return json_response(
                400, {"code": "50014", "msg": "Parameter instType can not be empty.", "data": []}
            )
        if inst_type not in INST_TYPES:
            return _param_error("instType")
        inst_id = (query.get("instId") or [""])[0]
        items = [
            _instrument_item(market.instrument)
            for market in self._markets.values()
            if market.instrument.inst_type == inst_type
            and (not inst_id or market.instrument.inst_id == inst_id)
        ]
        if inst_id and not items:
            return json_response(
                200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
            )
        return json_response(200, {"code": "0", "msg": "", "data": items})


def _instrument_item(instrument: Instrument) -> dict[str, str]:
    """An instrument as GET /api/v5/public/instruments lists it."""
    parts = instrument.inst_id.split("-")
    spot = instrument.inst_type == "SPOT"
    family = "" if spot else f"{parts[0]}-{parts[1]}"
    return {
        "instType": instrument.inst_type,
        "instId": instrument.inst_id,
        "uly": family,
        "instFamily": family,
        "baseCcy": parts[0] if spot else "",
        "quoteCcy": parts[1] if spot else "",
        "settleCcy": ""
        if spot
        else (parts[0] if instrument.contract_type == "inverse" else parts[1]),
        "ctVal": "" if spot else decimal_str(instrument.contract_value),
        "ctValCcy": ""
        if spot
        else (parts[1] if instrument.contract_type == "inverse" else parts[0]),
        "ctType": instrument.contract_type,
        "tickSz": decimal_str(instrument.tick_size),
        "lotSz": decimal_str(instrument.lot_size),
        "minSz": decimal_str(instrument.lot_size),
        "state": "live",
        "listTime": "1606468572000",
    }


def api_key_from_env(names: str, environ: dict[str, str] | None = None) -> ApiKey:
    """An ApiKey from "KEY_ENV,SECRET_ENV,PASSPHRASE_ENV"; ValueError naming what is missing."""
    environ = os.environ if environ is None else environ
    parts = [part.strip() for part in names.split(",")]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--api-key wants KEY_ENV,SECRET_ENV,PASSPHRASE_ENV, not {names!r}")
    missing = [name for name in parts if not environ.get(name)]
    if missing:
        raise ValueError(f"environment variable {missing[0]} is not set")
    return ApiKey(*(environ[name] for name in parts))


def _param_error(name: str) -> Response:
    return json_response(200, {"code": "51000", "msg": f"Parameter {name} error", "data": []})


def _trade_item(inst_id: str, record: tuple[int, str, str, str, int]) -> dict[str, str]:
    """A trade as OKX's trades channel and REST recent trades carry it."""
    trade_id, px, sz, side, ts = record
    return {
        "instId": inst_id,
        "tradeId": str(trade_id),
        "px": px,
        "sz": sz,
        "side": side,
        "ts": str(ts),
        "count": "1",
        "source": "0",
    }
