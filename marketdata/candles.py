"""Candles: timeframes, the right-aligned boundary rule, folding trades into candles, live candles.

A candle of timeframe W stamped T covers the trades with T - W <= ts < T: T is the END of
its interval. Everything here is plain Decimal arithmetic on plain values, so the live
aggregator, the portable rebuild and the tests fold trades in exactly one way; the SQL
rebuild in `marketdata.rollups` does the same arithmetic in PostgreSQL.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from django.db import connection, transaction
from django.db.models.functions import Now
from psycopg.types.datetime import TimestamptzLoader

from collectors import bounds
from collectors.times import EPOCH, utc_text
from collectors.types import DataType, MarketDataPoint

TIMEFRAMES: dict[str, int] = {
    "1s": 1,
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}
ONE_MICROSECOND = timedelta(microseconds=1)
DEFAULT_GRACE = timedelta(seconds=2)
PLACES = Decimal("0.00000001")  # prices, sizes, volume and VWAP: 8 decimal places
PRICE_SCALE = 8
ZERO = Decimal(0)

# Sums and products never round: a trap, not a silent error, if they ever would.
EXACT = Context(prec=120, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
# Prices and sizes are stored as DECIMAL(20, 8); PostgreSQL rounds the 9th place half away
# from zero, which for positive numbers is ROUND_HALF_UP. Live trades are rounded the same.
COLUMN = Context(prec=120, rounding=ROUND_HALF_UP, traps=[InvalidOperation])
NUMERIC_ID = re.compile(r"[0-9]+")


# timeframes and boundaries --------------------------------------------------------------


def timeframe_seconds(timeframe: str) -> int:
    """Width of a timeframe in seconds; ValueError naming the known ones for anything else."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        known = ", ".join(TIMEFRAMES)
        raise ValueError(f"unknown timeframe {timeframe!r} (known: {known})") from None


def timeframe_delta(timeframe: str) -> timedelta:
    return timedelta(seconds=timeframe_seconds(timeframe))


def _micros(timestamp: datetime) -> int:
    if timestamp.utcoffset() is None:
        raise ValueError(f"naive datetime {timestamp!r}: candles need aware UTC datetimes")
    return (timestamp - EPOCH) // ONE_MICROSECOND


