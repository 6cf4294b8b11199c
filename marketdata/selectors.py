"""Reads of stored market data: trades, candles, market data points and the latest of each.

Every read takes a frozen filter value and returns a queryset ordered by (timestamp, id),
so a keyset page can follow it. Each filter leads with the columns of a spec index:
raw_trades (exchange, symbol, timestamp) or (timestamp); market_data (exchange, symbol,
timestamp) or (data_type, timestamp); candles (exchange, symbol, timeframe, timestamp).

Point-in-time reads (`as_of`) keep only rows the platform had received by then (their
`created_at`). Rows are received after their exchange time, so `timestamp` is also
bounded by `as_of` plus a margin for the exchange's clock running ahead of ours; the
bound lets the index stop the scan early.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connections
from django.db.models import JSONField, QuerySet, TextField
from django.db.models.functions import Cast

from collectors.types import DataType, ExchangeCollectorConfig
from marketdata.candles import CANDLE_FIELDS, CandleValue, fill_gaps, floor_boundary
from marketdata.models import Candle, MarketData, RawTrade
from marketdata.rollups import closed_until

logger = logging.getLogger(__name__)

# How far an exchange's clock may run ahead of ours and still be in an `as_of` read.
CLOCK_SKEW = timedelta(minutes=1)


@dataclass(slots=True, frozen=True)
class TradeFilter:
    """Trades in [start, end); exchange and symbol come together or not at all."""

    exchange: str | None = None
    symbol: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    side: str | None = None
    as_of: datetime | None = None


@dataclass(slots=True, frozen=True)
class CandleFilter:
    """Candles whose timestamp (the end of their interval) is in (start, end]."""

    exchange: str
    symbol: str
    timeframe: str
    start: datetime | None = None
    end: datetime | None = None
    include_partial: bool = False
    as_of: datetime | None = None
    fill: bool = False  # every closed interval, empty ones at the previous close


@dataclass(slots=True, frozen=True)
class MarketDataFilter:
    """Market data points in [start, end), by data type and/or exchange and symbol."""

    data_type: str | None = None
    exchange: str | None = None
    symbol: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    as_of: datetime | None = None


def _received_by(queryset: QuerySet, as_of: datetime | None) -> QuerySet:
    if as_of is None:
        return queryset
    return queryset.filter(created_at__lte=as_of, timestamp__lte=as_of + CLOCK_SKEW)


def _in_range(queryset: QuerySet, start: datetime | None, end: datetime | None) -> QuerySet:
    if start is not None:
        queryset = queryset.filter(timestamp__gte=start)
    if end is not None:
        queryset = queryset.filter(timestamp__lt=end)
    return queryset


def trades(query: TradeFilter) -> QuerySet[RawTrade]:
    queryset = RawTrade.objects.all()
    if query.exchange is not None:
        queryset = queryset.filter(exchange=query.exchange, symbol=query.symbol)
    if query.side is not None:
        queryset = queryset.filter(side=query.side)
    queryset = _in_range(queryset, query.start, query.end)
    return _received_by(queryset, query.as_of).order_by("timestamp", "id")


def candles(query: CandleFilter) -> QuerySet[Candle]:
    queryset = Candle.objects.filter(
        exchange=query.exchange, symbol=query.symbol, timeframe=query.timeframe
    )
    if query.start is not None:
        queryset = queryset.filter(timestamp__gt=query.start)
    if query.end is not None:
        queryset = queryset.filter(timestamp__lte=query.end)
    if query.as_of is not None:
        # Final by then: closed by then, and not revised since (a later revision's values
        # were not known at as_of, so serving them would leak the future).
        queryset = queryset.filter(
            is_final=True, timestamp__lte=query.as_of, updated_at__lte=query.as_of
        )
    elif not query.include_partial:
        queryset = queryset.filter(is_final=True)
    return queryset.order_by("timestamp", "id")


def filled_candles(query: CandleFilter, now: datetime | None = None) -> list[CandleValue]:
    """A candle for every interval stamped in (start, end] that had closed by `as_of`, or
    else by now, oldest first: the stored final ones, and each empty interval after the
    first stored one flat at the previous close with no volume (`marketdata.candles.fill_gaps`).
    Needs start and end."""
    if query.start is None or query.end is None:
        raise ValueError("a filled series needs start and end")
    moment = query.as_of or now or datetime.now(UTC)
    grace = timedelta(seconds=settings.CANDLE_GRACE)
    try:
        end = min(query.end, closed_until(query.timeframe, moment, grace))
    except OverflowError:  # an as_of within the grace period of the year 1: nothing closed
        return []
    if end <= query.start:  # nothing in the range has closed yet
        return []
    final = replace(query, include_partial=False)
    before = candles(replace(final, start=None, end=query.start)).order_by("-timestamp", "-id")
    stored = list(before.values_list(*CANDLE_FIELDS)[:1])
    stored += candles(replace(final, end=end)).values_list(*CANDLE_FIELDS)
    values = [CandleValue(*row) for row in stored]
    return fill_gaps(values, floor_boundary(query.start, query.timeframe), end, query.timeframe)


def market_data(query: MarketDataFilter) -> QuerySet[MarketData]:
    queryset = MarketData.objects.all()
    if query.exchange is not None:
        queryset = queryset.filter(exchange=query.exchange, symbol=query.symbol)
    if query.data_type is not None:
        queryset = queryset.filter(data_type=query.data_type)
    queryset = _in_range(queryset, query.start, query.end)
    return _received_by(queryset, query.as_of).order_by("timestamp", "id")


def latest_market_data(
    exchange: str, symbol: str, data_type: str, as_of: datetime | None = None
) -> MarketData | None:
    """The newest point of one type for one pair (as received by `as_of`), or None."""
    queryset = MarketData.objects.filter(exchange=exchange, symbol=symbol, data_type=data_type)
    return _received_by(queryset, as_of).order_by("-timestamp", "-id").first()


def latest_order_book(
    exchange: str, symbol: str, as_of: datetime | None = None
) -> MarketData | None:
    return latest_market_data(exchange, symbol, "orderbook", as_of)


def latest_ticker(exchange: str, symbol: str, as_of: datetime | None = None) -> MarketData | None:
    return latest_market_data(exchange, symbol, "ticker", as_of)


def newest_trade_id(exchange: str, symbol: str, since: datetime) -> str | None:
    """The trade id of the newest trade stored for a market, if it is stamped since then."""
    newest = RawTrade.objects.filter(exchange=exchange, symbol=symbol, timestamp__gte=since)
    return newest.order_by("-timestamp", "-id").values_list("trade_id", flat=True).first()


def newest_stored_trade(config: ExchangeCollectorConfig) -> str | None:
    """Where a starting collector's trades may resume: the newest trade stored for its
    market, if within COLLECTOR_BACKFILL_WINDOW seconds; None if there is none (or the
    database cannot say), and the collector takes the exchange's recent trades only."""
    window = settings.COLLECTOR_BACKFILL_WINDOW
    if not window or DataType.TRADE not in config.data_types:
        return None
    since = datetime.now(UTC) - timedelta(seconds=window)
    try:
        return newest_trade_id(config.exchange, config.symbol, since)
    except DatabaseError as error:
        logger.warning("%s: newest stored trade unknown (%s)", config.name, error)
        return None


