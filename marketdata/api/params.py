"""Query parameters of the API: parsed into selector filters, every problem named at once.

Times are ISO 8601 (a time without an offset is UTC; a date alone is its midnight) or
integer epoch milliseconds, from 1970 to 2999: market data has no earlier time, and a
later one only serves to overflow the date arithmetic behind a query. A bad parameter is a
400 whose body maps the parameter's name to what is wrong with it; unknown parameters are
refused too, so a misspelt filter never silently widens an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework.exceptions import ValidationError

from collectors.exchanges import supported_exchanges
from marketdata import candles
from marketdata.api.pagination import Cursor, PageRequest, decode_cursor
from marketdata.selectors import CandleFilter, MarketDataFilter, TradeFilter
from marketdata.times import parse_time

TIMEFRAMES = tuple(candles.TIMEFRAMES)  # the widths the `candles` table holds
TRADE_SIDES = ("buy", "sell")
# Data types kept in market_data; trades have their own table and endpoint.
MARKET_DATA_TYPES = ("ticker", "orderbook", "candle")  # balances: /api/v1/balances/
ORDERS = ("asc", "desc")
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
# Parameters DRF itself reads: the renderer override (?format=csv).
FRAMEWORK_PARAMETERS = ("format",)

EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)  # exclusive
TIME_RANGE = "1970 to 2999"
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,49}")
MAX_TEXT = 200
ECHO = 40  # characters of a bad value quoted back


def _quote(value: str) -> str:
    return repr(value[:ECHO] + ("..." if len(value) > ECHO else ""))


class QueryReader:
    """Reads one request's query parameters, collecting every problem before raising them."""

    def __init__(self, query: QueryDict, allowed: tuple[str, ...]) -> None:
        self.query = query
        self.errors: dict[str, list[str]] = {}
        known = set(allowed) | set(FRAMEWORK_PARAMETERS)
        for name in query:
            if name not in known:
                self.error(
                    name[:ECHO], f"unknown parameter; expected one of {', '.join(sorted(known))}"
                )

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def text(self, name: str, *, required: bool = False) -> str | None:
        values = self.query.getlist(name)
        if not values:
            if required:
                self.error(name, f"{name} is required")
            return None
        if len(values) > 1:
            self.error(name, f"{name} is given {len(values)} times; give it once")
            return None
        value = values[0]
        if not value:
            self.error(name, f"{name} is empty")
            return None
        if len(value) > MAX_TEXT or "\x00" in value:
            self.error(name, f"{name} is not a valid value")
            return None
        return value

    def choice(self, name: str, choices: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        if value is not None and value not in choices:
            self.error(name, f"unknown {name} {_quote(value)}; one of {', '.join(choices)}")
            return None
        return value

    def exchange(self, *, required: bool = False) -> str | None:
        return self.choice("exchange", tuple(supported_exchanges()), required=required)

    def symbol(self, *, required: bool = False) -> str | None:
        value = self.text("symbol", required=required)
        if value is not None and not SYMBOL.fullmatch(value):
            self.error("symbol", f"symbol {_quote(value)} is not a trading symbol like BTC-USDT")
            return None
        return value

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            moment = parse_time(value)
        except ValueError as error:
            moment, problem = None, str(error)
        else:
            problem = "" if EARLIEST_TIME <= moment < LATEST_TIME else "is out of range"
        if not problem:
            return moment
        if not problem.startswith("is not a time"):  # a time, but before 1970 or after 2999
            problem = f"is out of range: give a time in {TIME_RANGE}"
        self.error(name, f"{name} {_quote(value)} {problem}")
        return None

    def boolean(self, name: str) -> bool:
        value = self.text(name)
        if value is None:
            return False
        word = value.lower()
        if word in TRUE_WORDS:
            return True
        if word not in FALSE_WORDS:
            self.error(name, f"{name} must be true or false, not {_quote(value)}")
        return False

    def limit(self) -> int:
        maximum = settings.API_MAX_PAGE_SIZE
        default = min(settings.API_PAGE_SIZE, maximum)
        value = self.text("limit")
        if value is None:
            return default
        if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
            self.error("limit", f"limit must be a whole number from 1 to {maximum}")
            return default
        return int(value)

    def cursor(self) -> Cursor | None:
        value = self.text("cursor")
        if value is None:
            return None
        try:
            return decode_cursor(value)
        except ValueError:
            self.error("cursor", "cursor is not one this API issued; follow the `next` link")
            return None

    def pair(self, *, required: bool = False) -> tuple[str | None, str | None]:
        """Exchange and symbol, which filter together."""
        given = {name for name in ("exchange", "symbol") if name in self.query}
        exchange, symbol = self.exchange(required=required), self.symbol(required=required)
        if not required and len(given) == 1:
            missing = ({"exchange", "symbol"} - given).pop()
            self.error(missing, f"{missing} is required with {given.pop()}")
        return exchange, symbol

    def time_range(self) -> tuple[datetime | None, datetime | None]:
        start, end = self.time("start"), self.time("end")
        if start is None or end is None:
            return start, end
        if end <= start:
            self.error("end", "end must be later than start")
        elif end - start > timedelta(days=settings.API_MAX_RANGE_DAYS):
            days = (end - start) / timedelta(days=1)
            self.error(
                "end",
                f"start to end spans {days:.1f} days; the most is "
                f"{settings.API_MAX_RANGE_DAYS} days, so split the range",
            )
        return start, end

    def page(self, default_order: str) -> PageRequest:
        order = self.choice("order", ORDERS) or default_order
        cursor = self.cursor()
        limit = self.limit()
        if cursor is not None and cursor.descending != (order == "desc"):
            self.error("cursor", "cursor was issued for the other order; keep order as it was")
        return PageRequest(limit=limit, cursor=cursor, descending=order == "desc")

    def done(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


PAGE_NAMES = ("order", "cursor", "limit")


def trade_query(query: QueryDict) -> tuple[TradeFilter, PageRequest]:
    reader = QueryReader(
        query, ("exchange", "symbol", "start", "end", "side", "as_of", *PAGE_NAMES)
    )
    exchange, symbol = reader.pair()
    start, end = reader.time_range()
    found = TradeFilter(
        exchange=exchange,
        symbol=symbol,
        start=start,
        end=end,
        side=reader.choice("side", TRADE_SIDES),
        as_of=reader.time("as_of"),
    )
    page = reader.page(default_order="desc")
    reader.done()
    return found, page


def candle_query(query: QueryDict) -> tuple[CandleFilter, PageRequest]:
    reader = QueryReader(
        query,
        (
            "exchange",
            "symbol",
            "timeframe",
            "start",
            "end",
            "include_partial",
            "as_of",
            "fill",
            *PAGE_NAMES,
        ),
    )
    exchange, symbol = reader.pair(required=True)
    timeframe = reader.choice("timeframe", TIMEFRAMES, required=True)
    start, end = reader.time_range()
    include_partial = reader.boolean("include_partial")
    as_of = reader.time("as_of")
    if include_partial and as_of is not None:
        reader.error(
            "include_partial", "include_partial cannot be used with as_of (final candles only)"
        )
    fill = reader.boolean("fill")
    page = reader.page(default_order="asc")
    if fill:
        check_fill(reader, timeframe, start, end, include_partial)
    reader.done()
    return CandleFilter(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        include_partial=include_partial,
        as_of=as_of,
        fill=fill,
    ), page


def check_fill(
    reader: QueryReader,
    timeframe: str | None,
    start: datetime | None,
    end: datetime | None,
    include_partial: bool,
) -> None:
    """A filled series comes whole, in one answer: it needs a range of a bounded size."""
    for name in ("start", "end"):
        if name not in reader.query:
            reader.error(name, f"{name} is required with fill=true")
    if include_partial:
        reader.error("include_partial", "fill=true covers closed intervals only")
    for name in ("cursor", "limit"):
        if name in reader.query:
            reader.error(name, f"fill=true answers the whole range at once; leave out {name}")
    maximum = settings.API_MAX_PAGE_SIZE
    if timeframe is not None and start is not None and end is not None and end > start:
        intervals = (end - start) // candles.timeframe_delta(timeframe)
        if intervals > maximum:
            reader.error(
                "end",
                f"fill=true answers at most {maximum} candles; start to end holds "
                f"{intervals} {timeframe} intervals, so split the range",
            )


def market_data_query(query: QueryDict) -> tuple[MarketDataFilter, PageRequest]:
    reader = QueryReader(
        query, ("data_type", "exchange", "symbol", "start", "end", "as_of", *PAGE_NAMES)
    )
    data_type = reader.text("data_type")
    if data_type == "trade":
        reader.error("data_type", "trades are served by /api/v1/trades/")
        data_type = None
    elif data_type is not None and data_type not in MARKET_DATA_TYPES:
        reader.error(
            "data_type",
            f"unknown data_type {_quote(data_type)}; one of {', '.join(MARKET_DATA_TYPES)}",
        )
        data_type = None
    exchange, symbol = reader.pair()
    if "data_type" not in query and "exchange" not in query and "symbol" not in query:
        reader.error("data_type", "give data_type, or exchange and symbol, or all three")
    start, end = reader.time_range()
    found = MarketDataFilter(
        data_type=data_type,
        exchange=exchange,
        symbol=symbol,
        start=start,
        end=end,
        as_of=reader.time("as_of"),
    )
    page = reader.page(default_order="desc")
    reader.done()
    return found, page


@dataclass(slots=True, frozen=True)
class LatestQuery:
    exchange: str
    symbol: str
    as_of: datetime | None = None


def latest_query(query: QueryDict) -> LatestQuery:
    reader = QueryReader(query, ("exchange", "symbol", "as_of"))
    exchange, symbol = reader.pair(required=True)
    as_of = reader.time("as_of")
    reader.done()
    return LatestQuery(exchange=exchange, symbol=symbol, as_of=as_of)


# OpenAPI descriptions of the parameters above --------------------------------------

TIME_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,15}$"},
    ]
}
TIME_HELP = (
    f"ISO 8601 (2024-01-31T12:00:00Z; no offset means UTC) or epoch milliseconds, in {TIME_RANGE}."
)


