"""The API's output shapes: declared fields document them, `to_representation` builds them.

Rows arrive as dicts (`selectors.fetch_values`), so building a page of a thousand rows is
a thousand small dicts, not a thousand model instances and field objects.
Decimals leave as strings in plain notation (never floats, never exponents), read as
text from the database; times as ISO 8601 in UTC with a Z.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers

from marketdata.models import MarketData
from marketdata.times import utc_text


def time_text(value: datetime | None) -> str | None:
    return None if value is None else utc_text(value)


def json_number_text(value: Any) -> str | None:
    """A price or size kept in market_data JSON (a string there) as a string, or None."""
    if value is None or value == "" or isinstance(value, dict | list | bool):
        return None
    return str(value)


def _price(**extra) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=8, **extra)


class TradeSerializer(serializers.Serializer):
    """One stored trade."""

    COLUMNS = ("id", "exchange", "symbol", "trade_id", "price", "size", "side", "timestamp")
    COLUMNS += ("created_at",)
    TEXT_COLUMNS = frozenset({"price", "size"})  # read as text: plain decimal notation

    exchange = serializers.CharField()
    symbol = serializers.CharField()
    trade_id = serializers.CharField(allow_null=True)
    price = _price()
    size = _price()
    side = serializers.CharField(help_text="Taker side: buy or sell.")
    timestamp = serializers.DateTimeField(help_text="Exchange time of the trade.")
    received_at = serializers.DateTimeField(
        allow_null=True, help_text="When the platform stored it (what `as_of` compares with)."
    )

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "exchange": row["exchange"],
            "symbol": row["symbol"],
            "trade_id": row["trade_id"],
            "price": row["price"],
            "size": row["size"],
            "side": row["side"],
            "timestamp": time_text(row["timestamp"]),
            "received_at": time_text(row["created_at"]),
        }


class CandleSerializer(serializers.Serializer):
    """One OHLCV candle; `timestamp` is the END of its interval (it covers T - W <= t < T)."""

    COLUMNS = ("id", "timestamp", "open", "high", "low", "close", "volume", "quote_volume")
    COLUMNS += ("vwap", "trade_count", "is_final")
    CSV_HEADER = COLUMNS[1:]
    TEXT_COLUMNS = frozenset({"open", "high", "low", "close", "volume", "quote_volume", "vwap"})

    timestamp = serializers.DateTimeField(help_text="End of the interval (exclusive).")
    open = _price()
    high = _price()
    low = _price()
    close = _price()
    volume = serializers.DecimalField(max_digits=30, decimal_places=8)
    quote_volume = serializers.DecimalField(max_digits=38, decimal_places=16)
    vwap = _price()
    trade_count = serializers.IntegerField(min_value=0)
    is_final = serializers.BooleanField(help_text="False for the candle still open.")

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "timestamp": time_text(row["timestamp"]),
            "open": row["open"],
            "high": row["high"],
            "low": row["low"],
            "close": row["close"],
            "volume": row["volume"],
            "quote_volume": row["quote_volume"],
            "vwap": row["vwap"],
            "trade_count": row["trade_count"],
            "is_final": row["is_final"],
        }


class MarketDataSerializer(serializers.Serializer):
    """One stored data point; `data` is as the collector stored it (prices as strings)."""

    COLUMNS = ("id", "exchange", "symbol", "data_type", "timestamp", "created_at", "data")
    TEXT_COLUMNS = frozenset()

    exchange = serializers.CharField()
    symbol = serializers.CharField()
    data_type = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="Exchange time of the data point.")
    received_at = serializers.DateTimeField(allow_null=True)
    data = serializers.JSONField()

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "exchange": row["exchange"],
            "symbol": row["symbol"],
            "data_type": row["data_type"],
            "timestamp": time_text(row["timestamp"]),
            "received_at": time_text(row["created_at"]),
            "data": row["data"],
        }


def _levels(levels: Any) -> list[list[str]]:
    """[[price, size], ...] as strings from the stored levels ([px, sz, ...] each)."""
    if not isinstance(levels, list):
        return []
    return [
        [str(level[0]), str(level[1])]
        for level in levels
        if isinstance(level, list | tuple) and len(level) >= 2
    ]


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LatestSerializer(serializers.Serializer):
    """The fields every latest-point answer starts with."""

    exchange = serializers.CharField()
    symbol = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="Exchange time of the data point.")
    received_at = serializers.DateTimeField(allow_null=True)

    def head(self, point: MarketData) -> dict[str, Any]:
        return {
            "exchange": point.exchange,
            "symbol": point.symbol,
            "timestamp": time_text(point.timestamp),
            "received_at": time_text(point.created_at),
        }


class OrderBookSerializer(LatestSerializer):
    """The latest stored order book of a pair: levels as [price, size] strings, best first."""

    channel = serializers.CharField(allow_null=True)
    action = serializers.CharField(allow_null=True)
    bids = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2)
    )
    asks = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2)
    )
    seq_id = serializers.IntegerField(allow_null=True)
    checksum = serializers.IntegerField(allow_null=True)

    def to_representation(self, point: MarketData) -> dict[str, Any]:
        data = point.data if isinstance(point.data, dict) else {}
        text = {name: data.get(name) for name in ("channel", "action")}
        return {
            **self.head(point),
            **{name: value if isinstance(value, str) else None for name, value in text.items()},
            "bids": _levels(data.get("bids")),
            "asks": _levels(data.get("asks")),
            "seq_id": _integer(data.get("seq_id")),
            "checksum": _integer(data.get("checksum")),
        }


TICKER_FIELDS = ("last", "last_size", "bid", "bid_size", "ask", "ask_size", "open_24h")
TICKER_FIELDS += ("high_24h", "low_24h", "volume_24h", "volume_ccy_24h")


class TickerSerializer(LatestSerializer):
    """The latest stored ticker of a pair; prices and sizes as strings, null when absent."""

    def get_fields(self):
        fields = super().get_fields()
        for name in TICKER_FIELDS:
            fields[name] = serializers.CharField(allow_null=True, help_text="A decimal.")
        return fields

    def to_representation(self, point: MarketData) -> dict[str, Any]:
        data = point.data if isinstance(point.data, dict) else {}
        return {
            **self.head(point),
            **{name: json_number_text(data.get(name)) for name in TICKER_FIELDS},
        }


def page_serializer(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The documented shape of a page of `item`s."""
    name = item.__name__.removesuffix("Serializer") + "PageSerializer"
    return type(
        name,
        (serializers.Serializer,),
        {
            "__doc__": f"A page of {item.__name__.removesuffix('Serializer').lower()}s.",
            "next": serializers.URLField(
                allow_null=True, help_text="The next page; null on the last one."
            ),
            "results": item(many=True),
        },
    )


TradePageSerializer = page_serializer(TradeSerializer)
CandlePageSerializer = page_serializer(CandleSerializer)
MarketDataPageSerializer = page_serializer(MarketDataSerializer)
