"""A Binance spot simulator on loopback: raw and combined streams, live SUBSCRIBE, the REST
endpoints a collector uses and a control API on one port, fed by the seeded market
generator, with injectable faults.

What a collector sees is Binance's: `/ws/<stream>` and `/stream?streams=a/b` (payloads
wrapped as {"stream": ..., "data": ...}), SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS
answered by {"result": ..., "id": N} or {"code": 2, "msg": "Invalid request: ...", "id": N},
at most 5 incoming messages a second and 1024 streams a connection (more closes the
connection), a ping frame every 20 s and a close when no pong comes within a minute, and
the cut after 24 hours (both compressible for tests). Streams: trade, aggTrade, depth and
depth@100ms (U/u update ids), depth5/10/20 (@100ms), bookTicker, ticker, kline_<interval>.
REST: /api/v3/depth, /api/v3/trades, /api/v3/historicalTrades, /api/v3/aggTrades,
/api/v3/exchangeInfo, /api/v3/ping, /api/v3/time, with Binance's error answers (-1121
"Invalid symbol.", -1100, -1102) and its limits (HTTP 429, and 418 for a banned IP, both
with Retry-After). Control: POST /_sim/fault, GET /_sim/stats, GET /_sim/trades?symbol=X.
"""

from __future__ import annotations

import asyncio
import bisect
import http
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, ClassVar

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from collectors.simulators.market import (
    Instrument,
    MarketGenerator,
    Tape,
    decimal_str,
    listed_spot,
    spot_instrument,
    wall_clock_ms,
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

WS_PATH = "/ws"
STREAM_PATH = "/stream"
BOOK_LEVELS = 1000  # the generator's depth; the REST book serves up to this many
MAX_STREAMS = 1024  # a connection's subscriptions
MAX_MESSAGES_PER_SECOND = 5  # incoming messages a connection may send
CONNECTION_LIFETIME = 24 * 3600.0
PING_INTERVAL = 20.0
PONG_TIMEOUT = 60.0
REQUEST_WEIGHT_PER_MINUTE = 6000
FAULT_KINDS = (
    *COMMON_FAULTS,
    "burst",
    "cut",
    "depth_gap",
    "ip_ban",
    "pause",
    "rate_limit",
    "resume",
    "shutdown",
)
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MONDAY = 4 * DAY  # 1970-01-05, the first Monday after the epoch
KLINE_WIDTHS = {
    "1s": SECOND, "1m": MINUTE, "3m": 3 * MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE,
    "30m": 30 * MINUTE, "1h": HOUR, "2h": 2 * HOUR, "4h": 4 * HOUR, "6h": 6 * HOUR,
    "8h": 8 * HOUR, "12h": 12 * HOUR, "1d": DAY, "3d": 3 * DAY, "1w": 7 * DAY,
}  # fmt: skip
KLINE_INTERVALS = frozenset([*KLINE_WIDTHS, "1M"])
DIFF_DEPTH = {"depth": 1.0, "depth@100ms": 0.1}  # stream -> seconds between pushes
PARTIAL_DEPTH = {
    f"depth{levels}{speed}": (levels, 0.1 if speed else 1.0)
    for levels in (5, 10, 20)
    for speed in ("", "@100ms")
}
PLAIN_STREAMS = frozenset({"trade", "aggTrade", "bookTicker", "ticker"})
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,20}")
DEFAULT_INSTRUMENTS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
KNOWN_INSTRUMENTS = {
    item.inst_id: item
    for item in (
        spot_instrument("BTCUSDT", "0.01", "0.00001", "42000", 2_000),
        spot_instrument("ETHUSDT", "0.01", "0.0001", "2500", 2_000),
        spot_instrument("BNBUSDT", "0.01", "0.001", "300", 1_000),
    )
}
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}

_MALFORMED = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","p":null,"m":"maybe"}}',
    Binary(b"\x00\xff\xfe\x80 not a frame \x1f\x8b\x08\x00"),
    b"[1,2,3]",
)


def binance_instrument(symbol: str | Instrument) -> Instrument:
    """The known instrument of that symbol, or a plausible spot one for any valid symbol."""
    if isinstance(symbol, Instrument):
        return symbol
    if symbol in KNOWN_INSTRUMENTS:
        return KNOWN_INSTRUMENTS[symbol]
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(f"Not a Binance symbol: {symbol!r}")
    return spot_instrument(symbol)


def kline_bounds(interval: str, ts: int) -> tuple[int, int]:
    """Start and end (epoch ms) of the UTC kline of that interval holding `ts`."""
    if interval == "1M":
        moment = datetime.fromtimestamp(ts / 1000, UTC)
        start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000
    width = KLINE_WIDTHS[interval]
    origin = MONDAY if interval == "1w" else 0
    start = ts - (ts - origin) % width
    return start, start + width


