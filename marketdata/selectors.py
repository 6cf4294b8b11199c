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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connections
from django.db.models import JSONField, QuerySet, TextField
from django.db.models.functions import Cast

from collectors.types import DataType, ExchangeCollectorConfig
from marketdata.archive import ArchiveError, archive_dir, decimal_text
from marketdata.candles import CANDLE_FIELDS, CandleValue, fill_gaps, floor_boundary
from marketdata.models import ArchiveFile, Candle, MarketData, RawTrade
from marketdata.partitions import day_of
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
    """A candle for every interval stamped in (start, end] that had closed by `as_of` and
    by now, oldest first: the stored final ones, and each empty interval after the first
    stored one flat at the previous close with no volume (`marketdata.candles.fill_gaps`).
    An `as_of` in the future is now: an interval the real clock has not closed is never
    filled as final. Needs start and end."""
    if query.start is None or query.end is None:
        raise ValueError("a filled series needs start and end")
    moment = now or datetime.now(UTC)
    if query.as_of is not None:
        moment = min(moment, query.as_of)
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
    stored = _with_archived_candles(final, end, stored)
    values = [CandleValue(*row) for row in stored]
    return fill_gaps(values, floor_boundary(query.start, query.timeframe), end, query.timeframe)


def _with_archived_candles(query: CandleFilter, end: datetime, stored: list) -> list:
    """Stored candle rows with those of archived days: the last one before the range and
    those in it, each timestamp once."""
    page = ArchivedPage(limit=1, descending=True)
    before = archived_candles(replace(query, start=None, end=query.start), page, CANDLE_FIELDS)
    inside = archived_candles(
        replace(query, end=end), ArchivedPage(limit=10**6), CANDLE_FIELDS, frozenset()
    )
    if not before and not inside:
        return stored
    by_time = {row["timestamp"]: tuple(row[f] for f in CANDLE_FIELDS) for row in before + inside}
    by_time.update({row[3]: row for row in stored})
    times = sorted(by_time)
    earlier = [t for t in times if t <= query.start]
    return [by_time[t] for t in earlier[-1:] + [t for t in times if t > query.start]]


# An account's records are served apart, to those who may see them (marketdata.accounts).
ACCOUNT_TYPES = ("balance", "position", "order")


def market_data(query: MarketDataFilter) -> QuerySet[MarketData]:
    queryset = MarketData.objects.exclude(data_type__in=ACCOUNT_TYPES)
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


# archived ranges --------------------------------------------------------------------
# Days whose rows have left the database (ArchiveFile.removed_at is set) are read from
# their Parquet files with the same filters, so a page spanning the hot window's edge is
# the same as if every row were still in the database (docs/data-lifecycle.md). Files are
# read a day at a time, in page order, until the page is full.

MARKET_DATA_KINDS = ("orderbook", "ticker", "candle", "balance")


@dataclass(slots=True, frozen=True)
class ArchivedPage:
    """What one page needs from the archive: how many rows, after which row, in which order."""

    limit: int
    after: tuple[datetime, int] | None = None
    descending: bool = False


def archived_trades(
    query: TradeFilter, page: ArchivedPage, fields: tuple[str, ...], as_text: frozenset[str]
) -> list[dict[str, Any]]:
    where = _market(query.exchange, query.symbol) & _range(query.start, query.end)
    if query.side is not None:
        where &= ds.field("side") == query.side
    where &= _archived_received_by(query.as_of)
    return _archived_rows(["trade"], query.exchange, query, where, page, fields, as_text)


def archived_market_data(
    query: MarketDataFilter, page: ArchivedPage, fields: tuple[str, ...], as_text: frozenset[str]
) -> list[dict[str, Any]]:
    kinds = [query.data_type] if query.data_type else list(MARKET_DATA_KINDS)
    kinds = [kind for kind in kinds if kind in MARKET_DATA_KINDS and kind not in ACCOUNT_TYPES]
    where = _market(query.exchange, query.symbol) & _range(query.start, query.end)
    where &= _archived_received_by(query.as_of)
    return _archived_rows(kinds, query.exchange, query, where, page, fields, as_text)


