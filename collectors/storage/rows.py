"""Rows: how a data point is held, spilled and written (a tuple of strings per row)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from collectors.times import utc_text
from collectors.types import DataType, MarketDataPoint, validate_market_data_point

# A trade row: exchange, symbol, trade_id, price, size, side, timestamp, raw_data (JSON or None).
# A market data row: exchange, symbol, data_type, timestamp, data (JSON). All strings, so a
# row is as cheap to hold, to COPY and to spill as it can be; they differ by length.
Row = tuple
TRADE_ROW_LENGTH = 8
MARKET_ROW_LENGTH = 5

MAX_TEXT_LENGTH = 50  # exchange and symbol columns are VARCHAR(50)
# DECIMAL(20, 8): anything that rounds to 10**12 at 8 places overflows the column.
MAX_PRICE = Decimal("999999999999.999999995")


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    """JSON text for a JSONB column: Decimals as strings; PostgreSQL refuses NUL characters."""
    text = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    if "\\u0000" in text:
        raise ValueError("JSON with a NUL character")
    return text


def raw_json(raw: Any) -> str:
    """to_json() of a trade's raw item, which is almost always JSON as parsed (plain types,
    string keys): orjson's plain call writes the same text a third faster; else to_json."""
    try:
        text = orjson.dumps(raw).decode()
    except orjson.JSONEncodeError:
        return to_json(raw)
    if "\\u0000" in text:
        raise ValueError("JSON with a NUL character")
    return text


def _check_text(name: str, value: str, limit: int = MAX_TEXT_LENGTH) -> str:
    if len(value) > limit or "\x00" in value:
        raise ValueError(f"Invalid {name}: {value[:60]!r}")
    return value


def _decimal_text(name: str, value: Decimal) -> str:
    if not value < MAX_PRICE:
        raise ValueError(f"Invalid trade {name} (too large for DECIMAL(20, 8)): {value}")
    # str() is format(value, "f") whenever it writes no exponent, and takes half the time
    text = str(value)
    return format(value, "f") if "E" in text or "e" in text else text


class _LastTime:
    """The text of the last timestamp written: trades arriving together mostly share their
    exchange's millisecond, often the very datetime object (the parsers reuse it)."""

    __slots__ = ("pair",)

    def __init__(self) -> None:
        self.pair: tuple[datetime | None, str] = (None, "")

    def text(self, value: datetime) -> str:
        last, text = self.pair  # one tuple, swapped whole: safe across collector threads
        if value is last or value == last:
            return text
        text = utc_text(value)
        self.pair = (value, text)
        return text


_last_time = _LastTime()


def point_to_row(point: MarketDataPoint) -> Row:
    """The row a point is stored as; ValueError or TypeError for a point that cannot be."""
    validate_market_data_point(point)
    exchange = _check_text("exchange", point.exchange)
    symbol = _check_text("symbol", point.symbol)
    timestamp = _last_time.text(point.timestamp)
    data = point.data
    if point.data_type is DataType.TRADE:
        raw = data.get("raw")
        return (
            exchange,
            symbol,
            _check_text("trade_id", data["trade_id"], 100),
            _decimal_text("price", data["price"]),
            _decimal_text("size", data["size"]),
            data["side"],
            timestamp,
            None if raw is None else raw_json(raw),
        )
    return (exchange, symbol, point.data_type.value, timestamp, to_json(data))


def point_from_row(row: Row) -> MarketDataPoint:
    """The point as stored: Decimals for a trade's price and size, JSON types elsewhere."""
    if len(row) == TRADE_ROW_LENGTH:
        exchange, symbol, trade_id, price, size, side, timestamp, raw = row
        data = {"trade_id": trade_id, "price": Decimal(price), "size": Decimal(size), "side": side}
        if raw is not None:
            data["raw"] = orjson.loads(raw)
        return MarketDataPoint(
            exchange, symbol, datetime.fromisoformat(timestamp), DataType.TRADE, data
        )
    exchange, symbol, data_type, timestamp, data = row
    return MarketDataPoint(
        exchange,
        symbol,
        datetime.fromisoformat(timestamp),
        DataType(data_type),
        orjson.loads(data),
    )


def split_rows(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    trades = [row for row in rows if len(row) == TRADE_ROW_LENGTH]
    if len(trades) == len(rows):
        return trades, []
    return trades, [row for row in rows if len(row) != TRADE_ROW_LENGTH]
