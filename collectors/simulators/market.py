"""A seeded, deterministic market for the exchange simulators: per instrument a price walk,
its trades, and the order-book changes those trades and the other quotes make.

Prices are kept as whole ticks and sizes as whole lots (exact integer arithmetic on the
instrument's decimal grid) and leave as decimal strings, the way exchanges send them.
Each instrument draws from its own random stream seeded by (seed, instId), so its sequence
does not depend on which other instruments exist or how the caller interleaves them.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

TRADE_SHARE = 0.5  # share of market events that are trades; the rest only move quotes
TOP_LEVELS = 20  # quotes are resized and cancelled within this many levels of the best
MAX_ORDERS = 20
SECOND = 1000  # milliseconds
MINUTE = 60 * SECOND
MINUTE_RETENTION = 32 * 24 * 60 * MINUTE  # long enough for monthly candles of a month-long run
SECOND_RETENTION = 5 * MINUTE


def decimal_places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)


def fixed(units: int, places: int) -> str:
    """`units` * 10**-places as a decimal string without trailing zeros ("42219.9", "0.001")."""
    if places == 0:
        return str(units)
    digits = str(units).rjust(places + 1, "0")
    whole, frac = digits[:-places], digits[-places:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def decimal_str(value: Decimal) -> str:
    """A Decimal as exchanges write it: plain notation, no trailing zeros."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(slots=True, frozen=True)
class Instrument:
    """What the generator needs to know of an instrument: its grid and a starting price."""

    inst_id: str
    inst_type: str  # SPOT, SWAP, FUTURES, OPTION
    tick_size: Decimal
    lot_size: Decimal
    start_price: Decimal
    trade_lots: int  # mean trade size, in lots
    contract_value: Decimal | None = None  # derivatives: what one contract is worth...
    contract_type: str = ""  # ...in base currency ("linear") or in quote currency ("inverse")

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            places = decimal_places(getattr(self, name))
            if getattr(self, name) != Decimal(1).scaleb(-places):
                raise ValueError(f"{self.inst_id}: {name} must be a power of ten, at most 1")


def spot_instrument(
    symbol: str, tick: str = "0.01", lot: str = "0.0001", price: str = "100", trade_lots: int = 100
) -> Instrument:
    return Instrument(symbol, "SPOT", Decimal(tick), Decimal(lot), Decimal(price), trade_lots)


def contract_instrument(
    symbol: str, kind: str, tick: str, price: str, value: str, how: str
) -> Instrument:
    """A derivative of `value` base (how="linear") or quote ("inverse") currency a contract."""
    return Instrument(
        symbol, kind, Decimal(tick), Decimal(1), Decimal(price), 8, Decimal(value), how
    )


# The spot markets every simulator lists besides its own defaults, so that a pair an
# operator is likely to try exists: these bases against USDT and USDC, with a plausible
# price, tick and lot each (README, "Simulators").
LISTED_BASES: dict[str, tuple[str, str, str]] = {
    # base: (start price, tick, lot)
    "BTC": ("42000", "0.1", "0.00001"),
    "ETH": ("2500", "0.01", "0.0001"),
    "SOL": ("150", "0.01", "0.001"),
    "XRP": ("0.6", "0.0001", "0.1"),
    "DOGE": ("0.15", "0.00001", "1"),
    "ADA": ("0.45", "0.0001", "0.1"),
    "TRX": ("0.12", "0.00001", "1"),
    "TON": ("5.5", "0.001", "0.01"),
    "LTC": ("80", "0.01", "0.001"),
    "BCH": ("350", "0.1", "0.0001"),
    "DOT": ("7", "0.001", "0.01"),
    "LINK": ("15", "0.001", "0.01"),
    "AVAX": ("30", "0.01", "0.01"),
    "UNI": ("7.5", "0.001", "0.01"),
    "ATOM": ("9", "0.001", "0.01"),
    "XLM": ("0.11", "0.00001", "1"),
    "NEAR": ("5", "0.001", "0.01"),
    "APT": ("9", "0.001", "0.01"),
    "ARB": ("1.1", "0.0001", "0.1"),
    "OP": ("2.5", "0.001", "0.01"),
    "BNB": ("300", "0.01", "0.001"),
    "SHIB": ("0.00002", "0.00000001", "1"),
    "PEPE": ("0.00001", "0.000000001", "1"),
}
LISTED_QUOTES = ("USDT", "USDC")


