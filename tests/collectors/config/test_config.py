"""Exchange configuration: the spec's JSON, every validation message, storage, and the commands."""

import copy
import io
import json
import logging
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from collectors.config.files import (
    load_exchange_config_file,
)
from collectors.config.schema import (
    ConfigError,
    ExchangeConfig,
    TradingPairConfig,
    collector_configs,
    parse_exchange_config,
    validate_collector_config,
    validate_exchange_fields,
    validate_trading_pair_fields,
)
from collectors.config.store import (
    collector_configs_from_db,
    exchange_config_from_model,
    exchange_config_to_dict,
    save_exchange_config,
)
from collectors.exchanges.okx import OkxAdapter
from collectors.models import Exchange, TradingPair
from collectors.types import DataType, ExchangeCollectorConfig
from tests.helpers import ROOT, service_env

SPEC_EXAMPLE = {
    "exchange": "okx",
    "connection": {
        "public_ws_url": "wss://ws.okx.com:8443/ws/v5/public",
        "ping_interval": 25.0,
        "pong_timeout": 10.0,
        "max_reconnect_attempts": 5,
        "reconnect_delay": 5.0,
    },
    "data_collection": {
        "store_raw_data": True,
        "health_check_interval": 30.0,
        "auto_restart": True,
        "buffer_size": 1000,
    },
    "trading_pairs": [
        {
            "symbol": "BTC-USDT",
            "enabled": True,
            "data_types": ["trade", "orderbook"],
            "channels": {"trades": "trades", "orderbook": "books5", "ticker": "tickers"},
        }
    ],
}


def spec_example(**changes) -> dict:
    data = copy.deepcopy(SPEC_EXAMPLE)
    data.update(changes)
    return data


def with_pair(**changes) -> dict:
    data = spec_example()
    data["trading_pairs"][0].update(changes)
    return data


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_exchange_config(data)
    return raised.value.errors


def assert_error(data, expected: str) -> None:
    errors = errors_of(data)
    assert any(expected in error for error in errors), errors


