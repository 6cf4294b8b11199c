"""What the dashboard's pages and live streams read: markets, their 24 h figures, collectors.

The 24 h figures come from stored candles, never from a scan of raw trades: whole hours
from 1h candles, the minutes at both ends of the window from 1m candles (the current
minute's forming candle included), so a row costs a few dozen index reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import OuterRef, Q, Subquery
from rest_framework.exceptions import APIException

from collectors.hosting.live_feed import (
    book_message,
    epoch_ms,
    plain,
    ticker_message,
    trade_item,
    trade_message,
)
from collectors.hosting.status import status_dict
from collectors.models import TradingPair
from marketdata.api.collectors import read_collectors
from marketdata.candles import (
    CANDLE_FIELDS,
    CandleValue,
    candle_message,
    ceil_boundary,
    floor_boundary,
    timeframe_delta,
)
from marketdata.models import Candle, MarketData, RawTrade

DAY = timedelta(hours=24)
RECENT_MINUTES = timedelta(minutes=3)  # where the last closed 1m candle is looked for
TAPE_LENGTH = 50


@dataclass(slots=True, frozen=True)
class Market:
    exchange: str
    symbol: str
    enabled: bool
    data_types: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.symbol}"


@dataclass(slots=True)
class MarketRow:
    """One stream's line on the markets board."""

    market: Market
    last_price: Decimal | None = None
    last_trade_at: datetime | None = None
    open_24h: Decimal | None = None
    high_24h: Decimal | None = None
    low_24h: Decimal | None = None
    volume_24h: Decimal | None = None
    trades_per_minute: int | None = None

    @property
    def change_24h(self) -> Decimal | None:
        if self.last_price is None or self.open_24h is None:
            return None
        return self.last_price - self.open_24h

    @property
    def change_percent(self) -> Decimal | None:
        change = self.change_24h
        if change is None or not self.open_24h:
            return None
        return (change * 100 / self.open_24h).quantize(Decimal("0.01"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "market": self.market.name,
            "exchange": self.market.exchange,
            "symbol": self.market.symbol,
            "enabled": self.market.enabled,
            "last_price": plain(self.last_price),
            "last_trade_ms": epoch_ms(self.last_trade_at) if self.last_trade_at else None,
            "open_24h": plain(self.open_24h),
            "high_24h": plain(self.high_24h),
            "low_24h": plain(self.low_24h),
            "volume_24h": plain(self.volume_24h),
            "change_24h": plain(self.change_24h),
            "change_percent": plain(self.change_percent),
            "trades_per_minute": self.trades_per_minute,
        }


def markets() -> list[Market]:
    """Every configured stream, enabled or not, by exchange and symbol."""
    pairs = TradingPair.objects.select_related("exchange").order_by("exchange__name", "symbol")
    return [
        Market(pair.exchange.name, pair.symbol, pair.enabled, tuple(pair.data_types or ()))
        for pair in pairs
    ]


def market(exchange: str, symbol: str) -> Market | None:
    pair = (
        TradingPair.objects.select_related("exchange")
        .filter(exchange__name=exchange, symbol=symbol)
        .first()
    )
    if pair is None:
        return None
    return Market(exchange, symbol, pair.enabled, tuple(pair.data_types or ()))


def window_candles(found: list[Market], now: datetime) -> dict[tuple[str, str], list[tuple]]:
    """Per market, (timeframe, timestamp, open, high, low, close, volume, trade_count,
    is_final) of the candles covering (now - 24 h, now], oldest first, plus the 1m candles
    of the last few minutes. One query, on the candles' unique index."""
    start = now - DAY
    first_hour = ceil_boundary(start, "1h")
    this_hour = floor_boundary(now, "1h")
    whole_hours = Q(timeframe="1h", timestamp__gt=first_hour, timestamp__lte=this_hour)
    head = Q(timeframe="1m", timestamp__gt=ceil_boundary(start, "1m"), timestamp__lte=first_hour)
    tail = Q(timeframe="1m", timestamp__gt=min(this_hour, now - RECENT_MINUTES))
    rows = Candle.objects.filter(
        whole_hours | head | tail,
        exchange__in={m.exchange for m in found},
        symbol__in={m.symbol for m in found},
    )
    fields = ("timeframe", "timestamp", "open", "high", "low", "close", "volume")
    by_market: dict[tuple[str, str], list[tuple]] = {}
    ordered = rows.order_by("exchange", "symbol", "timestamp")
    for exchange, symbol, *values in ordered.values_list(
        "exchange", "symbol", *fields, "trade_count", "is_final"
    ):
        by_market.setdefault((exchange, symbol), []).append(tuple(values))
    return by_market


def last_trades(found: list[Market]) -> dict[tuple[str, str], tuple[Decimal, datetime]]:
    """Per market, the price and time of its newest stored trade: one index probe each."""
    newest = RawTrade.objects.filter(
        exchange=OuterRef("exchange__name"), symbol=OuterRef("symbol")
    ).order_by("-timestamp")
    pairs = TradingPair.objects.filter(
        exchange__name__in={m.exchange for m in found}, symbol__in={m.symbol for m in found}
    ).annotate(
        last_price=Subquery(newest.values("price")[:1]),
        last_at=Subquery(newest.values("timestamp")[:1]),
    )
    return {
        (exchange, symbol): (price, at)
        for exchange, symbol, price, at in pairs.values_list(
            "exchange__name", "symbol", "last_price", "last_at"
        )
        if at is not None
    }


def market_row(
    market: Market, now: datetime, candles: list[tuple], last_trade: tuple | None
) -> MarketRow:
    row = MarketRow(market)
    if last_trade is not None:
        row.last_price, row.last_trade_at = last_trade
    # The 1m candles of the last few minutes may lie in the last whole hour: counted there.
    first_hour, this_hour = ceil_boundary(now - DAY, "1h"), floor_boundary(now, "1h")
    window = [c for c in candles if c[0] == "1h" or c[1] <= first_hour or c[1] > this_hour]
    if window:
        row.open_24h = window[0][2]
        row.high_24h = max(c[3] for c in window)
        row.low_24h = min(c[4] for c in window)
        row.volume_24h = sum((c[6] for c in window), Decimal(0))
        if row.last_price is None:
            row.last_price = window[-1][5]
    closed_minutes = [c for c in candles if c[0] == "1m" and c[8] and c[1] <= now]
    if closed_minutes:
        newest = closed_minutes[-1]
        recent = newest[1] > now - RECENT_MINUTES
        row.trades_per_minute = newest[7] if recent else 0
    return row


def market_rows(found: list[Market], now: datetime) -> list[MarketRow]:
    if not found:
        return []
    candles = window_candles(found, now)
    trades = last_trades(found)
    return [
        market_row(
            m, now, candles.get((m.exchange, m.symbol), []), trades.get((m.exchange, m.symbol))
        )
        for m in found
    ]


def board_rows(now: datetime | None = None) -> list[MarketRow]:
    return market_rows(markets(), now or datetime.now(UTC))


def board_snapshot() -> dict[str, Any]:
    """The live board's figures as JSON-ready values."""
    now = datetime.now(UTC)
    return {"at_ms": epoch_ms(now), "rows": [row.as_dict() for row in board_rows(now)]}


# collectors ---------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class CollectorBoard:
    """Every stream's status (the API's status dicts), or why it cannot be read now."""

    collectors: list[dict[str, Any]]
    unavailable: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"collectors": self.collectors, "unavailable": self.unavailable}

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {collector["name"]: collector for collector in self.collectors}