def _query(name: str, kind, description: str, **extra) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **extra)


def _exchange(required: bool) -> OpenApiParameter:
    return _query(
        "exchange",
        OpenApiTypes.STR,
        "Exchange name" + ("." if required else "; needs `symbol`."),
        required=required,
        enum=supported_exchanges(),
    )


def _symbol(required: bool) -> OpenApiParameter:
    return _query(
        "symbol",
        {"type": "string", "pattern": f"^{SYMBOL.pattern}$"},
        "Trading symbol, e.g. BTC-USDT" + ("." if required else "; needs `exchange`."),
        required=required,
        examples=[OpenApiExample("BTC-USDT", value="BTC-USDT")],
    )


def _time(name: str, description: str, example: str) -> OpenApiParameter:
    return _query(
        name,
        TIME_SCHEMA,
        f"{description} {TIME_HELP}",
        examples=[OpenApiExample(example, value=example)],
    )


AS_OF = _time(
    "as_of",
    "Point in time: only what the platform had received by then (by its `created_at`).",
    "2024-01-02T00:00:00Z",
)


def _page(default_order: str) -> list[OpenApiParameter]:
    return [
        _query(
            "order",
            OpenApiTypes.STR,
            f"`asc` (oldest first) or `desc` (newest first); default `{default_order}`.",
            enum=list(ORDERS),
        ),
        _query("cursor", OpenApiTypes.STR, "Opaque position from a previous page's `next`."),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": settings.API_MAX_PAGE_SIZE},
            f"Rows per page; default {min(settings.API_PAGE_SIZE, settings.API_MAX_PAGE_SIZE)}.",
        ),
    ]


