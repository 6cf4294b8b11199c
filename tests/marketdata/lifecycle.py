"""What the data lifecycle tests share: a fixed now, days before it, rows stored on those
days, the partitions they need, and retention windows."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from marketdata import partitions
from marketdata.models import MarketData, RawTrade

NOW = datetime(2024, 3, 20, 15, 0, tzinfo=UTC)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def days_ago(count: int, hour: int = 12) -> datetime:
    return at((NOW - timedelta(days=count)).date(), hour)


def with_partitions(*days: date) -> None:
    """Partitions for these days (retention drops whole partitions; others use defaults)."""
    if partitions.partitioned():
        for day in days:
            for table in partitions.DAILY_TABLES:
                partitions.create_partition(table, day)


def add_trades(
    moment: datetime,
    count: int = 3,
    exchange: str = "okx",
    symbol: str = "BTC-USDT",
    first_id: int = 1,
) -> list[RawTrade]:
    return [
        RawTrade.objects.create(
            exchange=exchange,
            symbol=symbol,
            trade_id=str(first_id + n),
            price=Decimal("42000.12345678") + n,
            size=Decimal("0.00000001") * (n + 1),
            side="buy" if n % 2 else "sell",
            timestamp=moment + timedelta(seconds=n),
            raw_data={"px": "42000.12345678", "n": n},
        )
        for n in range(count)
    ]


def add_points(
    moment: datetime,
    data_type: str,
    count: int = 3,
    exchange: str = "okx",
    symbol: str = "BTC-USDT",
) -> list[MarketData]:
    return [
        MarketData.objects.create(
            exchange=exchange,
            symbol=symbol,
            data_type=data_type,
            timestamp=moment + timedelta(seconds=n),
            data={"bids": [["42000.10", "0.50"]], "asks": [["42000.2", "1"]], "seq_id": n},
        )
        for n in range(count)
    ]


WINDOWS = {
    "trade": 10,
    "orderbook": 2,
    "ticker": 5,
    "candle": 30,
    "balance": 365,
    "candles": 730,
    "candles_1s": 2,
    "collector_status": 3,
}
