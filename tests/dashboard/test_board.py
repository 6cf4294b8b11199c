"""The markets board's figures: 24 h from stored candles, the last trade, trades per minute."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collectors.models import Exchange, TradingPair
from dashboard import selectors
from marketdata.candles import CandleValue, store_candles
from marketdata.models import RawTrade

pytestmark = pytest.mark.django_db

NOW = datetime(2024, 3, 1, 12, 30, 30, tzinfo=UTC)  # the window starts 2024-02-29 12:30:30


def candle(timeframe, end, open_, high, low, close, volume, trades=10, final=True):
    values = [Decimal(v) for v in (open_, high, low, close, volume)]
    return CandleValue(
        "okx", "BTC-USDT", timeframe, end, *values[:4], values[4], values[4] * values[3],
        values[3], trades, is_final=final,
    )  # fmt: skip


@pytest.fixture
def market():
    exchange = Exchange.objects.create(name="okx", public_ws_url="ws://127.0.0.1:1/ws")
    TradingPair.objects.create(exchange=exchange, symbol="BTC-USDT")
    return selectors.markets()[0]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 2 + (day == 1), day, hour, minute, tzinfo=UTC)


def test_24h_figures_come_from_whole_hours_and_the_minutes_at_either_end(market):
    store_candles(
        [
            candle("1h", at(29, 12), "1", "999", "1", "1", "500"),  # ends before the window
            candle("1h", at(29, 14), "100", "104", "99", "103", "4"),  # first whole hour
            candle("1h", at(29, 18), "103", "110", "95", "104", "10"),
            candle("1m", at(29, 12, 30), "1", "1", "0.5", "1", "50"),  # starts before the window
            candle("1m", at(29, 12, 45), "98", "101", "97", "100", "1"),  # the window's head
            candle("1h", at(1, 13), "104", "200", "50", "105", "100", final=False),  # this hour
            candle("1m", at(1, 12, 30), "104", "106", "103", "105", "2", trades=7),
            candle("1m", at(1, 12, 31), "105", "107", "104", "106", "0.5", trades=3, final=False),
        ]
    )
    RawTrade.objects.create(
        exchange="okx", symbol="BTC-USDT", trade_id="9", price=Decimal("106.5"),
        size=Decimal(1), side="buy", timestamp=NOW - timedelta(seconds=10),
    )  # fmt: skip

    row = selectors.market_rows([market], NOW)[0]

    assert row.open_24h == Decimal("98")  # the oldest candle inside the window
    assert row.high_24h == Decimal("110")
    assert row.low_24h == Decimal("95")
    assert row.volume_24h == Decimal("17.5")  # 4 + 10 + 1 + 2 + 0.5
    assert (row.last_price, row.last_trade_at) == (Decimal("106.5"), NOW - timedelta(seconds=10))
    assert row.change_24h == Decimal("8.5")
    assert row.change_percent == Decimal("8.67")
    assert row.trades_per_minute == 7  # the last closed minute
    shown = row.as_dict()
    assert shown["last_price"] == "106.50000000" and shown["volume_24h"] == "17.50000000"
    assert shown["last_trade_ms"] == round((NOW - timedelta(seconds=10)).timestamp() * 1000)


def test_a_market_with_nothing_stored_has_an_empty_row(market):
    row = selectors.market_rows([market], NOW)[0]
    assert row.as_dict() | {"market": "okx:BTC-USDT"} == {
        "market": "okx:BTC-USDT",
        "exchange": "okx",
        "symbol": "BTC-USDT",
        "enabled": True,
        "last_price": None,
        "last_trade_ms": None,
        "open_24h": None,
        "high_24h": None,
        "low_24h": None,
        "volume_24h": None,
        "change_24h": None,
        "change_percent": None,
        "trades_per_minute": None,
    }


def test_a_quiet_market_trades_zero_times_a_minute(market):
    store_candles([candle("1m", at(1, 12, 20), "100", "100", "100", "100", "1", trades=5)])
    assert selectors.market_rows([market], NOW)[0].trades_per_minute == 0


def test_every_configured_pair_has_a_row_disabled_ones_included(market):
    exchange = Exchange.objects.get(name="okx")
    TradingPair.objects.create(exchange=exchange, symbol="ETH-USDT", enabled=False)
    rows = selectors.board_snapshot()["rows"]
    assert [(r["market"], r["enabled"]) for r in rows] == [
        ("okx:BTC-USDT", True),
        ("okx:ETH-USDT", False),
    ]


def test_without_redis_the_collector_board_shows_the_embedded_collectors_state(
    settings, market, tmp_path
):
    settings.REDIS_URL = ""  # the embedded default: status from a file under VAR_DIR
    settings.VAR_DIR = tmp_path
    board = selectors.collector_board()
    assert board.unavailable == ""
    [row] = board.collectors
    assert row["name"] == "okx:BTC-USDT"
    assert row["status"] != "running"  # no embedded collector process runs here
