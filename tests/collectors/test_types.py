"""The seed's data types: names, values, defaults and validation errors as the spec gives them."""

from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime
from decimal import Decimal

import pytest

import collectors
from collectors.types import (
    DataType,
    ExchangeCollectorConfig,
    MarketDataPoint,
    trade_point,
    validate_market_data_point,
)


def trade(**changes) -> MarketDataPoint:
    data = {"trade_id": "12345678", "price": Decimal("50000.5"), "size": Decimal("0.001")}
    data["side"] = "buy"
    data.update(changes)
    return MarketDataPoint(
        "okx", "BTC-USDT", datetime(2023, 10, 12, tzinfo=UTC), DataType.TRADE, data
    )


def test_the_spec_data_types_keep_their_values_beside_the_account_ones():
    assert {t.name: t.value for t in DataType} == {
        "TICKER": "ticker",
        "TRADE": "trade",
        "ORDERBOOK": "orderbook",
        "CANDLE": "candle",
        "BALANCE": "balance",
        "POSITION": "position",  # an account's, beside the spec's (docs/data-model.md)
        "ORDER": "order",
    }


def test_the_collector_config_has_the_spec_fields_and_defaults():
    config = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE])
    assert [f.name for f in fields(config)] == [
        "exchange",
        "symbol",
        "data_types",
        "auto_restart",
        "health_check_interval",
        "store_raw_data",
        "custom_params",
    ]
    assert (config.auto_restart, config.health_check_interval, config.store_raw_data) == (
        True,
        30.0,
        True,
    )
    assert config.custom_params is None


def test_the_public_api_is_importable_from_the_package():
    for name in collectors.__all__:
        assert getattr(collectors, name).__name__ == name


def test_a_good_trade_passes_validation():
    validate_market_data_point(trade())


def test_a_missing_field_is_named():
    class Partial:
        exchange, symbol, timestamp, data_type = "okx", "BTC-USDT", None, DataType.TRADE

    with pytest.raises(ValueError, match="Missing required field: data"):
        validate_market_data_point(Partial())


def test_a_data_type_that_is_not_the_enum_is_refused():
    point = MarketDataPoint("okx", "BTC-USDT", datetime.now(UTC), "trade", {})
    with pytest.raises(ValueError, match="Invalid data_type"):
        validate_market_data_point(point)


def test_a_naive_timestamp_is_refused():
    point = MarketDataPoint("okx", "BTC-USDT", datetime(2024, 1, 1), DataType.TICKER, {})
    with pytest.raises(ValueError, match="aware"):
        validate_market_data_point(point)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"price": Decimal("0")}, "price"),
        ({"price": Decimal("NaN")}, "price"),
        ({"size": -Decimal("1")}, "size"),
        ({"size": 0.5}, "size"),
        ({"side": "long"}, "side"),
        ({"trade_id": ""}, "trade_id"),
        ({"trade_id": "x" * 101}, "trade_id"),
    ],
)
def test_a_bad_trade_value_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        validate_market_data_point(trade(**change))


def test_a_trade_point_is_the_point_its_fields_make_and_as_frozen():
    made = trade_point("okx", "BTC-USDT", datetime(2023, 10, 12, tzinfo=UTC), trade().data)
    assert made == trade()
    assert type(made) is MarketDataPoint and made.data_type is DataType.TRADE
    with pytest.raises(FrozenInstanceError):
        made.symbol = "ETH-USDT"