def listed_spot(separator: str) -> list[Instrument]:
    """The listed spot markets, named BASE{separator}QUOTE (OKX: "-", Binance: "")."""
    return [
        spot_instrument(f"{base}{separator}{quote}", tick, lot, price)
        for base, (price, tick, lot) in LISTED_BASES.items()
        for quote in LISTED_QUOTES
    ]


def instrument_for(symbol: str) -> Instrument:
    """A plausible spot instrument for any symbol; an exchange's simulator gives the ones it
    knows their real grids (simulators.okx.okx_instrument)."""
    if not symbol or len(symbol) > 50:
        raise ValueError(f"Not an instrument id: {symbol!r}")
    return spot_instrument(symbol)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Trade:
    """One trade: price in ticks and size in lots, with their decimal strings."""

    inst_id: str
    trade_id: int
    ticks: int
    lots: int
    px: str
    sz: str
    side: str  # "buy" (lifted the best ask) or "sell" (hit the best bid)
    ts: int  # epoch milliseconds

    @property
    def price(self) -> Decimal:
        return Decimal(self.px)

    @property
    def size(self) -> Decimal:
        return Decimal(self.sz)


@dataclass(slots=True)
class LevelChange:
    """A price level's new state, in ticks and lots; zero lots means the level is gone."""

    side: str  # "bids" or "asks"
    ticks: int
    lots: int
    orders: int


@dataclass(slots=True)
class MarketStep:
    """What one or more market events did: at most one trade, and every level they changed."""

    trade: Trade | None
    changes: list[LevelChange] = field(default_factory=list)