def stream_channel(stream: str) -> tuple[str, str] | None:
    """ "btcusdt@depth@100ms" -> ("BTCUSDT", "depth@100ms"); None for no stream of ours."""
    symbol, _, channel = stream.partition("@")
    if not symbol or symbol != symbol.lower() or not SYMBOL_PATTERN.fullmatch(symbol.upper()):
        return None
    known = (
        channel in PLAIN_STREAMS
        or channel in DIFF_DEPTH
        or channel in PARTIAL_DEPTH
        or (channel.startswith("kline_") and channel[6:] in KLINE_INTERVALS)
    )
    return (symbol.upper(), channel) if known else None


class _Market(MarketFeed):
    """One symbol: its subscribers, its trades and aggregates, its book's update id."""

    sim: BinanceSimulator

    def __init__(self, sim: BinanceSimulator, instrument: Instrument) -> None:
        super().__init__(sim, instrument.inst_id)
        self.instrument = instrument
        self.symbol = instrument.inst_id
        self.prefix = self.symbol.lower() + "@"
        self.tape = Tape(False)
        # (id, px, sz, side, ts): every trade made, and those sent on some trade stream
        self.generated: list[tuple[int, str, str, str, int]] = []
        self.sent: list[tuple[int, str, str, str, int]] = []
        # (agg id, px, sz, side, ts, first id, last id): every aggregate, and those sent
        self.aggregates: list[tuple[int, str, str, str, int, int, int]] = []
        self.aggs_sent: list[tuple[int, str, str, str, int, int, int]] = []
        self.next_agg_id = sim.clock() * 400  # below the trade ids, rising with the clock
        self.update_id = sim.clock() * 10
        self.pending: dict[str, dict[tuple[str, int], None]] = {s: {} for s in DIFF_DEPTH}
        self.pushed_id = dict.fromkeys(DIFF_DEPTH, self.update_id)
        self.best_sig: Any = None
        self.klines: dict[str, int] = {}  # interval -> start of the kline being pushed

    def trade_clients(self) -> set[Client]:
        return self.subs["trade"] | self.subs["aggTrade"]

    async def _run_pushes(self) -> None:
        sim, loop = self.sim, self.sim.loop
        due: dict[str, float] = defaultdict(float)
        while True:
            await sim.unstalled.wait()
            await self.resumed.wait()
            now = loop.time()
            for stream, every in DIFF_DEPTH.items():
                if now >= due[stream]:
                    self.push_diff(stream)
                    due[stream] = now + every
            for stream, (levels, every) in PARTIAL_DEPTH.items():
                if self.subs[stream] and now >= due[stream]:
                    self.push_partial(stream, levels)
                    due[stream] = now + every
            if now >= due["ticker"]:
                self.push_ticker()
                due["ticker"] = now + sim.ticker_interval
            if now >= due["kline"]:
                self.push_klines()
                due["kline"] = now + sim.kline_interval
            self.push_book_ticker()
            await asyncio.sleep(0.05)

    # sending

    def send(self, channel: str, data: bytes, to: Iterable[Client] | None = None) -> None:
        clients = list(self.subs[channel] if to is None else to)
        if not clients:
            return
        combined = b'{"stream":"' + (self.prefix + channel).encode() + b'","data":' + data + b"}"
        for client in clients:
            client.send(combined if client.path == STREAM_PATH else data)
        self.sim.counts[channel] += len(clients)

    # trades

    def emit_trades(self, count: int) -> None:
        """Trades, and their aggregates (a run of one taker's fills at one price), written at
        once to every subscriber: one transport write per client per batch."""
        generator, symbol = self.sim.generator, self.symbol
        trade_subs = [c for c in self.subs["trade"] if c.is_open()]
        agg_subs = [c for c in self.subs["aggTrade"] if c.is_open()]
        depth_pending = [p for s, p in self.pending.items() if self.subs[s]]
        trades: list = []
        for _ in range(count):
            step = generator.next_trade(symbol)
            trade = step.trade
            self.update_id += len(step.changes)
            for pending in depth_pending:
                for change in step.changes:
                    pending[(change.side, change.ticks)] = None
            self.tape.add(trade)
            record = (trade.trade_id, trade.px, trade.sz, trade.side, trade.ts)
            self.generated.append(record)
            trades.append(trade)
        aggregates = self._aggregate(trades)
        if trade_subs:
            self._write(trade_subs, "trade", [self._trade_json(t) for t in trades])
            self.sent.extend(self.generated[-len(trades) :])
        if agg_subs:
            self._write(agg_subs, "aggTrade", [self._agg_json(a) for a in aggregates])
            self.aggs_sent.extend(aggregates)

    def _aggregate(self, trades: list) -> list[tuple[int, str, str, str, int, int, int]]:
        made: list = []
        run: list = []
        for trade in [*trades, None]:
            if run and (trade is None or (trade.px, trade.side) != (run[0].px, run[0].side)):
                lots = sum(t.lots for t in run)
                size = self.sim.generator.size_str(self.symbol, lots)
                first = run[0]
                made.append(
                    (self.next_agg_id, first.px, size, first.side, run[-1].ts, first.trade_id,
                     run[-1].trade_id)
                )  # fmt: skip
                self.next_agg_id += 1
                run = []
            if trade is not None:
                run.append(trade)
        self.aggregates.extend(made)
        return made

    def _trade_json(self, trade: Any) -> bytes:
        maker = "true" if trade.side == "sell" else "false"  # the buyer made: a taker sold
        return (
            f'{{"e":"trade","E":{trade.ts},"s":"{self.symbol}","t":{trade.trade_id},'
            f'"p":"{trade.px}","q":"{trade.sz}","T":{trade.ts},"m":{maker},"M":true}}'
        ).encode()

    def _agg_json(self, agg: tuple) -> bytes:
        agg_id, px, sz, side, ts, first, last = agg
        maker = "true" if side == "sell" else "false"
        return (
            f'{{"e":"aggTrade","E":{ts},"s":"{self.symbol}","a":{agg_id},"p":"{px}",'
            f'"q":"{sz}","f":{first},"l":{last},"T":{ts},"m":{maker},"M":true}}'
        ).encode()

    def _write(self, clients: list[Client], channel: str, payloads: list[bytes]) -> None:
        head = b'{"stream":"' + (self.prefix + channel).encode() + b'","data":'
        combined = [head + data + b"}" for data in payloads]
        for client in clients:
            client.out.extend(combined if client.path == STREAM_PATH else payloads)
            client.flush()
        self.sim.counts[channel] += len(payloads) * len(clients)

    # books

    def push_diff(self, stream: str) -> None:
        """The levels changed since this stream's last push: {"e":"depthUpdate","U","u",...}."""
        pending = self.pending[stream]
        if not self.subs[stream]:
            pending.clear()
            self.pushed_id[stream] = self.update_id
            return
        if not pending:
            return
        first = self.pushed_id[stream] + 1
        if self.sim.take_fault("depth_gap", self.symbol):
            first += 1  # an update id the subscribers never see
        generator = self.sim.generator
        sides: dict[str, list] = {"bids": [], "asks": []}
        for side, ticks in sorted(pending, key=itemgetter(1)):
            level = generator.level(self.symbol, side, ticks)
            size = level[1] if level is not None else "0"
            sides[side].append([generator.price_str(self.symbol, ticks), size])
        sides["bids"].reverse()
        data = dumps(
            {
                "e": "depthUpdate",
                "E": self.sim.clock(),
                "s": self.symbol,
                "U": first,
                "u": self.update_id,
                "b": sides["bids"],
                "a": sides["asks"],
            }
        )
        pending.clear()
        self.pushed_id[stream] = self.update_id
        self.send(stream, data)

    def book(self, depth: int) -> dict[str, Any]:
        book = self.sim.generator.book(self.symbol, depth)
        return {
            "lastUpdateId": self.update_id,
            "bids": [[px, sz] for px, sz, _ in book["bids"]],
            "asks": [[px, sz] for px, sz, _ in book["asks"]],
        }

    def push_partial(self, stream: str, levels: int, to: Iterable[Client] | None = None) -> None:
        self.send(stream, dumps(self.book(levels)), to)

    def push_book_ticker(self, to: Iterable[Client] | None = None) -> None:
        if not self.subs["bookTicker"] and to is None:
            return
        bid, ask = self.sim.generator.best(self.symbol)
        if to is None and (bid, ask) == self.best_sig:
            return
        self.best_sig = (bid, ask)
        data = {
            "u": self.update_id,
            "s": self.symbol,
            "b": bid[0],
            "B": bid[1],
            "a": ask[0],
            "A": ask[1],
        }
        self.send("bookTicker", dumps(data), to)

    # tickers and klines

    def push_ticker(self, to: Iterable[Client] | None = None) -> None:
        if not self.subs["ticker"] and to is None:
            return
        now = self.sim.clock()
        px = self.sim.generator.price_str
        bid, ask = self.sim.generator.best(self.symbol)
        last = self.tape.last
        day = self.tape.ohlcv(now - now % MINUTE - DAY + MINUTE, now - now % MINUTE + MINUTE)
        last_px = last.px if last else bid[0]
        if day:
            open_, high, low = (px(self.symbol, ticks) for ticks in day[:3])
            volume, quote = self._volumes(day)
            change = Decimal(last_px) - Decimal(open_)
            percent = change / Decimal(open_) * 100
            average = Decimal(quote) / Decimal(volume) if Decimal(volume) else Decimal(last_px)
            count = day[6]
        else:
            open_ = high = low = last_px
            volume = quote = "0"
            change = percent = Decimal(0)
            average, count = Decimal(last_px), 0
        last_id = self.generated[-1][0] if self.generated else -1
        data = {
            "e": "24hrTicker",
            "E": now,
            "s": self.symbol,
            "p": decimal_str(change) or "0",
            "P": f"{percent:.3f}",
            "w": decimal_str(average.quantize(Decimal("0.00000001"))),
            "x": open_,
            "c": last_px,
            "Q": last.sz if last else "0",
            "b": bid[0],
            "B": bid[1],
            "a": ask[0],
            "A": ask[1],
            "o": open_,
            "h": high,
            "l": low,
            "v": volume,
            "q": quote,
            "O": now - DAY,
            "C": now,
            "F": last_id - count + 1 if count else -1,
            "L": last_id if count else -1,
            "n": count,
        }
        self.send("ticker", dumps(data), to)

    def _volumes(self, bar: list) -> tuple[str, str]:
        instrument = self.instrument
        size = Decimal(bar[4]) * instrument.lot_size
        quote = Decimal(bar[5]) * instrument.tick_size * instrument.lot_size
        return decimal_str(size), decimal_str(quote)

    def kline(self, interval: str, start: int, closed: bool) -> bytes | None:
        end = kline_bounds(interval, start)[1]
        bar = self.tape.ohlcv(start, end)
        last = self.tape.last
        if bar is None and last is None:
            return None
        if bar is None:
            o = h = l = c = last.px  # noqa: E741 - Binance's letters
            volume = quote = "0"
            count, first_id, last_id = 0, -1, -1
        else:
            o, h, l, c = (self.sim.generator.price_str(self.symbol, t) for t in bar[:4])  # noqa: E741
            volume, quote = self._volumes(bar)
            count = bar[6]
            index = bisect.bisect_left(self.generated, start, key=itemgetter(4))
            first_id = self.generated[index][0] if index < len(self.generated) else -1
            last_id = first_id + count - 1
        return dumps(
            {
                "e": "kline",
                "E": self.sim.clock(),
                "s": self.symbol,
                "k": {
                    "t": start, "T": end - 1, "s": self.symbol, "i": interval, "f": first_id,
                    "L": last_id, "o": o, "c": c, "h": h, "l": l, "v": volume, "n": count,
                    "x": closed, "q": quote, "V": "0", "Q": "0", "B": "0",
                },
            }
        )  # fmt: skip

    def push_klines(self) -> None:
        """Each subscribed interval: the closed kline (x true) once its interval is over,
        then the open one."""
        now = self.sim.clock()
        for channel, subscribers in list(self.subs.items()):
            if not channel.startswith("kline_") or not subscribers:
                continue
            interval = channel[6:]
            start = kline_bounds(interval, now)[0]
            pushing = self.klines.get(interval)
            if pushing is not None and pushing != start:
                final = self.kline(interval, pushing, True)
                if final is not None:
                    self.send(channel, final)
            self.klines[interval] = start
            current = self.kline(interval, start, False)
            if current is not None:
                self.send(channel, current)

    def push_first(self, channel: str, client: Client) -> None:
        """What a new subscriber gets at once, as Binance sends the current state soon."""
        if channel in PARTIAL_DEPTH:
            self.push_partial(channel, PARTIAL_DEPTH[channel][0], [client])
        elif channel == "ticker":
            self.push_ticker([client])
        elif channel == "bookTicker":
            self.push_book_ticker([client])