def trade_parameters() -> list[OpenApiParameter]:
    return [
        _exchange(False),
        _symbol(False),
        _time("start", "Trades at or after this exchange time.", "2024-01-01T00:00:00Z"),
        _time("end", "Trades before this exchange time.", "2024-01-02T00:00:00Z"),
        _query("side", OpenApiTypes.STR, "Taker side.", enum=list(TRADE_SIDES)),
        AS_OF,
        *_page("desc"),
    ]


def candle_parameters() -> list[OpenApiParameter]:
    return [
        _exchange(True),
        _symbol(True),
        _query("timeframe", OpenApiTypes.STR, "Candle width.", required=True, enum=TIMEFRAMES),
        _time(
            "start",
            "Candles ending after this time (the interval starts at or after it).",
            "2024-01-01T00:00:00Z",
        ),
        _time("end", "Candles ending at or before this time.", "1704153600000"),
        _query(
            "include_partial",
            OpenApiTypes.BOOL,
            "Also the candle still open (is_final false); not with `as_of`.",
        ),
        _time(
            "as_of",
            "Point in time: only candles that were final by then, as they were.",
            "2024-01-02T00:00:00Z",
        ),
        _query(
            "fill",
            OpenApiTypes.BOOL,
            "A candle for every closed interval from start to end, in one answer: an "
            "interval without trades gets one at the previous close, with no volume and "
            "trade_count 0 (none before the first stored candle). Needs start and end; not "
            "with include_partial, cursor or limit.",
        ),
        *_page("asc"),
    ]


def market_data_parameters() -> list[OpenApiParameter]:
    return [
        _query(
            "data_type",
            OpenApiTypes.STR,
            "Data type; give it, or exchange and symbol, or all three.",
            enum=list(MARKET_DATA_TYPES),
        ),
        _exchange(False),
        _symbol(False),
        _time("start", "Points at or after this exchange time.", "2024-01-01T00:00:00Z"),
        _time("end", "Points before this exchange time.", "2024-01-02T00:00:00Z"),
        AS_OF,
        *_page("desc"),
    ]


def latest_parameters() -> list[OpenApiParameter]:
    return [_exchange(True), _symbol(True), AS_OF]