def write_json(tmp_path, data, name="exchange.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# the spec's example -------------------------------------------------------------------------


def test_the_spec_example_loads_as_it_is():
    config = parse_exchange_config(SPEC_EXAMPLE)
    assert config == ExchangeConfig(
        exchange="okx",
        public_ws_url="wss://ws.okx.com:8443/ws/v5/public",
        trading_pairs=(
            TradingPairConfig(
                symbol="BTC-USDT",
                enabled=True,
                data_types=(DataType.TRADE, DataType.ORDERBOOK),
                channels={"trades": "trades", "orderbook": "books5", "ticker": "tickers"},
            ),
        ),
    )
    assert config.max_silence_duration == 60.0
    assert config.business_ws_url is None
    assert config.rest_url is None


def test_the_optional_keys_are_read():
    data = spec_example()
    data["connection"]["business_ws_url"] = "wss://ws.okx.com:8443/ws/v5/business"
    data["connection"]["rest_url"] = "https://www.okx.com"
    data["data_collection"]["max_silence_duration"] = 12.5
    data["trading_pairs"][0]["channels"]["candle"] = "candle1m"
    data["trading_pairs"][0]["data_types"].append("candle")
    config = parse_exchange_config(data)
    assert config.business_ws_url == "wss://ws.okx.com:8443/ws/v5/business"
    assert config.rest_url == "https://www.okx.com"
    assert config.max_silence_duration == 12.5
    assert config.trading_pairs[0].data_types[-1] is DataType.CANDLE


@pytest.mark.parametrize(
    "name", ["okx.json", "okx-simulator.json", "binance.json", "binance-simulator.json"]
)
def test_the_shipped_configuration_files_are_valid(name):
    config = load_exchange_config_file(ROOT / "config" / name)
    assert config.exchange == name.split(".")[0].removesuffix("-simulator")
    assert config.trading_pairs


def test_the_binance_files_point_at_binance_and_at_the_simulator_on_loopback():
    real = load_exchange_config_file(ROOT / "config" / "binance.json")
    assert real.public_ws_url == "wss://stream.binance.com:9443/stream"
    assert real.rest_url == "https://api.binance.com"
    simulated = load_exchange_config_file(ROOT / "config" / "binance-simulator.json")
    assert simulated.public_ws_url.startswith("ws://127.0.0.1:")
    assert [pair.symbol for pair in simulated.trading_pairs] == ["BTCUSDT", "ETHUSDT"]


def test_the_simulator_file_points_at_loopback_and_collects_four_data_types():
    config = load_exchange_config_file(ROOT / "config" / "okx-simulator.json")
    assert config.public_ws_url == "ws://127.0.0.1:8765/ws/v5/public"
    assert config.rest_url == "http://127.0.0.1:8765"
    assert [(p.symbol, p.data_types) for p in config.trading_pairs] == [
        ("BTC-USDT", (DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER, DataType.CANDLE)),
        ("ETH-USDT", (DataType.TRADE, DataType.ORDERBOOK)),
    ]


@pytest.mark.parametrize("symbol", ["BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527", "ETH-USDC"])
def test_every_okx_instrument_type_is_accepted(symbol):
    config = parse_exchange_config(with_pair(symbol=symbol))
    assert config.trading_pairs[0].symbol == symbol


def test_channels_default_when_omitted():
    data = with_pair(data_types=["trade", "orderbook", "ticker", "candle"])
    del data["trading_pairs"][0]["channels"]
    config = parse_exchange_config(data)
    assert config.trading_pairs[0].channels == {
        "trades": "trades",
        "orderbook": "books5",
        "ticker": "tickers",
        "candle": "candle1m",
    }
    assert config.trading_pairs[0].channels == OkxAdapter.default_channels


def test_sections_other_than_the_public_url_may_be_left_out():
    data = {
        "exchange": "okx",
        "connection": {"public_ws_url": "ws://127.0.0.1:9/ws/v5/public"},
        "trading_pairs": [{"symbol": "BTC-USDT", "data_types": ["trade"]}],
    }
    config = parse_exchange_config(data)
    assert (config.ping_interval, config.pong_timeout, config.reconnect_delay) == (25.0, 10.0, 5.0)
    assert (config.buffer_size, config.max_reconnect_attempts) == (1000, 5)
    assert config.trading_pairs[0].enabled is True


# each validation message --------------------------------------------------------------------


def test_an_unknown_exchange_is_named_with_the_supported_ones():
    assert_error(
        spec_example(exchange="krakenx"),
        "exchange: unknown exchange 'krakenx' (supported: binance, okx)",
    )


def test_an_unknown_data_type_is_named_by_its_path():
    data = spec_example()
    data["trading_pairs"].append({"symbol": "ETH-USDT", "data_types": ["trades"]})
    assert_error(
        data,
        "trading_pairs[1].data_types[0]: unknown data type 'trades' "
        "(expected one of: balance, candle, order, orderbook, position, ticker, trade)",
    )


def test_an_unknown_channel_is_named_with_the_ones_the_exchange_has():
    data = with_pair(channels={"trades": "trades", "orderbook": "books7"})
    errors = errors_of(data)
    [error] = errors
    assert error.startswith("trading_pairs[0].channels.orderbook: unknown channel 'books7' for okx")
    assert "books5" in error
    assert "books" in error


def test_an_unknown_channel_role_is_named():
    data = with_pair(channels={"trades": "trades", "orderbook": "books5", "foo": "trades"})
    assert_error(data, "trading_pairs[0].channels.foo: unknown channel role 'foo'")


def test_a_malformed_symbol_is_named():
    assert_error(
        with_pair(symbol="btc usdt"), "trading_pairs[0].symbol: malformed symbol 'btc usdt'"
    )


def test_a_symbol_must_be_a_string():
    assert_error(with_pair(symbol=42), "trading_pairs[0].symbol: must be a string, not 42")


def test_the_public_url_must_be_a_websocket_url():
    data = spec_example()
    data["connection"]["public_ws_url"] = "http://ws.okx.com/ws/v5/public"
    assert errors_of(data) == ["connection.public_ws_url: URL scheme must be wss or ws, not 'http'"]


def test_the_business_url_must_be_a_websocket_url():
    data = spec_example()
    data["connection"]["business_ws_url"] = "https://ws.okx.com/ws/v5/business"
    assert_error(data, "connection.business_ws_url: URL scheme must be wss or ws, not 'https'")


def test_the_rest_url_must_be_http():
    data = spec_example()
    data["connection"]["rest_url"] = "wss://www.okx.com"
    assert_error(data, "connection.rest_url: URL scheme must be https or http, not 'wss'")


def test_a_url_needs_a_host():
    data = spec_example()
    data["connection"]["public_ws_url"] = "wss:///ws/v5/public"
    assert_error(data, "connection.public_ws_url: URL has no host: 'wss:///ws/v5/public'")


def test_plain_ws_and_http_are_accepted_for_a_local_simulator():
    data = spec_example()
    data["connection"]["public_ws_url"] = "ws://127.0.0.1:8765/ws/v5/public"
    data["connection"]["rest_url"] = "http://127.0.0.1:8765"
    config = parse_exchange_config(data)
    assert config.public_ws_url == "ws://127.0.0.1:8765/ws/v5/public"
    assert config.rest_url == "http://127.0.0.1:8765"


POSITIVE_NUMBERS = [
    ("connection", "ping_interval"),
    ("connection", "pong_timeout"),
    ("connection", "reconnect_delay"),
    ("data_collection", "health_check_interval"),
    ("data_collection", "max_silence_duration"),
]


@pytest.mark.parametrize(("section", "name"), POSITIVE_NUMBERS)
@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), (-1.5, "-1.5"), ("5", "'5'"), (True, "True"), (None, "None")]
)
def test_intervals_must_be_positive_numbers(section, name, value, shown):
    data = spec_example()
    data[section][name] = value
    assert errors_of(data) == [f"{section}.{name}: must be a positive number, not {shown}"]


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (1.5, "1.5"), (True, "True")])
def test_the_buffer_size_must_be_a_positive_integer(value, shown):
    data = spec_example()
    data["data_collection"]["buffer_size"] = value
    assert errors_of(data) == [
        f"data_collection.buffer_size: must be a positive integer, not {shown}"
    ]