class _Walk:
    """One instrument's book and trades, driven by its own random stream.

    Draws are `int(random() * n)` rather than randint: the same determinism at a fraction
    of the cost, which matters when the simulator sends tens of thousands of trades a second.
    """

    def __init__(self, instrument: Instrument, seed: int, depth: int, clock: Callable[[], int]):
        self.instrument = instrument
        self.clock = clock
        self.depth = depth
        self.random = random.Random(f"{seed}:{instrument.inst_id}").random
        self.price_places = decimal_places(instrument.tick_size)
        self.size_places = decimal_places(instrument.lot_size)
        self.prices: dict[int, str] = {}
        self.anchor = int(instrument.start_price / instrument.tick_size)
        self.level_lots = 20 * instrument.trade_lots
        self.trade_lots = 2 * instrument.trade_lots  # trade sizes are uniform up to this
        # Prices in ticks, both ascending: the best ask is asks[0], the best bid is bids[-1].
        self.asks: list[int] = []
        self.bids: list[int] = []
        self.levels: dict[str, dict[int, list[int]]] = {"asks": {}, "bids": {}}  # -> [lots, orders]
        self._build(self.anchor)
        # From the clock, not the seed: ids keep rising across restarts, as an exchange's do,
        # so a restarted simulator's trades are never taken for ones already stored.
        self.next_trade_id = self.clock() * 1000 + self._below(1000)

    def _below(self, n: int) -> int:
        return int(self.random() * n)

    def _level(self) -> list[int]:
        random = self.random
        return [1 + int(random() * self.level_lots), 1 + int(random() * MAX_ORDERS)]

    def _build(self, mid: int) -> None:
        price = mid + 1
        for _ in range(self.depth):
            self.asks.append(price)
            self.levels["asks"][price] = self._level()
            price += 1 + self._below(2)
        price = mid - 1
        for _ in range(self.depth):
            if price < 1:
                break
            self.bids.append(price)
            self.levels["bids"][price] = self._level()
            price -= 1 + self._below(2)
        self.bids.reverse()

    def px(self, ticks: int) -> str:
        text = self.prices.get(ticks)
        if text is None:
            text = self.prices[ticks] = fixed(ticks, self.price_places)
        return text

    def sz(self, lots: int) -> str:
        return fixed(lots, self.size_places)

    def step(self, changes: list[LevelChange]) -> Trade | None:
        if self.random() < TRADE_SHARE:
            return self._trade(changes)
        self._move_quotes(changes)
        return None

    def _buy_share(self) -> float:
        """Slightly more buying below the starting price and selling above it, so prices
        wander without drifting away over a long run."""
        mid = (self.asks[0] + self.bids[-1]) / 2 if self.bids else self.anchor / 2
        lean = (self.anchor - mid) / self.anchor * 2
        return 0.5 + max(-0.2, min(0.2, lean))

    def _trade(self, changes: list[LevelChange]) -> Trade:
        buy = self.random() < self._buy_share() or not self.bids
        side = "asks" if buy else "bids"
        ticks = self.asks[0] if buy else self.bids[-1]
        level = self.levels[side][ticks]
        lots = min(1 + int(self.random() * self.trade_lots), level[0])
        level[0] -= lots
        if level[0] == 0:
            self._remove(side, ticks, changes)
        else:
            changes.append(LevelChange(side, ticks, level[0], level[1]))
        trade_id = self.next_trade_id
        self.next_trade_id += 1
        return Trade(
            self.instrument.inst_id,
            trade_id,
            ticks,
            lots,
            self.px(ticks),
            self.sz(lots),
            "buy" if buy else "sell",
            self.clock(),
        )

    def _move_quotes(self, changes: list[LevelChange]) -> None:
        side = "bids" if self.random() < 0.5 else "asks"
        prices = self.bids if side == "bids" else self.asks
        roll = self.random()
        if roll < 0.5 or len(prices) < 2:
            self._quote(side, changes)
            return
        index = int(self.random() * min(TOP_LEVELS, len(prices)))
        ticks = prices[-1 - index] if side == "bids" else prices[index]
        if roll < 0.8:
            self._remove(side, ticks, changes)
        else:
            level = self.levels[side][ticks] = self._level()
            changes.append(LevelChange(side, ticks, level[0], level[1]))

    def _quote(self, side: str, changes: list[LevelChange], offset: int | None = None) -> None:
        """A quote `offset` ticks behind the best (negative: better), never crossing; by
        default a few ticks behind or up to two ticks better."""
        if offset is None:
            offset = int(self.random() * 12) - 2
        if side == "bids":
            best = self.bids[-1] if self.bids else self.asks[0] - 1 - max(offset, 0)
            ticks = max(1, min(best - offset, self.asks[0] - 1))
            prices = self.bids
        else:
            best = self.asks[0] if self.asks else self.bids[-1] + 1 + max(offset, 0)
            ticks = max(best + offset, self.bids[-1] + 1 if self.bids else 1)
            prices = self.asks
        if ticks not in self.levels[side]:
            insort(prices, ticks)
        level = self.levels[side][ticks] = self._level()
        changes.append(LevelChange(side, ticks, level[0], level[1]))
        self._trim(side, changes)

    def _trim(self, side: str, changes: list[LevelChange]) -> None:
        """Keep the book at its depth by dropping the level furthest from the best."""
        prices = self.bids if side == "bids" else self.asks
        if len(prices) > self.depth:
            ticks = prices.pop(0) if side == "bids" else prices.pop()
            del self.levels[side][ticks]
            changes.append(LevelChange(side, ticks, 0, 0))

    def _remove(self, side: str, ticks: int, changes: list[LevelChange]) -> None:
        """Take a level out; a new quote near the best and, if the book got shallower,
        one anywhere in its usual span take its place."""
        prices = self.bids if side == "bids" else self.asks
        del prices[bisect_left(prices, ticks)]
        del self.levels[side][ticks]
        changes.append(LevelChange(side, ticks, 0, 0))
        self._quote(side, changes)
        if len(prices) < self.depth:
            self._quote(side, changes, self._below(2 * self.depth))

    def book_side(self, side: str, depth: int) -> list[tuple[str, str, int]]:
        """The best `depth` levels of one side, best first, as (px, sz, orders)."""
        prices = self.bids[: -depth - 1 : -1] if side == "bids" else self.asks[:depth]
        levels = self.levels[side]
        return [(self.px(p), self.sz(levels[p][0]), levels[p][1]) for p in prices]