def archived_candles(
    query: CandleFilter,
    page: ArchivedPage,
    fields: tuple[str, ...],
    as_text: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    where = _market(query.exchange, query.symbol) & (ds.field("timeframe") == query.timeframe)
    if query.start is not None:
        where &= ds.field("timestamp") > query.start
    if query.end is not None:
        where &= ds.field("timestamp") <= query.end
    if query.as_of is not None:
        where &= (
            (ds.field("is_final") == True)  # noqa: E712 (an expression, not a comparison)
            & (ds.field("timestamp") <= query.as_of)
            & (ds.field("updated_at") <= query.as_of)
        )
    elif not query.include_partial:
        where &= ds.field("is_final") == True  # noqa: E712
    return _archived_rows(["candles"], query.exchange, query, where, page, fields, as_text)


def _market(exchange: str | None, symbol: str | None) -> ds.Expression:
    if exchange is None:
        return ds.scalar(True)
    return (ds.field("exchange") == exchange) & (ds.field("symbol") == symbol)


def _range(start: datetime | None, end: datetime | None) -> ds.Expression:
    where = ds.scalar(True)
    if start is not None:
        where &= ds.field("timestamp") >= start
    if end is not None:
        where &= ds.field("timestamp") < end
    return where


def _archived_received_by(as_of: datetime | None) -> ds.Expression:
    if as_of is None:
        return ds.scalar(True)
    return (ds.field("created_at") <= as_of) & (ds.field("timestamp") <= as_of + CLOCK_SKEW)


def _archived_rows(
    kinds: list[str],
    exchange: str | None,
    query: Any,
    where: ds.Expression,
    page: ArchivedPage,
    fields: tuple[str, ...],
    as_text: frozenset[str],
) -> list[dict[str, Any]]:
    """Up to page.limit archived rows after page.after, in page order, as fetch_values
    gives them: decimals in `as_text` as plain text, JSON decoded, UTC datetimes."""
    files = ArchiveFile.objects.filter(kind__in=kinds, removed_at__isnull=False)
    if exchange is not None:
        files = files.filter(exchange=exchange)
    if query.start is not None:
        files = files.filter(day__gte=day_of(query.start))
    if query.end is not None:
        files = files.filter(day__lte=day_of(query.end))
    if page.after is not None:
        moment = page.after[0]
        bound = "day__lte" if page.descending else "day__gte"
        files = files.filter(**{bound: day_of(moment)})
        where &= _after_row(page.after, page.descending)
    by_day: dict[date, list[str]] = {}
    for record in files.order_by("-day" if page.descending else "day"):
        by_day.setdefault(record.day, []).append(str(archive_dir() / record.path))
    rows: list[dict[str, Any]] = []
    columns = list(dict.fromkeys([*fields, "timestamp", "id"]))
    order = "descending" if page.descending else "ascending"
    for paths in by_day.values():
        try:
            table = ds.dataset(paths, format="parquet").to_table(columns=columns, filter=where)
        except (OSError, pa.ArrowException) as error:
            names = ", ".join(Path(p).relative_to(archive_dir()).as_posix() for p in paths)
            raise ArchiveError(f"archive files cannot be read: {names}") from error
        table = table.sort_by([("timestamp", order), ("id", order)]).select(list(fields))
        rows.extend(table.slice(0, page.limit - len(rows)).to_pylist())
        if len(rows) >= page.limit:
            break
    json_fields = {"data", "raw_data"}
    for row in rows:
        for name in as_text:
            row[name] = decimal_text(row[name])
        for name in json_fields.intersection(row):
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows


def _after_row(after: tuple[datetime, int], descending: bool) -> ds.Expression:
    moment, row_id = after
    if descending:
        return (ds.field("timestamp") < moment) | (
            (ds.field("timestamp") == moment) & (ds.field("id") < row_id)
        )
    return (ds.field("timestamp") > moment) | (
        (ds.field("timestamp") == moment) & (ds.field("id") > row_id)
    )


def merge_pages(
    stored: list[dict[str, Any]], archived: list[dict[str, Any]], descending: bool
) -> list[dict[str, Any]]:
    """Rows of both sources in page order, each (timestamp, id) once: a row restored from
    the archive into the database is the same row."""
    merged = {(row["timestamp"], row["id"]): row for row in archived}
    merged.update({(row["timestamp"], row["id"]): row for row in stored})
    return [merged[key] for key in sorted(merged, reverse=descending)]