def test_an_integer_too_big_for_the_database_is_rejected():
    data = spec_example()
    data["data_collection"]["buffer_size"] = 2**31
    assert errors_of(data) == [
        "data_collection.buffer_size: must be at most 2147483647, not 2147483648"
    ]


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), (2.0, "2.0"), (False, "False")])
def test_reconnect_attempts_must_be_a_non_negative_integer(value, shown):
    data = spec_example()
    data["connection"]["max_reconnect_attempts"] = value
    assert errors_of(data) == [
        f"connection.max_reconnect_attempts: must be a non-negative integer, not {shown}"
    ]


def test_zero_reconnect_attempts_is_allowed():
    data = spec_example()
    data["connection"]["max_reconnect_attempts"] = 0
    assert parse_exchange_config(data).max_reconnect_attempts == 0


@pytest.mark.parametrize(
    "path",
    [
        ("data_collection", "store_raw_data"),
        ("data_collection", "auto_restart"),
        ("trading_pairs", 0, "enabled"),
        ("enabled",),
    ],
)
def test_booleans_must_be_real_booleans(path):
    data = spec_example()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = 1
    dotted = ".".join(str(k) for k in path).replace("trading_pairs.0", "trading_pairs[0]")
    assert errors_of(data) == [f"{dotted}: must be true or false, not 1"]


def test_unknown_keys_are_rejected_by_name_at_every_level():
    data = spec_example(colour="blue")
    data["connection"]["ping_intervall"] = 5
    data["data_collection"]["buffer"] = 5
    data["trading_pairs"][0]["sybmol"] = "ETH-USDT"
    errors = errors_of(data)
    assert len(errors) == 4
    assert errors[0].startswith("colour: unknown key 'colour' (expected one of: account_data")
    assert any(
        e.startswith("connection.ping_intervall: unknown key 'ping_intervall'") for e in errors
    )
    assert any(e.startswith("data_collection.buffer: unknown key 'buffer'") for e in errors)
    assert any(e.startswith("trading_pairs[0].sybmol: unknown key 'sybmol'") for e in errors)