def _at(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def floor_boundary(timestamp: datetime, timeframe: str) -> datetime:
    """The latest boundary of the timeframe at or before `timestamp`."""
    width = timeframe_seconds(timeframe) * 1_000_000
    return _at(_micros(timestamp) // width * width)


def ceil_boundary(timestamp: datetime, timeframe: str) -> datetime:
    """The earliest boundary of the timeframe at or after `timestamp`."""
    width = timeframe_seconds(timeframe) * 1_000_000
    return _at(-(-_micros(timestamp) // width) * width)


def bucket_end(timestamp: datetime, timeframe: str) -> datetime:
    """T, the stamp of the candle holding a trade at `timestamp`: floor(ts / W) * W + W.

    A trade exactly on a boundary belongs to the candle that starts there.
    """
    return floor_boundary(timestamp, timeframe) + timeframe_delta(timeframe)


def check_derivable(source: str, target: str) -> None:
    """ValueError unless candles of `target` are whole numbers of `source` candles."""
    small, large = timeframe_seconds(source), timeframe_seconds(target)
    if large <= small or large % small:
        raise ValueError(f"{target} candles cannot be built from {source} candles")


# trades ---------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Trade:
    """One trade as a candle sees it. `seq` is arrival order (the row id when stored)."""

    timestamp: datetime
    price: Decimal
    size: Decimal
    trade_id: str | None = None
    seq: int = 0


def as_column(value: Decimal) -> Decimal:
    """A price or size as DECIMAL(20, 8) stores it."""
    return value.quantize(PLACES, context=COLUMN)


def trade_from_point(point: MarketDataPoint, seq: int = 0) -> Trade:
    """The Trade in a TRADE data point, with price and size as `raw_trades` will hold them."""
    if point.data_type is not DataType.TRADE:
        raise ValueError(f"not a trade: {point.data_type}")
    data = point.data
    return Trade(
        timestamp=point.timestamp.astimezone(UTC),
        price=as_column(data["price"]),
        size=as_column(data["size"]),
        trade_id=data.get("trade_id"),
        seq=seq,
    )


def trade_order_key(trade: Trade) -> tuple:
    """Order of trades: timestamp, then trade id, then arrival.

    All-digit ids compare as numbers, before other ids, which compare as text by code point
    (PostgreSQL's COLLATE "C" on UTF-8); trades without an id come last.
    """
    trade_id = trade.trade_id
    if trade_id is None:
        return (trade.timestamp, 2, 0, "", trade.seq)
    if NUMERIC_ID.fullmatch(trade_id):
        return (trade.timestamp, 0, int(trade_id), trade_id, trade.seq)
    return (trade.timestamp, 1, 0, trade_id, trade.seq)


# candles --------------------------------------------------------------------------------


@dataclass(slots=True)
class CandleValue:
    """One OHLCV candle, stamped at the end of its interval (exclusive). A value: never
    changed once made (`dataclasses.replace` makes another). Not frozen only because a
    frozen dataclass is built eight times slower, and reads build thousands of them.
    """

    exchange: str
    symbol: str
    timeframe: str
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    vwap: Decimal
    trade_count: int
    is_final: bool = True


def candle_message(candle: CandleValue) -> dict[str, object]:
    """A candle as JSON-ready values: the API's fields plus its market; decimals as text
    in plain notation (never floats, never exponents)."""
    return {
        "exchange": candle.exchange,
        "symbol": candle.symbol,
        "timeframe": candle.timeframe,
        "timestamp": utc_text(candle.timestamp),
        "open": format(candle.open, "f"),
        "high": format(candle.high, "f"),
        "low": format(candle.low, "f"),
        "close": format(candle.close, "f"),
        "volume": format(candle.volume, "f"),
        "quote_volume": format(candle.quote_volume, "f"),
        "vwap": format(candle.vwap, "f"),
        "trade_count": candle.trade_count,
        "is_final": candle.is_final,
    }


def vwap_of(quote_volume: Decimal, volume: Decimal, close: Decimal) -> Decimal:
    """quote_volume / volume rounded half-even to 8 places, exactly; the close if no volume.

    Integer quotient and remainder, as the SQL rebuild computes it, so both round the
    same way without depending on a division's working precision. Volume is zero only
    when every size rounded to zero at 8 places.
    """
    if volume == 0:
        return close
    numerator = quote_volume.scaleb(PRICE_SCALE, context=EXACT)
    quotient = EXACT.divide_int(numerator, volume)
    remainder = EXACT.subtract(numerator, EXACT.multiply(quotient, volume))
    twice = EXACT.multiply(remainder, 2)
    if twice > volume or (twice == volume and EXACT.remainder(quotient, 2) == 1):
        quotient = EXACT.add(quotient, 1)
    return EXACT.quantize(quotient.scaleb(-PRICE_SCALE, context=EXACT), PLACES)


@dataclass(slots=True)
class CandleBuilder:
    """Folds trades, in any order, into one candle's values."""

    first_key: tuple | None = None
    last_key: tuple | None = None
    open: Decimal = ZERO
    close: Decimal = ZERO
    high: Decimal = ZERO
    low: Decimal = ZERO
    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    trade_count: int = 0
    trade_ids: list[str] = field(default_factory=list)

    def add(self, trade: Trade) -> None:
        key = trade_order_key(trade)
        price = trade.price
        if self.first_key is None:
            self.first_key = self.last_key = key
            self.open = self.close = self.high = self.low = price
        else:
            if key < self.first_key:
                self.first_key, self.open = key, price
            if key > self.last_key:
                self.last_key, self.close = key, price
            self.high = max(self.high, price)
            self.low = min(self.low, price)
        self.volume = EXACT.add(self.volume, trade.size)
        self.quote_volume = EXACT.add(self.quote_volume, EXACT.multiply(price, trade.size))
        self.trade_count += 1
        if trade.trade_id is not None:
            self.trade_ids.append(trade.trade_id)

    def value(self, exchange: str, symbol: str, timeframe: str, timestamp: datetime) -> CandleValue:
        return CandleValue(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            timestamp=timestamp,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            quote_volume=self.quote_volume,
            vwap=vwap_of(self.quote_volume, self.volume, self.close),
            trade_count=self.trade_count,
        )


@dataclass(slots=True)
class CandleMerge:
    """Folds consecutive candles, oldest first, into one candle of a larger timeframe."""

    first: CandleValue | None = None
    last: CandleValue | None = None
    high: Decimal = ZERO
    low: Decimal = ZERO
    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    trade_count: int = 0

    def add(self, candle: CandleValue) -> None:
        if self.first is None:
            self.first = candle
            self.high, self.low = candle.high, candle.low
        else:
            if candle.timestamp <= self.last.timestamp:
                raise ValueError("candles must be merged oldest first, each once")
            self.high = max(self.high, candle.high)
            self.low = min(self.low, candle.low)
        self.last = candle
        self.volume = EXACT.add(self.volume, candle.volume)
        self.quote_volume = EXACT.add(self.quote_volume, candle.quote_volume)
        self.trade_count += candle.trade_count

    def value(self, timeframe: str, timestamp: datetime) -> CandleValue:
        first, last = self.first, self.last
        return CandleValue(
            exchange=first.exchange,
            symbol=first.symbol,
            timeframe=timeframe,
            timestamp=timestamp,
            open=first.open,
            high=self.high,
            low=self.low,
            close=last.close,
            volume=self.volume,
            quote_volume=self.quote_volume,
            vwap=vwap_of(self.quote_volume, self.volume, last.close),
            trade_count=self.trade_count,
            is_final=first.is_final and last.is_final,
        )


def fold_trades(
    trades: Iterable[Trade], exchange: str, symbol: str, timeframe: str
) -> list[CandleValue]:
    """The candles of these trades, oldest first; every trade given counts once.

    Intervals without trades have no candle (see `fill_gaps`).
    """
    builders: dict[datetime, CandleBuilder] = {}
    for trade in trades:
        end = bucket_end(trade.timestamp, timeframe)
        builder = builders.get(end)
        if builder is None:
            builder = builders[end] = CandleBuilder()
        builder.add(trade)
    return [builders[end].value(exchange, symbol, timeframe, end) for end in sorted(builders)]


def derive_candles(candles: Iterable[CandleValue], timeframe: str) -> list[CandleValue]:
    """Candles of `timeframe` built from candles of one smaller timeframe, oldest first.

    Equal to folding the same trades directly: open, close, high and low come from the
    first, last and extreme candles, and the sums are exact (quote volume keeps all 16
    places of price x size), so VWAP is recomputed, never averaged.
    """
    merges: dict[tuple[str, str, datetime], CandleMerge] = {}
    for candle in sorted(candles, key=lambda c: (c.exchange, c.symbol, c.timestamp)):
        check_derivable(candle.timeframe, timeframe)
        start = candle.timestamp - timeframe_delta(candle.timeframe)
        key = (candle.exchange, candle.symbol, bucket_end(start, timeframe))
        merges.setdefault(key, CandleMerge()).add(candle)
    return [merges[key].value(timeframe, key[2]) for key in sorted(merges, key=lambda k: k[2])]


def fill_gaps(
    candles: Sequence[CandleValue], start: datetime, end: datetime, timeframe: str
) -> list[CandleValue]:
    """A candle for every interval inside [start, end), empty ones filled; oldest first.

    An empty interval gets a candle at the previous close: open = high = low = close =
    vwap = that close, zero volume and quote volume, no trades. Empty intervals before
    the first candle have no previous close and stay out. `candles` are one market's,
    of `timeframe`, oldest first; a filled candle is final like the one it follows, so
    keep `end` at or before the last closed boundary.
    """
    width = timeframe_delta(timeframe)
    by_end = {candle.timestamp: candle for candle in candles if candle.timeframe == timeframe}
    previous = None
    for candle in candles:
        if candle.timeframe == timeframe and candle.timestamp <= ceil_boundary(start, timeframe):
            previous = candle
    series: list[CandleValue] = []
    stamp = ceil_boundary(start, timeframe) + width
    while stamp <= end:
        candle = by_end.get(stamp)
        if candle is None and previous is not None:
            candle = _flat_candle(previous, stamp)
        if candle is not None:
            series.append(candle)
            previous = candle
        stamp += width
    return series


def _flat_candle(previous: CandleValue, timestamp: datetime) -> CandleValue:
    price = previous.close
    return replace(
        previous,
        timestamp=timestamp,
        open=price,
        high=price,
        low=price,
        close=price,
        # zero, at the scale of the candle before (0.00000000 as stored, not 0)
        volume=previous.volume * 0,
        quote_volume=previous.quote_volume * 0,
        vwap=price,
        trade_count=0,
    )


# live aggregation -----------------------------------------------------------------------

OnClose = Callable[[list[CandleValue]], None]


def _as_delta(seconds: timedelta | float) -> timedelta:
    delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
    if delta < timedelta(0):
        raise ValueError(f"grace and max_future must not be negative: {seconds!r}")
    return delta


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _storable(value: object) -> bool:
    """A price or size `raw_trades` can hold at all: finite, positive, below the overflow of
    DECIMAL(20, 8). (Collectors refuse more: also what would round to zero.)"""
    try:
        return isinstance(value, Decimal) and 0 < value < bounds.MAX_PRICE
    except ArithmeticError:  # a NaN does not compare
        return False


class LiveCandleAggregator:
    """Builds one market's candles from its TRADE points and emits each once, when it closes.

    Trades fold into the smallest timeframe; its closed candles fold into the larger
    ones, which are whole multiples of it. The interval ending at T closes once the
    clock passes T + grace, where the clock is the latest trade timestamp seen or the
    wall clock given to `tick`, whichever is further; only then is its candle handed to
    `on_close`, final. After that, a trade for it is late: it is counted and left to the
    rollup, which rebuilds from `raw_trades`. A repeated trade id is counted once.

    One bad trade cannot move the clock: a trade moves it at most to the time it was
    received (`clock`, the wall clock unless given), and a trade stamped more than
    `max_future` after that, or with a price or size `raw_trades` cannot hold (not finite,
    not positive, or too large), is refused and counted ("future", "out_of_bounds").

    Intervals that began before `since` (default: the wall clock at construction plus
    the grace) may have lost trades to a restart, so they are never emitted here; the
    rollup builds them. Thread-safe: the collector's thread adds trades while another
    ticks.
    """

    def __init__(
        self,
        exchange: str,
        symbol: str,
        timeframes: Iterable[str],
        on_close: OnClose,
        grace: timedelta | float = DEFAULT_GRACE,
        since: datetime | None = None,
        *,
        max_future: timedelta | float = bounds.DEFAULT_MAX_FUTURE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframes = sorted(set(timeframes), key=timeframe_seconds)
        if not self.timeframes:
            raise ValueError("an aggregator needs at least one timeframe")
        self.base = self.timeframes[0]
        for timeframe in self.timeframes[1:]:
            check_derivable(self.base, timeframe)
        self.on_close = on_close
        self.grace = _as_delta(grace)
        self.max_future = _as_delta(max_future)
        self.clock = clock or _wall_clock
        self.since = since if since is not None else datetime.now(UTC) + self.grace
        self._base_width = timeframe_delta(self.base)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._watermark: datetime | None = None  # every interval ending at or before is closed
        self._open: dict[datetime, CandleBuilder] = {}
        self._ids: set[str] = set()
        self._merges: dict[str, dict[datetime, CandleMerge]] = {tf: {} for tf in self.timeframes}
        self.counts = {
            "trades": 0,
            "late": 0,
            "duplicates": 0,
            "before_since": 0,
            "future": 0,
            "out_of_bounds": 0,
            "candles": 0,
        }

    def add_trade(self, point: MarketDataPoint) -> None:
        """Fold one TRADE point in; emit whatever its timestamp closes."""
        if (point.exchange, point.symbol) != (self.exchange, self.symbol):
            raise ValueError(f"{point.exchange} {point.symbol} is not this aggregator's market")
        received = self.clock()
        refused = self._refusal(point, received)
        if refused:
            with self._lock:
                self.counts[refused] += 1
            return
        trade = trade_from_point(point, next(self._seq))
        with self._lock:
            self._fold(trade)
            closed = self._advance(min(trade.timestamp, received))
        self._emit(closed)

    def _refusal(self, point: MarketDataPoint, received: datetime) -> str:
        """Why a trade is not folded in ("" when it is)."""
        if point.timestamp > received + self.max_future:
            return "future"
        if not (_storable(point.data["price"]) and _storable(point.data["size"])):
            return "out_of_bounds"
        return ""

    def tick(self, now: datetime) -> None:
        """Close, by wall clock, every interval that ended at least `grace` before `now`."""
        with self._lock:
            closed = self._advance(now)
        self._emit(closed)

    def flush(self) -> None:
        """On stop: emit what the wall clock has closed, forget the intervals still open.

        Open intervals are not final, so they are not emitted; the rollup builds them.
        Trades added afterwards start afresh, as in a new aggregator.
        """
        now = datetime.now(UTC)
        with self._lock:
            closed = self._advance(now)
            self._open.clear()
            self._ids.clear()
            for merges in self._merges.values():
                merges.clear()
            self.since = max(self.since, now + self.grace)
        self._emit(closed)

    def open_candles(self) -> list[CandleValue]:
        """The intervals still open, as they stand so far: `is_final` false, for live views.

        Stored with `store_candles`, one is replaced by its final candle when it closes.
        """
        with self._lock:
            base = [
                builder.value(self.exchange, self.symbol, self.base, end)
                for end, builder in sorted(self._open.items())
            ]
            candles = list(base)
            for timeframe in self.timeframes[1:]:
                merges = {end: replace(merge) for end, merge in self._merges[timeframe].items()}
                for candle in base:
                    end = bucket_end(candle.timestamp - self._base_width, timeframe)
                    merges.setdefault(end, CandleMerge()).add(candle)
                width = timeframe_delta(timeframe)
                candles.extend(
                    merges[end].value(timeframe, end)
                    for end in sorted(merges)
                    if end - width >= self.since
                )
        return [replace(candle, is_final=False) for candle in candles]

    def _fold(self, trade: Trade) -> None:
        self.counts["trades"] += 1
        end = bucket_end(trade.timestamp, self.base)
        if end - self._base_width < self.since:
            self.counts["before_since"] += 1
        elif self._watermark is not None and end <= self._watermark:
            self.counts["late"] += 1
        elif trade.trade_id is not None and trade.trade_id in self._ids:
            self.counts["duplicates"] += 1
        else:
            self._open.setdefault(end, CandleBuilder()).add(trade)
            if trade.trade_id is not None:
                self._ids.add(trade.trade_id)

    def _advance(self, clock: datetime) -> list[CandleValue]:
        watermark = floor_boundary(clock - self.grace, self.base)
        if self._watermark is not None and watermark <= self._watermark:
            return []
        self._watermark = watermark
        closed: list[CandleValue] = []
        for end in sorted(end for end in self._open if end <= watermark):
            builder = self._open.pop(end)
            self._ids.difference_update(builder.trade_ids)
            candle = builder.value(self.exchange, self.symbol, self.base, end)
            closed.append(candle)
            for timeframe in self.timeframes[1:]:
                start = end - self._base_width
                merges = self._merges[timeframe]
                merges.setdefault(bucket_end(start, timeframe), CandleMerge()).add(candle)
        for timeframe in self.timeframes[1:]:
            merges = self._merges[timeframe]
            width = timeframe_delta(timeframe)
            for end in sorted(end for end in merges if end <= watermark):
                candle = merges.pop(end).value(timeframe, end)
                if end - width >= self.since:
                    closed.append(candle)
        self.counts["candles"] += len(closed)
        return closed

    def _emit(self, closed: list[CandleValue]) -> None:
        if closed:
            self.on_close(closed)


# the candles table ----------------------------------------------------------------------

CANDLE_FIELDS = (
    "exchange",
    "symbol",
    "timeframe",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "vwap",
    "trade_count",
    "is_final",
)
CANDLE_KEY = CANDLE_FIELDS[:4]
CANDLE_VALUES = CANDLE_FIELDS[4:]
STORE_SQL = """
INSERT INTO candles ({columns}, created_at, updated_at)
VALUES {rows}
ON CONFLICT (exchange, symbol, timeframe, timestamp) DO UPDATE SET {updates}, updated_at = now()
WHERE ({replace} OR NOT candles.is_final)
  AND ({stored}) IS DISTINCT FROM ({excluded})
"""


def store_candles(candles: Sequence[CandleValue], *, replace: bool = False) -> None:
    """Store candles in the `candles` table; idempotent.

    A stored final candle is left alone unless `replace` is given: the live aggregator's
    candle must not overwrite what the rollup rebuilt from `raw_trades` (it may hold late
    trades the live side never saw), and a restarted collector cannot corrupt one. A
    stored candle that is not final (an open interval) is overwritten.
    """
    if not candles:
        return
    if connection.vendor == "postgresql":
        _store_in_postgresql(candles, replace)
    else:
        _store_portably(candles, replace)


def _store_in_postgresql(candles: Sequence[CandleValue], replace: bool) -> None:
    row = "(" + ", ".join(["%s"] * len(CANDLE_FIELDS)) + ", now(), now())"
    sql = STORE_SQL.format(
        columns=", ".join(CANDLE_FIELDS),
        rows=", ".join([row] * len(candles)),
        updates=", ".join(f"{name} = EXCLUDED.{name}" for name in CANDLE_VALUES),
        replace="true" if replace else "false",
        stored=", ".join(f"candles.{name}" for name in CANDLE_VALUES),
        excluded=", ".join(f"EXCLUDED.{name}" for name in CANDLE_VALUES),
    )
    ordered = sorted(candles, key=lambda c: (c.exchange, c.symbol, c.timeframe, c.timestamp))
    params = [getattr(candle, name) for candle in ordered for name in CANDLE_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _store_portably(candles: Sequence[CandleValue], replace: bool) -> None:
    from marketdata.models import Candle

    with transaction.atomic():
        for candle in candles:
            key = {name: getattr(candle, name) for name in CANDLE_KEY}
            values = {name: getattr(candle, name) for name in CANDLE_VALUES}
            stored = Candle.objects.filter(**key).values_list("is_final", flat=True).first()
            if stored is None:
                Candle.objects.create(**key, **values)
            elif replace or not stored:
                Candle.objects.filter(**key).update(**values, updated_at=Now())


FETCH_SQL = f"""
SELECT {", ".join(CANDLE_FIELDS[3:])} FROM candles
WHERE exchange = %s AND symbol = %s AND timeframe = %s AND timestamp > %s AND timestamp <= %s
  AND (is_final OR NOT %s)
ORDER BY timestamp
"""


def fetch_candles(
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    final_only: bool = True,
) -> list[CandleValue]:
    """Stored candles of one market stamped in (start, end], oldest first."""
    timeframe_seconds(timeframe)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # psycopg's own (compiled) loader: Django's time-zone-aware one is pure Python
            # and would take a third of a 1,440-candle read. The session is in UTC.
            cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
            cursor.execute(FETCH_SQL, [exchange, symbol, timeframe, start, end, final_only])
            return [CandleValue(exchange, symbol, timeframe, *row) for row in cursor.fetchall()]
    from marketdata.models import Candle

    rows = Candle.objects.filter(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        timestamp__gt=start,
        timestamp__lte=end,
    )
    if final_only:
        rows = rows.filter(is_final=True)
    return [CandleValue(*row) for row in rows.order_by("timestamp").values_list(*CANDLE_FIELDS)]