def collector_board() -> CollectorBoard:
    """What `GET /api/v1/collectors/` answers, read the same way."""
    try:
        return CollectorBoard([status_dict(found) for found in read_collectors()])
    except APIException as error:
        return CollectorBoard([], str(error.detail))


# one market ---------------------------------------------------------------------------------


def recent_trades(exchange: str, symbol: str, limit: int = TAPE_LENGTH) -> list[dict[str, Any]]:
    """The newest trades, newest first, as the live feed sends them."""
    rows = (
        RawTrade.objects.filter(exchange=exchange, symbol=symbol)
        .order_by("-timestamp", "-id")
        .values_list("trade_id", "price", "size", "side", "timestamp")[:limit]
    )
    return [trade_item(*row) for row in rows]


def _latest_point(exchange: str, symbol: str, data_type: str) -> MarketData | None:
    point = (
        MarketData.objects.filter(exchange=exchange, symbol=symbol, data_type=data_type)
        .order_by("-timestamp", "-id")
        .first()
    )
    return point if point is not None and isinstance(point.data, dict) else None


def latest_book(exchange: str, symbol: str) -> dict[str, Any] | None:
    point = _latest_point(exchange, symbol, "orderbook")
    return None if point is None else book_message(exchange, symbol, point.timestamp, point.data)


def latest_ticker(exchange: str, symbol: str) -> dict[str, Any] | None:
    point = _latest_point(exchange, symbol, "ticker")
    return None if point is None else ticker_message(exchange, symbol, point.timestamp, point.data)


# without Redis: the collectors' live channels, read back from the tables -------------------


def updates_since(channels: list[str], cursors: dict[str, Any]) -> list[tuple[str, dict]]:
    """(channel, message) for what the collectors would have published on these channels
    since the last call (`cursors` remembers where each channel got to), in the same shapes
    (`collectors.live_candles`, `collectors.live_feed`). The first call for a channel sends
    its latest state, not its history."""
    found: list[tuple[str, dict]] = []
    now = datetime.now(UTC)
    for channel in channels:
        kind, exchange, rest = channel.split(":", 2)
        if kind == "candles":
            symbol, _, timeframe = rest.rpartition(":")
            found += _candle_updates(channel, exchange, symbol, timeframe, cursors, now)
        elif kind == "trades":
            found += _trade_updates(channel, exchange, rest, cursors)
        elif kind in ("books", "tickers"):
            read = latest_book if kind == "books" else latest_ticker
            latest = read(exchange, rest)
            if latest is not None and latest["ts"] != cursors.get(channel):
                cursors[channel] = latest["ts"]
                found.append((channel, latest))
    return found


def _candle_updates(channel, exchange, symbol, timeframe, cursors, now) -> list[tuple[str, dict]]:
    since = cursors.get(channel, now - timedelta(seconds=10))
    rows = Candle.objects.filter(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        timestamp__gt=since - 2 * timeframe_delta(timeframe),
        updated_at__gt=since,
    )
    found = []
    for row in rows.order_by("timestamp").values_list(*CANDLE_FIELDS, "updated_at"):
        found.append((channel, candle_message(CandleValue(*row[:-1]))))
        since = max(since, row[-1])
    cursors[channel] = since
    return found


def _trade_updates(channel, exchange, symbol, cursors) -> list[tuple[str, dict]]:
    trades = RawTrade.objects.filter(exchange=exchange, symbol=symbol)
    if channel not in cursors:
        cursors[channel] = trades.order_by("-id").values_list("id", flat=True).first() or 0
        return []
    newest = trades.filter(id__gt=cursors[channel]).order_by("-id")
    rows = list(newest.values_list("id", "trade_id", "price", "size", "side", "timestamp")[:50])
    if not rows:
        return []
    cursors[channel] = rows[0][0]
    tape = [trade_item(*row[1:]) for row in reversed(rows)]
    return [(channel, trade_message(exchange, symbol, len(rows), tape))]