def test_missing_required_keys_are_named():
    data = {"connection": {}, "trading_pairs": [{"enabled": True}]}
    assert errors_of(data) == [
        "exchange: missing required key",
        "connection.public_ws_url: missing required key",
        "trading_pairs[0].symbol: missing required key",
        "trading_pairs[0].data_types: missing required key",
    ]


def test_missing_sections_are_named():
    assert errors_of({"exchange": "okx"}) == [
        "connection: missing required key",
        "trading_pairs: missing required key",
    ]


def test_sections_of_the_wrong_shape_are_named():
    data = spec_example(connection=[], trading_pairs={"symbol": "BTC-USDT"})
    data["data_collection"] = "none"
    assert errors_of(data) == [
        "connection: must be an object, not an array",
        "data_collection: must be an object, not 'none'",
        "trading_pairs: must be an array, not an object",
    ]


def test_a_configuration_must_be_an_object():
    assert errors_of(["okx"]) == ["configuration: must be an object, not an array"]


def test_duplicate_symbols_are_named():
    data = spec_example()
    data["trading_pairs"].append(copy.deepcopy(data["trading_pairs"][0]))
    assert errors_of(data) == [
        "trading_pairs[1].symbol: duplicate symbol 'BTC-USDT' (also trading_pairs[0])"
    ]


def test_a_data_type_without_its_channel_is_named():
    data = with_pair(data_types=["trade", "candle"])
    assert errors_of(data) == [
        "trading_pairs[0].data_types[1]: data type 'candle' needs a 'candle' channel, "
        "and trading_pairs[0].channels has none"
    ]


def test_balance_on_a_trading_pair_is_sent_to_the_exchange_level():
    errors = errors_of(with_pair(data_types=["trade", "balance"]))
    assert errors == [
        "trading_pairs[0].data_types[1]: data type 'balance' cannot be collected: "
        "it belongs to an account: list it in the exchange's account_data_types, with credentials"
    ]


def test_data_types_must_be_a_non_empty_list_without_repeats():
    assert errors_of(with_pair(data_types=[])) == [
        "trading_pairs[0].data_types: must list at least one data type"
    ]
    assert errors_of(with_pair(data_types="trade")) == [
        "trading_pairs[0].data_types: must be an array of data types, not 'trade'"
    ]
    assert errors_of(with_pair(data_types=["trade", "trade"])) == [
        "trading_pairs[0].data_types[1]: duplicate data type 'trade' "
        "(also trading_pairs[0].data_types[0])"
    ]


def test_every_problem_is_reported_at_once():
    data = spec_example(exchange="okx")
    data["connection"]["ping_interval"] = 0
    data["connection"]["public_ws_url"] = "http://x"
    data["trading_pairs"].append({"symbol": "btc usdt", "data_types": ["trades"], "extra": 1})
    errors = errors_of(data)
    assert len(errors) == 5
    assert "; ".join(errors) == str(ConfigError(errors))


# files ------------------------------------------------------------------------------------


def test_a_json_syntax_error_is_reported_with_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "exchange": "okx",\n  "connection": {\n    "ping_interval" 25\n', "utf-8")
    with pytest.raises(ConfigError) as raised:
        load_exchange_config_file(path)
    assert raised.value.errors == ["invalid JSON at line 4, column 21: Expecting ':' delimiter"]


def test_a_duplicate_json_key_is_rejected(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"exchange": "okx", "exchange": "okx"}', "utf-8")
    with pytest.raises(ConfigError, match="duplicate key 'exchange'"):
        load_exchange_config_file(path)


def test_nan_is_rejected(tmp_path):
    path = tmp_path / "nan.json"
    text = json.dumps(SPEC_EXAMPLE).replace('"ping_interval": 25.0', '"ping_interval": NaN')
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError, match="NaN is not a JSON number"):
        load_exchange_config_file(path)