class MarketGenerator:
    """Trades and book changes for a set of instruments, the same for the same seed.

    Timestamps come from `clock` (epoch milliseconds), the wall clock unless given.
    """

    def __init__(
        self,
        seed: int,
        instruments: Iterable[str | Instrument] = (),
        clock: Callable[[], int] | None = None,
        depth: int = 400,
    ) -> None:
        self.seed = seed
        self.clock = clock or wall_clock_ms
        self.depth = depth
        self._walks: dict[str, _Walk] = {}
        for item in instruments:
            self.add(item)

    def add(self, instrument: str | Instrument) -> Instrument:
        if isinstance(instrument, str):
            instrument = instrument_for(instrument)
        if instrument.inst_id not in self._walks:
            self._walks[instrument.inst_id] = _Walk(instrument, self.seed, self.depth, self.clock)
        return self._walks[instrument.inst_id].instrument

    @property
    def instruments(self) -> dict[str, Instrument]:
        return {inst_id: walk.instrument for inst_id, walk in self._walks.items()}

    def next_event(self, inst_id: str) -> MarketStep:
        """One market event: a trade with the level it took, or a quote change."""
        step = MarketStep(None)
        step.trade = self._walks[inst_id].step(step.changes)
        return step

    def move_quotes(self, inst_id: str) -> MarketStep:
        """A quote change that is not a trade (quotes move far more often than trades)."""
        step = MarketStep(None)
        self._walks[inst_id]._move_quotes(step.changes)
        return step

    def next_trade(self, inst_id: str) -> MarketStep:
        """Market events up to and including the next trade, with every level they changed."""
        walk = self._walks[inst_id]
        changes: list[LevelChange] = []
        trade = None
        while trade is None:
            trade = walk.step(changes)
        return MarketStep(trade, changes)

    def book(self, inst_id: str, depth: int | None = None) -> dict[str, list[tuple[str, str, int]]]:
        """The current book, best first: {"bids": [(px, sz, orders), ...], "asks": [...]}."""
        walk = self._walks[inst_id]
        depth = walk.depth if depth is None else depth
        return {"bids": walk.book_side("bids", depth), "asks": walk.book_side("asks", depth)}

    def best(self, inst_id: str) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
        """(best bid, best ask), each as (px, sz, orders)."""
        walk = self._walks[inst_id]
        return walk.book_side("bids", 1)[0], walk.book_side("asks", 1)[0]

    def size_str(self, inst_id: str, lots: int) -> str:
        return self._walks[inst_id].sz(lots)

    def price_str(self, inst_id: str, ticks: int) -> str:
        return self._walks[inst_id].px(ticks)

    def level(self, inst_id: str, side: str, ticks: int) -> tuple[str, str, int] | None:
        """The level at that price now, as (px, sz, orders), or None if there is none."""
        walk = self._walks[inst_id]
        level = walk.levels[side].get(ticks)
        return None if level is None else (walk.px(ticks), walk.sz(level[0]), level[1])


class Tape:
    """Per-second and per-minute OHLCV of one instrument's trades. Candles and the ticker's
    24-hour figures are sums of these, so they agree with the trades that were sent.

    A bar is [open, high, low, close (ticks), lots, sum(ticks * lots), trades, sum(lots / ticks)];
    the last sum is kept only for inverse contracts, whose base volume needs it.
    """

    def __init__(self, inverse: bool) -> None:
        self.inverse = inverse
        self.seconds: dict[int, list] = {}
        self.minutes: dict[int, list] = {}
        self.last: Trade | None = None

    def add(self, trade: Trade) -> None:
        ts, ticks, lots = trade.ts, trade.ticks, trade.lots
        share = Decimal(lots) / ticks if self.inverse else 0
        _fold(self.seconds, ts - ts % SECOND, ticks, lots, share, SECOND_RETENTION)
        _fold(self.minutes, ts - ts % MINUTE, ticks, lots, share, MINUTE_RETENTION)
        self.last = trade

    def ohlcv(self, start: int, end: int) -> list | None:
        """The trades in [start, end) folded into one bar; None if there were none."""
        if end - start <= SECOND:
            bar = self.seconds.get(start)
            return None if bar is None else list(bar)
        total = None
        for minute in range(start, end, MINUTE):
            bar = self.minutes.get(minute)
            if bar is None:
                continue
            if total is None:
                total = list(bar)
                continue
            total[1] = max(total[1], bar[1])
            total[2] = min(total[2], bar[2])
            total[3] = bar[3]
            for i in (4, 5, 6, 7):
                total[i] += bar[i]
        return total


def _fold(
    bars: dict[int, list], start: int, ticks: int, lots: int, share: Decimal | int, retention: int
) -> None:
    bar = bars.get(start)
    if bar is None:
        bars[start] = [ticks, ticks, ticks, ticks, lots, ticks * lots, 1, share]
        _prune(bars, start - retention)
        return
    if ticks > bar[1]:
        bar[1] = ticks
    elif ticks < bar[2]:
        bar[2] = ticks
    bar[3] = ticks
    bar[4] += lots
    bar[5] += ticks * lots
    bar[6] += 1
    bar[7] += share


def _prune(bars: dict[int, list], before: int) -> None:
    while bars:
        oldest = next(iter(bars))
        if oldest >= before:
            return
        del bars[oldest]