def fetch_values(
    queryset: QuerySet, fields: tuple[str, ...], *, as_text: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """`queryset.values(*fields)` as a list of dicts, several times faster on PostgreSQL.

    Fields in `as_text` are read as the database's text (decimals in plain notation,
    as PostgreSQL prints NUMERIC), which saves making and formatting a Decimal each.
    Django loads every timestamptz through a pure-Python loader; on PostgreSQL the same
    SQL runs here with psycopg's C loader (same UTC datetimes). Both matter for pages of
    thousands of rows.
    """
    columns = [Cast(name, TextField()) if name in as_text else name for name in fields]
    values = queryset.values_list(*columns)
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return [dict(zip(fields, row, strict=True)) for row in values]
    from psycopg.types.datetime import TimestamptzLoader

    try:
        sql, params = values.query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing, e.g. id__in=[]
        return []
    json_columns = [
        index
        for index, name in enumerate(fields)
        if isinstance(queryset.model._meta.get_field(name), JSONField)
    ]
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if json_columns:
        # Django reads jsonb as text and decodes it in the field; so does this. (Not with
        # orjson: it turns integers beyond 64 bits into floats.)
        rows = [list(row) for row in rows]
        for row in rows:
            for index in json_columns:
                if row[index] is not None:
                    row[index] = json.loads(row[index])
    return [dict(zip(fields, row, strict=True)) for row in rows]