def test_a_file_loads_like_its_data(tmp_path):
    assert load_exchange_config_file(write_json(tmp_path, SPEC_EXAMPLE)) == parse_exchange_config(
        SPEC_EXAMPLE
    )


# collector configs -------------------------------------------------------------------------


def simulator_config(**changes) -> ExchangeConfig:
    data = json.loads((ROOT / "config" / "okx-simulator.json").read_text())
    data.update(changes)
    return parse_exchange_config(data)


def test_collector_configs_carry_data_types_and_connection_settings():
    btc, eth = collector_configs(simulator_config())
    assert btc == ExchangeCollectorConfig(
        exchange="okx",
        symbol="BTC-USDT",
        data_types=[DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER, DataType.CANDLE],
        auto_restart=True,
        health_check_interval=30.0,
        store_raw_data=True,
        custom_params={
            "public_ws_url": "ws://127.0.0.1:8765/ws/v5/public",
            "business_ws_url": None,
            "rest_url": "http://127.0.0.1:8765",
            "ping_interval": 25.0,
            "pong_timeout": 10.0,
            "max_reconnect_attempts": 5,
            "reconnect_delay": 1.0,
            "buffer_size": 1000,
            "max_silence_duration": 60.0,
            "channels": {
                "trades": "trades",
                "orderbook": "books5",
                "ticker": "tickers",
                "candle": "candle1m",
            },
        },
    )
    assert eth.symbol == "ETH-USDT"
    assert eth.data_types == [DataType.TRADE, DataType.ORDERBOOK]


def test_collector_configs_skip_disabled_pairs_and_exchanges():
    data = json.loads((ROOT / "config" / "okx-simulator.json").read_text())
    data["trading_pairs"][0]["enabled"] = False
    assert [c.symbol for c in collector_configs(parse_exchange_config(data))] == ["ETH-USDT"]
    assert collector_configs(simulator_config(enabled=False)) == []


def test_collector_configs_from_the_file_are_valid_collector_configs():
    for config in collector_configs(simulator_config()):
        assert validate_collector_config(config) == []


def test_a_collector_config_without_custom_params_is_valid():
    config = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE, DataType.CANDLE])
    assert validate_collector_config(config) == []


def test_a_bad_collector_config_gets_every_problem_named():
    config = ExchangeCollectorConfig(
        "okx",
        "btc usdt",
        [DataType.TRADE, "orderbook", DataType.BALANCE, DataType.CANDLE],
        health_check_interval=0,
        custom_params={
            "public_ws_url": "https://ws.okx.com",
            "ping_interval": -1,
            "buffer_size": 0,
            "channels": {"trades": "trade"},
            "colour": "blue",
        },
    )
    errors = validate_collector_config(config)
    assert errors[0] == "symbol: malformed symbol 'btc usdt'"
    expected = [
        "health_check_interval: must be a positive number, not 0",
        "custom_params.public_ws_url: URL scheme must be wss or ws, not 'https'",
        "custom_params.ping_interval: must be a positive number, not -1",
        "custom_params.buffer_size: must be a positive integer, not 0",
        "custom_params.channels.trades: unknown channel 'trade' for okx",
        "custom_params.colour: unknown key 'colour'",
        "data_types[1]: must be a DataType, not 'orderbook'",
        "data_types[2]: data type 'balance' cannot be collected",
    ]
    for message in expected:
        assert any(error.startswith(message) for error in errors), (message, errors)


def test_the_trade_backfill_tuning_is_checked_too():
    def errors(**tuning) -> list[str]:
        config = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE], custom_params=tuning)
        return validate_collector_config(config)

    assert errors(trade_backfill=500, trade_backfill_pages=0) == []
    assert errors(trade_backfill=None) == []  # the collector's default
    assert errors(trade_backfill=501) == [
        "custom_params.trade_backfill: must be at most 500, the most OKX serves, not 501"
    ]
    assert errors(trade_backfill_pages=-1) == [
        "custom_params.trade_backfill_pages: must be a non-negative integer, not -1"
    ]
    assert errors(trade_backfill_pages="20") == [
        "custom_params.trade_backfill_pages: must be a non-negative integer, not '20'"
    ]


