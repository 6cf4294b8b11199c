"""The kinds of stored data the lifecycle knows: where each lives, its time, its archive columns.

A kind's rows are one queryset (`Kind.rows()`); its `time_field` decides which UTC day a
row belongs to. Archived kinds have the Parquet columns their files hold: prices and sizes
as exact decimals, times as UTC microseconds, JSON as its text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from django.db.models import QuerySet

from collectors.models import RETENTION_KINDS, CollectorStatus
from marketdata.models import Candle, MarketData, RawTrade

TIME = pa.timestamp("us", tz="UTC")


@dataclass(slots=True, frozen=True)
class Column:
    name: str
    type: pa.DataType
    json: bool = False  # stored as JSON in the database, archived as its text


TRADE_COLUMNS = (
    Column("id", pa.int64()),
    Column("exchange", pa.string()),
    Column("symbol", pa.string()),
    Column("trade_id", pa.string()),
    Column("price", pa.decimal128(20, 8)),
    Column("size", pa.decimal128(20, 8)),
    Column("side", pa.string()),
    Column("timestamp", TIME),
    Column("raw_data", pa.string(), json=True),
    Column("created_at", TIME),
)
MARKET_DATA_COLUMNS = (
    Column("id", pa.int64()),
    Column("exchange", pa.string()),
    Column("symbol", pa.string()),
    Column("data_type", pa.string()),
    Column("timestamp", TIME),
    Column("data", pa.string(), json=True),
    Column("created_at", TIME),
)
CANDLE_COLUMNS = (
    Column("id", pa.int64()),
    Column("exchange", pa.string()),
    Column("symbol", pa.string()),
    Column("timeframe", pa.string()),
    Column("timestamp", TIME),
    *(Column(name, pa.decimal128(20, 8)) for name in ("open", "high", "low", "close")),
    Column("volume", pa.decimal128(30, 8)),
    Column("quote_volume", pa.decimal128(38, 16)),
    Column("vwap", pa.decimal128(20, 8)),
    Column("trade_count", pa.int64()),
    Column("is_final", pa.bool_()),
    Column("created_at", TIME),
    Column("updated_at", TIME),
)


@dataclass(slots=True, frozen=True)
class Kind:
    name: str
    label: str
    time_field: str
    columns: tuple[Column, ...] | None  # None: not archived, only removed

    @property
    def archived(self) -> bool:
        return self.columns is not None

    def rows(self) -> QuerySet:
        if self.name == "trade":
            return RawTrade.objects.all()
        if self.name in ("orderbook", "ticker", "candle", "balance"):
            return MarketData.objects.filter(data_type=self.name)
        if self.name == "candles":
            return Candle.objects.exclude(timeframe="1s")
        if self.name == "candles_1s":
            return Candle.objects.filter(timeframe="1s")
        return CollectorStatus.objects.all()

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])


ARCHIVE_COLUMNS = {
    "trade": TRADE_COLUMNS,
    "orderbook": MARKET_DATA_COLUMNS,
    "ticker": MARKET_DATA_COLUMNS,
    "candle": MARKET_DATA_COLUMNS,
    "balance": MARKET_DATA_COLUMNS,
    "candles": CANDLE_COLUMNS,
}
KINDS = {
    name: Kind(
        name,
        label,
        "recorded_at" if name == "collector_status" else "timestamp",
        ARCHIVE_COLUMNS.get(name),
    )
    for name, label in RETENTION_KINDS
}