class BinanceSimulator(SimulatorServer):
    """Binance spot's market streams and public REST on one loopback port. `start()` runs it
    on a background thread; `serve_forever()` in the caller's event loop."""

    name: ClassVar[str] = "Binance simulator"
    fault_kinds: ClassVar[tuple[str, ...]] = FAULT_KINDS
    malformed_frames: ClassVar[tuple[bytes, ...]] = _MALFORMED

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        rate: float = 10.0,
        instruments: Iterable[str | Instrument] | None = None,
        idle_timeout: float = 30.0,
        *,
        ping_interval: float = PING_INTERVAL,
        pong_timeout: float = PONG_TIMEOUT,
        connection_lifetime: float = CONNECTION_LIFETIME,
        ticker_interval: float = 1.0,
        kline_interval: float = 2.0,
        shutdown_delay: float = 2.0,
        linger: float = 0.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        # Binance closes a connection that does not answer its pings, not a quiet one
        del idle_timeout
        super().__init__(host, port, idle_timeout=max(connection_lifetime, 60.0) * 2)
        self.protocol_ping_interval = ping_interval
        self.protocol_ping_timeout = pong_timeout
        self.connection_lifetime = connection_lifetime
        self.seed = seed
        self.rate = float(rate)
        self.ticker_interval = ticker_interval
        self.kline_interval = kline_interval
        self.shutdown_delay = shutdown_delay
        self.linger = linger
        self.clock = clock or wall_clock_ms
        # The listed spot markets come last: the others keep the order they had.
        chosen = [*DEFAULT_INSTRUMENTS, *(instruments or ())]
        chosen += [item for item in listed_spot("") if item.inst_id not in KNOWN_INSTRUMENTS]
        self.generator = MarketGenerator(
            seed, [binance_instrument(item) for item in chosen], self.clock, BOOK_LEVELS
        )
        self._markets = {
            symbol: _Market(self, instrument)
            for symbol, instrument in self.generator.instruments.items()
        }
        self._faults: dict[tuple[str, str], int] = defaultdict(int)
        self._ban_until = 0.0
        self._weight: list[int] = [0, 0]  # [minute, weight used in it]
        self._lifetimes: dict[Client, asyncio.TimerHandle] = {}
        self._messages: dict[Client, list[float]] = {}
        self._closing: set[asyncio.Future] = set()

    # running it

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        parser.add_argument(
            "--connection-lifetime",
            type=float,
            default=None,
            help="Binance: seconds before a connection is cut (24 h).",
        )
        parser.add_argument(
            "--ping-interval", type=float, default=None, help="Binance: seconds between pings."
        )
        parser.add_argument(
            "--pong-timeout", type=float, default=None, help="Binance: seconds a pong may take."
        )

    @classmethod
    def options_from(cls, options: dict[str, Any]) -> dict[str, Any]:
        names = {
            "connection_lifetime": CONNECTION_LIFETIME,
            "ping_interval": PING_INTERVAL,
            "pong_timeout": PONG_TIMEOUT,
        }
        return {name: options.get(name) or default for name, default in names.items()}

    def describe(self) -> str:
        return f"Simulating Binance: streams {self.stream_url} rest {self.rest_url}"

    @property
    def stream_url(self) -> str:
        return f"ws://{self.host}:{self.port}{STREAM_PATH}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    def market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise KeyError(f"Unknown symbol {symbol!r}")
        return market

    def sent_trades(self, symbol: str) -> list[dict[str, Any]]:
        """Every trade sent on a trade stream of that symbol, in order, as REST has them."""
        return [_trade_item(record) for record in list(self.market(symbol).sent)]

    def generated_trades(self, symbol: str) -> list[dict[str, Any]]:
        """Every trade of that symbol, sent or not; the REST trades are the newest of these."""
        return [_trade_item(record) for record in list(self.market(symbol).generated)]

    def sent_aggregates(self, symbol: str) -> list[dict[str, Any]]:
        """Every aggregate sent on an aggTrade stream of that symbol, as REST has them."""
        return [_agg_item(record) for record in list(self.market(symbol).aggs_sent)]

    def generated_aggregates(self, symbol: str) -> list[dict[str, Any]]:
        return [_agg_item(record) for record in list(self.market(symbol).aggregates)]

    def check_fault(self, fault: Fault) -> None:
        if fault.inst_id is not None and fault.inst_id not in self._markets:
            raise ValueError(f"Unknown symbol {fault.inst_id!r}")
        if fault.kind in ("pause", "resume") and fault.inst_id is None:
            raise ValueError(f"A {fault.kind} fault needs an inst_id")

    def extra_stats(self) -> dict[str, Any]:
        markets = self._markets.items()
        return {
            "trades_sent": {symbol: len(m.sent) for symbol, m in markets},
            "aggregates_sent": {symbol: len(m.aggs_sent) for symbol, m in markets},
            "paused": sorted(symbol for symbol, m in markets if m.paused),
            "lifetime_cuts": self.events["lifetime_cuts"],
            "rate_limit_closes": self.events["rate_limit_closes"],
            "rest_refusals": self.events["rest_refusals"],
        }

    def on_shutdown(self) -> None:
        for market in self._markets.values():
            for task in market.tasks:
                task.cancel()

    # faults

    def apply_fault(self, fault: Fault) -> None:
        key = fault.inst_id or "*"
        if fault.kind == "depth_gap":
            self._faults[("depth_gap", key)] += fault.count or 1
        elif fault.kind == "rate_limit":
            self._faults[("rate_limit", "*")] += fault.count or 1
            self._faults[("retry_after", "*")] = int(fault.seconds or 1)
        elif fault.kind == "ip_ban":
            self._ban_until = self.loop.time() + (60.0 if fault.seconds is None else fault.seconds)
        elif fault.kind == "burst":
            for market in self._markets.values():
                if fault.inst_id in (None, market.symbol) and (fault.inst_id or market.tasks):
                    market.emit_trades(fault.count or 100)
        elif fault.kind == "shutdown":
            clients = self.clients()
            for client in clients:
                self._send_event(client, {"e": "serverShutdown", "E": self.clock()})
            delay = self.shutdown_delay if fault.seconds is None else fault.seconds
            self.loop.call_later(delay, lambda: [self._cut(c) for c in clients])
        elif fault.kind == "cut":
            for client in self.clients():
                self._cut(client)
        else:
            self._markets[fault.inst_id].set_paused(fault.kind == "pause")

    def take_fault(self, kind: str, symbol: str) -> bool:
        for key in ((kind, symbol), (kind, "*")):
            if self._faults[key] > 0:
                self._faults[key] -= 1
                return True
        return False

    def _send_event(self, client: Client, data: dict) -> None:
        payload = dumps(data)
        if client.path == STREAM_PATH:
            payload = b'{"stream":"!serverShutdown","data":' + payload + b"}"
        client.send(payload)

    def _cut(self, client: Client) -> None:
        """Close as Binance does at the 24-hour mark."""
        if client.is_open():
            self.events["lifetime_cuts"] += 1
            self._close(client, 1000, "Connection lifetime reached")

    def _close(self, client: Client, code: int, reason: str) -> None:
        task = asyncio.ensure_future(client.conn.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # connections

    def on_connect(self, client: Client) -> None:
        self._messages[client] = []
        self._lifetimes[client] = self.loop.call_later(self.connection_lifetime, self._cut, client)
        path, query = client.path, client.conn.request.path.partition("?")[2]
        streams: list[str] = []
        if path.startswith(WS_PATH + "/"):
            streams = [path[len(WS_PATH) + 1 :]]
            client.path = WS_PATH
        elif path == STREAM_PATH:
            for part in query.split("&"):
                name, _, value = part.partition("=")
                if name == "streams" and value:
                    streams = value.split("/")
        for stream in streams:
            self._subscribe(client, stream)

    def on_disconnect(self, client: Client) -> None:
        handle = self._lifetimes.pop(client, None)
        if handle is not None:
            handle.cancel()
        self._messages.pop(client, None)
        for stream, _ in list(client.subs):
            self._unsubscribe(client, stream)

    # the WebSocket protocol

    def on_message(self, client: Client, message: str | bytes) -> None:
        if self._over_message_limit(client):
            return
        text = message if isinstance(message, str) else message.decode(errors="replace")
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            self._error(client, 3, f"Invalid JSON: {error}", None)
            return
        if not isinstance(request, dict):
            self._error(client, 2, "Invalid request: expected a JSON object", None)
            return
        request_id = request.get("id")
        if request_id is not None and (
            isinstance(request_id, bool) or not isinstance(request_id, int | str)
        ):
            self._error(client, 2, "Invalid request: request ID must be an unsigned integer", None)
            return
        method, params = request.get("method"), request.get("params", [])
        if method not in METHODS:
            self._error(
                client,
                2,
                f"Invalid request: unknown variant {method}, expected one of "
                + ", ".join(f"`{m}`" for m in METHODS),
                request_id,
            )
            return
        if method == "LIST_SUBSCRIPTIONS":
            self._answer(client, sorted(stream for stream, _ in client.subs), request_id)
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            self._property(client, method, params, request_id)
        else:
            self._subscription(client, method, params, request_id)

    def _over_message_limit(self, client: Client) -> bool:
        """More than 5 messages in a second closes the connection, as Binance does."""
        now = self.loop.time()
        times = [t for t in self._messages.get(client, []) if now - t < 1.0]
        times.append(now)
        self._messages[client] = times
        if len(times) <= MAX_MESSAGES_PER_SECOND:
            return False
        self.events["rate_limit_closes"] += 1
        log.warning("Binance simulator: %s sent over 5 messages a second", client.conn_id)
        self._close(client, 1008, "Too many requests")
        return True

    def _subscription(self, client: Client, method: str, params: Any, request_id: Any) -> None:
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            self._error(
                client, 2, "Invalid request: params must be an array of strings", request_id
            )
            return
        bad = [stream for stream in params if stream_channel(stream) is None]
        if bad:
            self._error(client, 2, f"Invalid request: invalid stream name {bad[0]}", request_id)
            return
        if method == "SUBSCRIBE":
            adding = {stream for stream in params} - {stream for stream, _ in client.subs}
            if len(client.subs) + len(adding) > MAX_STREAMS:
                self._error(
                    client,
                    2,
                    f"Invalid request: too many streams, at most {MAX_STREAMS} a connection",
                    request_id,
                )
                return
            self._answer(client, None, request_id)
            for stream in params:
                self._subscribe(client, stream)
        else:
            self._answer(client, None, request_id)
            for stream in params:
                self._unsubscribe(client, stream)

    def _property(self, client: Client, method: str, params: Any, request_id: Any) -> None:
        if not isinstance(params, list) or not params or params[0] != "combined":
            self._error(client, 0, "Unknown property", request_id)
        elif method == "GET_PROPERTY":
            self._answer(client, client.path == STREAM_PATH, request_id)
        elif len(params) < 2 or not isinstance(params[1], bool):
            self._error(client, 1, "Invalid value type: expected Boolean", request_id)
        else:
            client.path = STREAM_PATH if params[1] else WS_PATH
            self._answer(client, None, request_id)

    def _subscribe(self, client: Client, stream: str) -> None:
        parsed = stream_channel(stream)
        if parsed is None:
            return
        symbol, channel = parsed
        self.events["subscriptions"] += 1
        market = self._markets.get(symbol)
        client.subs.add((stream, symbol))
        if market is None:
            return  # Binance accepts a stream of a symbol it does not list, and sends nothing
        if client in market.subs[channel]:
            return
        if channel in DIFF_DEPTH and not market.subs[channel]:
            market.pending[channel].clear()
            market.pushed_id[channel] = market.update_id
        market.subs[channel].add(client)
        market.push_first(channel, client)
        market.activate()

    def _unsubscribe(self, client: Client, stream: str) -> None:
        parsed = stream_channel(stream)
        if parsed is None:
            return
        symbol, channel = parsed
        client.subs.discard((stream, symbol))
        market = self._markets.get(symbol)
        if market is not None:
            market.subs[channel].discard(client)
            market.deactivate_if_idle()

    def _answer(self, client: Client, result: Any, request_id: Any) -> None:
        client.send(dumps({"result": result, "id": request_id}))
        self.counts["answer"] += 1

    def _error(self, client: Client, code: int, msg: str, request_id: Any) -> None:
        self.events["bad_requests"] += 1
        log.warning("Binance simulator: error %s to %s: %s", code, client.conn_id, msg[:200])
        client.send(dumps({"code": code, "msg": msg, "id": request_id}))

    # REST on the same port

    def process_request(
        self, connection: Connection, request: Request, path: str, query: dict[str, list[str]]
    ) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if path in (STREAM_PATH, WS_PATH) or path.startswith(WS_PATH + "/"):
                return None
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        if path == "/_sim/trades" and request.method == "GET":
            symbol = (query.get("symbol") or [""])[0]
            if symbol not in self._markets:
                return json_response(404, {"error": f"Unknown symbol {symbol!r}"})
            return json_response(200, {"symbol": symbol, "trades": self.sent_trades(symbol)})
        route = REST_ROUTES.get(path)
        if route is None or request.method != "GET":
            return json_response(404, {"code": -1, "msg": "Not Found"})
        self.events["rest_requests"] += 1
        refused = self._refusal(route[1])
        if refused is not None:
            return refused
        params = {name: values[0] for name, values in query.items() if values}
        return route[0](self, params)

    def _refusal(self, weight: int) -> Response | None:
        """A ban (418), an injected or a real "too much weight" (429), with Retry-After."""
        now = self.loop.time()
        if now < self._ban_until:
            wait = int(self._ban_until - now) + 1
            until = self.clock() + wait * 1000
            return self._refuse(
                418, wait, f"Way too much request weight used; IP banned until {until}."
            )
        minute = int(self.clock() // MINUTE)
        if self._weight[0] != minute:
            self._weight = [minute, 0]
        self._weight[1] += weight
        if self.take_fault("rate_limit", "*"):
            return self._refuse(429, self._faults[("retry_after", "*")] or 1, WEIGHT_MESSAGE)
        if self._weight[1] > REQUEST_WEIGHT_PER_MINUTE:
            wait = (minute + 1) * MINUTE // 1000 - self.clock() // 1000 + 1
            return self._refuse(429, wait, WEIGHT_MESSAGE)
        return None

    def _refuse(self, status: int, retry_after: int, message: str) -> Response:
        self.events["rest_refusals"] += 1
        response = json_response(status, {"code": -1003, "msg": message})
        headers = Headers([*response.headers.raw_items(), ("Retry-After", str(retry_after))])
        return Response(status, response.reason_phrase, headers, response.body)

    def _symbol_market(self, params: dict[str, str]) -> _Market | Response:
        symbol = params.get("symbol", "")
        if not symbol:
            return json_response(
                400,
                {
                    "code": -1102,
                    "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                    "malformed.",
                },
            )
        market = self._markets.get(symbol)
        return json_response(400, INVALID_SYMBOL) if market is None else market

    def _rest_depth(self, params: dict[str, str]) -> Response:
        market = self._symbol_market(params)
        if isinstance(market, Response):
            return market
        limit = _limit(params, 100, 5000)
        if isinstance(limit, Response):
            return limit
        return json_response(200, market.book(min(limit, BOOK_LEVELS)))

    def _rest_trades(self, params: dict[str, str]) -> Response:
        """The newest trades, oldest first."""
        market = self._symbol_market(params)
        if isinstance(market, Response):
            return market
        limit = _limit(params, 500, 1000)
        if isinstance(limit, Response):
            return limit
        return json_response(200, [_trade_item(r) for r in market.generated[-limit:]])

    def _rest_historical_trades(self, params: dict[str, str]) -> Response:
        """Trades from `fromId` on (or the newest), oldest first."""
        market = self._symbol_market(params)
        if isinstance(market, Response):
            return market
        limit = _limit(params, 500, 1000)
        if isinstance(limit, Response):
            return limit
        from_id = _number(params, "fromId")
        if isinstance(from_id, Response):
            return from_id
        trades = market.generated
        if from_id is None:
            page = trades[-limit:]
        else:
            start = bisect.bisect_left(trades, from_id, key=itemgetter(0))
            page = trades[start : start + limit]
        return json_response(200, [_trade_item(r) for r in page])

    def _rest_agg_trades(self, params: dict[str, str]) -> Response:
        """Aggregates from `fromId` on, or within startTime/endTime, or the newest."""
        market = self._symbol_market(params)
        if isinstance(market, Response):
            return market
        limit = _limit(params, 500, 1000)
        if isinstance(limit, Response):
            return limit
        numbers = {name: _number(params, name) for name in ("fromId", "startTime", "endTime")}
        for value in numbers.values():
            if isinstance(value, Response):
                return value
        aggs = market.aggregates
        if numbers["fromId"] is not None:
            start = bisect.bisect_left(aggs, numbers["fromId"], key=itemgetter(0))
            page = aggs[start : start + limit]
        elif numbers["startTime"] is not None or numbers["endTime"] is not None:
            low = bisect.bisect_left(aggs, numbers["startTime"] or 0, key=itemgetter(4))
            high = bisect.bisect_right(aggs, numbers["endTime"] or 2**62, key=itemgetter(4))
            page = aggs[low:high][:limit]
        else:
            page = aggs[-limit:]
        return json_response(200, [_agg_item(r) for r in page])

    def _rest_exchange_info(self, params: dict[str, str]) -> Response:
        symbol = params.get("symbol")
        markets = [self._markets.get(symbol)] if symbol else list(self._markets.values())
        if None in markets:
            return json_response(400, INVALID_SYMBOL)
        return json_response(
            200,
            {
                "timezone": "UTC",
                "serverTime": self.clock(),
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": REQUEST_WEIGHT_PER_MINUTE,
                    }
                ],
                "exchangeFilters": [],
                "symbols": [_symbol_info(m.instrument) for m in markets if m is not None],
            },
        )

    def _rest_ping(self, params: dict[str, str]) -> Response:
        return json_response(200, {})

    def _rest_time(self, params: dict[str, str]) -> Response:
        return json_response(200, {"serverTime": self.clock()})