def test_a_collector_config_for_an_unknown_exchange_is_named():
    config = ExchangeCollectorConfig("krakenx", "BTC-USDT", [DataType.TRADE])
    assert validate_collector_config(config) == [
        "exchange: unknown exchange 'krakenx' (supported: binance, okx)"
    ]


def test_a_collector_config_needs_a_channel_for_each_data_type():
    config = ExchangeCollectorConfig(
        "okx", "BTC-USDT", [DataType.TICKER], custom_params={"channels": {"trades": "trades"}}
    )
    assert validate_collector_config(config) == [
        "data_types[0]: data type 'ticker' needs a 'ticker' channel, "
        "and custom_params.channels has none"
    ]


def test_a_collector_config_needs_some_data_types():
    config = ExchangeCollectorConfig("okx", "BTC-USDT", [])
    assert validate_collector_config(config) == [
        "data_types: must be a non-empty list of DataType, not []"
    ]


# the admin's checks ------------------------------------------------------------------------


def test_exchange_field_errors_are_keyed_by_model_field():
    exchange = Exchange(name="krakenx", public_ws_url="http://x", ping_interval=0, buffer_size=0)
    errors = validate_exchange_fields(exchange)
    assert errors == {
        "name": ["unknown exchange 'krakenx' (supported: binance, okx)"],
        "public_ws_url": ["URL scheme must be wss or ws, not 'http'"],
        "ping_interval": ["must be a positive number, not 0"],
        "buffer_size": ["must be a positive integer, not 0"],
    }


