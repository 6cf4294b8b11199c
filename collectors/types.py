"""The normalized data types every exchange adapter produces and every consumer reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any


class DataType(Enum):
    TICKER = "ticker"  # Price and volume updates
    TRADE = "trade"  # Individual trade executions
    ORDERBOOK = "orderbook"  # Order book snapshots
    CANDLE = "candle"  # OHLCV candle data
    BALANCE = "balance"  # Account balance updates
    # Beyond the spec's five: an account's other records (docs/data-model.md)
    POSITION = "position"  # Open positions of an account
    ORDER = "order"  # An account's orders and their fills


# What only a logged-in (private) connection of an account delivers, never a trading pair.
ACCOUNT_DATA_TYPES = (DataType.BALANCE, DataType.POSITION, DataType.ORDER)
# An account's collector stands where a symbol would: "okx:account:main".
ACCOUNT_SYMBOL_PREFIX = "account:"
ACCOUNT_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,40}\Z")


def account_symbol(account: str) -> str:
    return f"{ACCOUNT_SYMBOL_PREFIX}{account}"


def account_of(config_symbol: str) -> str | None:
    """The account an account collector's symbol names; None for a trading pair."""
    if config_symbol.startswith(ACCOUNT_SYMBOL_PREFIX):
        return config_symbol[len(ACCOUNT_SYMBOL_PREFIX) :]
    return None


TRADE_SIDES = ("buy", "sell")

# A collector's settings (the spec's exchange configuration) where nothing sets them: the
# admin's fields, the configuration file and a running collector all default from here.
COLLECTOR_DEFAULTS = {
    "ping_interval": 25.0,
    "pong_timeout": 10.0,
    "max_reconnect_attempts": 5,
    "reconnect_delay": 5.0,
    "store_raw_data": True,
    "health_check_interval": 30.0,
    "auto_restart": True,
    "buffer_size": 1000,
    "max_silence_duration": 60.0,
    # Big enough for any exchange's message (OKX's largest, a 400-level books snapshot, is
    # ~40 KB); small enough that a hostile peer costs a connection at most about this much.
    "max_message_bytes": 4 * 1024 * 1024,
}


@dataclass(slots=True, frozen=True)
class MarketDataPoint:
    """One normalized data point.

    `data` holds the normalized fields (Decimals for prices and sizes) and, under
    "raw", the exchange's original item. For a TRADE: trade_id, price, size, side.
    """

    exchange: str  # Exchange name (e.g., 'okx', 'binance')
    symbol: str  # Trading symbol (e.g., 'BTC-USDT')
    timestamp: datetime  # Data timestamp (UTC)
    data_type: DataType  # Type of data (TRADE, ORDERBOOK, etc.)
    data: dict[str, Any]  # Raw data payload


POINT_FIELDS = ("exchange", "symbol", "timestamp", "data_type", "data")
if tuple(f.name for f in fields(MarketDataPoint)) != POINT_FIELDS:
    raise RuntimeError("trade_point() sets MarketDataPoint's fields: update it with them")
_new_point = object.__new__
_set_exchange, _set_symbol, _set_timestamp, _set_data_type, _set_data = (
    getattr(MarketDataPoint, name).__set__ for name in POINT_FIELDS
)


def trade_point(exchange: str, symbol: str, timestamp: datetime, data: dict) -> MarketDataPoint:
    """MarketDataPoint(exchange, symbol, timestamp, DataType.TRADE, data), the same object,
    made in half the time: the frozen dataclass's __init__ sets each field through
    object.__setattr__, about a microsecond a point, and the parsers make one per trade."""
    point = _new_point(MarketDataPoint)
    _set_exchange(point, exchange)
    _set_symbol(point, symbol)
    _set_timestamp(point, timestamp)
    _set_data_type(point, DataType.TRADE)
    _set_data(point, data)
    return point


def validate_market_data_point(data_point: Any) -> None:
    """Raise ValueError naming the first thing wrong with a data point."""
    if type(data_point) is MarketDataPoint and _plainly_valid(data_point):
        return
    required_fields = ["exchange", "symbol", "timestamp", "data_type", "data"]
    for name in required_fields:
        if not hasattr(data_point, name):
            raise ValueError(f"Missing required field: {name}")
    if not isinstance(data_point.data_type, DataType):
        raise ValueError("Invalid data_type")
    for name in ("exchange", "symbol"):
        value = getattr(data_point, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"Invalid {name}: {value!r}")
    timestamp = data_point.timestamp
    if not isinstance(timestamp, datetime) or timestamp.utcoffset() is None:
        raise ValueError(f"Invalid timestamp (needs an aware datetime): {timestamp!r}")
    if not isinstance(data_point.data, dict):
        raise ValueError(f"Invalid data (needs a dict): {type(data_point.data).__name__}")
    if data_point.data_type is DataType.TRADE:
        _validate_trade(data_point.data)


def _plainly_valid(point: MarketDataPoint) -> bool:
    """True for a point of plain types (str, datetime in UTC, dict, Decimal) that passes
    every check below; False sends it through them. Every trade is checked twice (when
    parsed, when stored), so the common case is answered in a few comparisons."""
    try:
        exchange, symbol, data_type = point.exchange, point.symbol, point.data_type
        timestamp, data = point.timestamp, point.data
    except AttributeError:  # a field never set
        return False
    if not (
        type(exchange) is str
        and exchange
        and type(symbol) is str
        and symbol
        and type(timestamp) is datetime
        and timestamp.tzinfo is UTC
        and type(data) is dict
    ):
        return False
    if data_type is not DataType.TRADE:
        return type(data_type) is DataType
    price, size, trade_id = data.get("price"), data.get("size"), data.get("trade_id")
    return (
        type(price) is Decimal
        and price.is_finite()
        and price > 0
        and type(size) is Decimal
        and size.is_finite()
        and size > 0
        and data.get("side") in TRADE_SIDES
        and type(trade_id) is str
        and 0 < len(trade_id) <= 100
    )


def _validate_trade(data: dict[str, Any]) -> None:
    for name in ("price", "size"):
        value = data.get(name)
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise ValueError(f"Invalid trade {name}: {value!r}")
    if data.get("side") not in TRADE_SIDES:
        raise ValueError(f"Invalid trade side: {data.get('side')!r}")
    trade_id = data.get("trade_id")
    if not isinstance(trade_id, str) or not trade_id or len(trade_id) > 100:
        raise ValueError(f"Invalid trade_id: {trade_id!r}")


@dataclass
class ExchangeCollectorConfig:
    """What one collector collects: an exchange, a symbol and its data types.

    Connection settings (URLs, ping_interval, pong_timeout, reconnect_delay,
    max_reconnect_attempts, buffer_size, channels, max_silence_duration) travel
    in `custom_params` under the names of the spec's exchange configuration.
    """

    exchange: str
    symbol: str
    data_types: list[DataType]
    auto_restart: bool = COLLECTOR_DEFAULTS["auto_restart"]
    health_check_interval: float = COLLECTOR_DEFAULTS["health_check_interval"]
    store_raw_data: bool = COLLECTOR_DEFAULTS["store_raw_data"]
    custom_params: dict[str, Any] | None = field(default=None)

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.symbol}"