WEIGHT_MESSAGE = (
    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
# path -> (handler, request weight)
REST_ROUTES: dict[str, tuple[Callable[[BinanceSimulator, dict[str, str]], Response], int]] = {
    "/api/v3/depth": (BinanceSimulator._rest_depth, 50),
    "/api/v3/trades": (BinanceSimulator._rest_trades, 25),
    "/api/v3/historicalTrades": (BinanceSimulator._rest_historical_trades, 25),
    "/api/v3/aggTrades": (BinanceSimulator._rest_agg_trades, 4),
    "/api/v3/exchangeInfo": (BinanceSimulator._rest_exchange_info, 20),
    "/api/v3/ping": (BinanceSimulator._rest_ping, 1),
    "/api/v3/time": (BinanceSimulator._rest_time, 1),
}


def _limit(params: dict[str, str], default: int, most: int) -> int | Response:
    """`limit`, at most `most` (Binance serves its most for a larger one)."""
    value = _number(params, "limit")
    if isinstance(value, Response):
        return value
    return default if value is None or value == 0 else min(value, most)


def _number(params: dict[str, str], name: str) -> int | Response | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        return json_response(
            400,
            {
                "code": -1100,
                "msg": f"Illegal characters found in parameter '{name}'; legal range is "
                "'^[0-9]{1,20}$'.",
            },
        )
    return int(value)


def _trade_item(record: tuple[int, str, str, str, int]) -> dict[str, Any]:
    """A trade as /api/v3/trades and /api/v3/historicalTrades answer it."""
    trade_id, px, sz, side, ts = record
    return {
        "id": trade_id,
        "price": px,
        "qty": sz,
        "quoteQty": decimal_str(Decimal(px) * Decimal(sz)),
        "time": ts,
        "isBuyerMaker": side == "sell",
        "isBestMatch": True,
    }


def _agg_item(record: tuple[int, str, str, str, int, int, int]) -> dict[str, Any]:
    """An aggregate as /api/v3/aggTrades answers it."""
    agg_id, px, sz, side, ts, first, last = record
    return {"a": agg_id, "p": px, "q": sz, "f": first, "l": last, "T": ts,
            "m": side == "sell", "M": True}  # fmt: skip


def _symbol_info(instrument: Instrument) -> dict[str, Any]:
    symbol = instrument.inst_id
    quote = next((q for q in ("USDT", "USDC", "BTC", "ETH", "BNB") if symbol.endswith(q)), "")
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": symbol[: len(symbol) - len(quote)] if quote else symbol,
        "quoteAsset": quote,
        "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": decimal_str(instrument.tick_size)},
            {"filterType": "LOT_SIZE", "stepSize": decimal_str(instrument.lot_size)},
        ],
    }