def test_a_valid_exchange_has_no_field_errors():
    exchange = Exchange(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    assert validate_exchange_fields(exchange) == {}


def test_trading_pair_field_errors_are_keyed_by_model_field():
    exchange = Exchange(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    pair = TradingPair(
        exchange=exchange,
        symbol="btc usdt",
        data_types=["trades", "candle"],
        channels={"trades": "trades", "orderbook": "books7"},
    )
    assert validate_trading_pair_fields(pair) == {
        "symbol": ["malformed symbol 'btc usdt'"],
        "channels": [
            "channels.orderbook: unknown channel 'books7' for okx (expected one of: books, books5)"
        ],
        "data_types": [
            "data_types[0]: unknown data type 'trades' "
            "(expected one of: balance, candle, order, orderbook, position, ticker, trade)",
            "data_types[1]: data type 'candle' needs a 'candle' channel, and channels has none",
        ],
    }
    pair = TradingPair(exchange=exchange, symbol="ETH-USDT")
    assert validate_trading_pair_fields(pair) == {}


# the database ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_saving_stores_the_exchange_and_its_pairs():
    exchange = save_exchange_config(simulator_config())
    assert exchange.pk is not None
    stored = Exchange.objects.get(name="okx")
    assert stored.public_ws_url == "ws://127.0.0.1:8765/ws/v5/public"
    assert stored.business_ws_url == ""
    assert stored.rest_url == "http://127.0.0.1:8765"
    assert stored.reconnect_delay == 1.0
    btc = stored.trading_pairs.get(symbol="BTC-USDT")
    assert btc.data_types == ["trade", "orderbook", "ticker", "candle"]
    assert btc.channels["candle"] == "candle1m"


@pytest.mark.django_db
def test_a_round_trip_through_the_database_gives_the_same_configuration():
    data = json.loads((ROOT / "config" / "okx.json").read_text())
    data["trading_pairs"].insert(0, {"symbol": "UNI-USD-SWAP", "data_types": ["ticker"]})
    data["data_collection"]["max_silence_duration"] = 90
    original = parse_exchange_config(data)
    dumped = exchange_config_to_dict(save_exchange_config(original))
    assert parse_exchange_config(dumped) == original
    assert [pair["symbol"] for pair in dumped["trading_pairs"]] == ["UNI-USD-SWAP", "BTC-USDT"]
    assert dumped["connection"]["rest_url"] == "https://www.okx.com"


@pytest.mark.django_db
def test_the_spec_example_dumps_in_the_spec_shape():
    dumped = exchange_config_to_dict(save_exchange_config(parse_exchange_config(SPEC_EXAMPLE)))
    expected = spec_example(enabled=True)
    expected["data_collection"]["max_silence_duration"] = 60.0
    assert dumped == expected
    assert list(dumped) == ["exchange", "enabled", "connection", "data_collection", "trading_pairs"]


@pytest.mark.django_db
def test_saving_again_updates_and_leaves_unlisted_pairs_alone():
    save_exchange_config(simulator_config())
    data = spec_example()
    data["trading_pairs"][0]["enabled"] = False
    save_exchange_config(parse_exchange_config(data))
    exchange = Exchange.objects.get(name="okx")
    assert exchange.public_ws_url == "wss://ws.okx.com:8443/ws/v5/public"
    assert exchange.reconnect_delay == 5.0
    pairs = {p.symbol: p for p in exchange.trading_pairs.all()}
    assert set(pairs) == {"BTC-USDT", "ETH-USDT"}
    assert pairs["BTC-USDT"].enabled is False
    assert pairs["BTC-USDT"].data_types == ["trade", "orderbook"]


@pytest.mark.django_db
def test_replace_deletes_the_pairs_the_configuration_does_not_list():
    save_exchange_config(simulator_config())
    save_exchange_config(parse_exchange_config(SPEC_EXAMPLE), replace=True)
    symbols = TradingPair.objects.values_list("symbol", flat=True)
    assert list(symbols) == ["BTC-USDT"]


@pytest.mark.django_db
def test_collector_configs_come_from_the_database_for_enabled_pairs_of_enabled_exchanges():
    exchange = save_exchange_config(simulator_config())
    TradingPair.objects.filter(symbol="ETH-USDT").update(enabled=False)
    [config] = collector_configs_from_db()
    assert config.symbol == "BTC-USDT"
    assert config.custom_params["reconnect_delay"] == 1.0
    assert collector_configs(exchange_config_from_model(Exchange.objects.get(pk=exchange.pk))) == [
        config
    ]
    Exchange.objects.filter(pk=exchange.pk).update(enabled=False)
    assert collector_configs_from_db() == []


@pytest.mark.django_db
def test_an_exchange_stored_invalid_is_logged_and_skipped(caplog):
    save_exchange_config(simulator_config())
    TradingPair.objects.filter(symbol="ETH-USDT").update(data_types=["trades"])
    with caplog.at_level(logging.ERROR, logger="collectors.config.store"):
        assert collector_configs_from_db() == []
    assert "trading_pairs[1].data_types[0]: unknown data type 'trades'" in caplog.text


# the commands ------------------------------------------------------------------------------


def call(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_load_command_says_what_it_created_and_updated(tmp_path):
    simulator = str(ROOT / "config" / "okx-simulator.json")
    assert call("load_exchange_config", simulator).splitlines() == [
        "created exchange okx",
        "created trading pair okx:BTC-USDT",
        "created trading pair okx:ETH-USDT",
    ]
    assert call("load_exchange_config", str(write_json(tmp_path, SPEC_EXAMPLE))).splitlines() == [
        "updated exchange okx",
        "updated trading pair okx:BTC-USDT",
    ]
    assert TradingPair.objects.count() == 2


@pytest.mark.django_db
def test_the_load_command_replaces_with_replace(tmp_path):
    call("load_exchange_config", str(ROOT / "config" / "okx-simulator.json"))
    output = call("load_exchange_config", str(write_json(tmp_path, SPEC_EXAMPLE)), "--replace")
    assert output.splitlines()[-1] == "deleted trading pair okx:ETH-USDT"
    assert list(TradingPair.objects.values_list("symbol", flat=True)) == ["BTC-USDT"]


@pytest.mark.django_db
def test_the_load_command_lists_every_error_and_stores_nothing(tmp_path):
    data = with_pair(symbol="btc usdt")
    data["connection"]["ping_interval"] = 0
    path = write_json(tmp_path, data)
    with pytest.raises(CommandError) as raised:
        call("load_exchange_config", str(path))
    message = str(raised.value)
    assert message.startswith(f"{path}: invalid exchange configuration:")
    assert "connection.ping_interval: must be a positive number, not 0" in message
    assert "trading_pairs[0].symbol: malformed symbol 'btc usdt'" in message
    assert not Exchange.objects.exists()


def test_the_load_command_names_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read: No such file or directory"):
        call("load_exchange_config", str(tmp_path / "absent.json"))


@pytest.mark.django_db
def test_the_dump_command_prints_one_exchange_in_the_spec_shape():
    save_exchange_config(simulator_config())
    dumped = json.loads(call("dump_exchange_config", "--exchange", "okx"))
    assert parse_exchange_config(dumped) == simulator_config()


@pytest.mark.django_db
def test_the_dump_command_writes_all_exchanges_as_a_list_that_loads_back(tmp_path):
    save_exchange_config(simulator_config())
    output = tmp_path / "all.json"
    assert call("dump_exchange_config", "--output", str(output)) == f"wrote {output}\n"
    data = json.loads(output.read_text())
    assert isinstance(data, list)
    assert [parse_exchange_config(item) for item in data] == [simulator_config()]
    Exchange.objects.all().delete()
    assert call("load_exchange_config", str(output)).splitlines()[0] == "created exchange okx"
    assert exchange_config_to_dict(Exchange.objects.get()) == data[0]


@pytest.mark.django_db
def test_the_dump_command_names_an_unknown_exchange():
    save_exchange_config(simulator_config())
    with pytest.raises(CommandError, match=r"no exchange 'binance' is stored \(stored: okx\)"):
        call("dump_exchange_config", "--exchange", "binance")


def test_manage_py_exits_with_1_and_lists_the_errors_without_a_traceback(tmp_path):
    path = write_json(tmp_path, spec_example(exchange="krakenx", extra=True))
    result = subprocess.run(
        [sys.executable, "manage.py", "load_exchange_config", str(path)],
        cwd=ROOT,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "exchange: unknown exchange 'krakenx' (supported: binance, okx)" in result.stderr
    assert "extra: unknown key 'extra'" in result.stderr
    assert "CommandError" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_an_empty_channels_object_means_the_adapters_default_channels():
    data = with_pair(data_types=["trade", "orderbook"])
    data["trading_pairs"][0]["channels"] = {}
    config = parse_exchange_config(data)
    assert config.trading_pairs[0].channels == OkxAdapter.default_channels


def test_a_new_pair_left_at_the_models_default_channels_validates_and_collects_okx_ones():
    exchange = Exchange(name="okx", public_ws_url="wss://ws.okx.com:8443/ws/v5/public")
    pair = TradingPair(exchange=exchange, symbol="ETH-USDT")
    assert pair.channels == {}
    assert validate_trading_pair_fields(pair) == {}
    config = ExchangeCollectorConfig(
        "okx", "ETH-USDT", [DataType.ORDERBOOK], custom_params={"channels": pair.channels}
    )
    assert validate_collector_config(config) == []
    [endpoint] = OkxAdapter(config).endpoints()
    assert endpoint.subscriptions == ({"channel": "books5", "instId": "ETH-USDT"},)


def test_tuning_parameters_are_the_adapters():
    config = ExchangeCollectorConfig(
        "okx",
        "BTC-USDT",
        [DataType.TRADE],
        custom_params={"trade_backfill": 501, "max_message_bytes": 10, "unknown_knob": 1},
    )
    errors = validate_collector_config(config)
    assert (
        "custom_params.trade_backfill: must be at most 500, the most OKX serves, not 501" in errors
    )
    assert any(error.startswith("custom_params.max_message_bytes: ") for error in errors)
    assert any(error.startswith("custom_params.unknown_knob: unknown key") for error in errors)
