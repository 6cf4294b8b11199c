"""The Binance adapter's pure parts: its config rules, stream names, and frames as parsed."""

import orjson
import pytest

from collectors.exchanges.base import FrameError
from collectors.exchanges.binance import BinanceAdapter, combined_stream_url
from collectors.factory import ExchangeFactory
from collectors.health_rule import PERMANENT_ERROR, health_issues, restart_cause
from collectors.types import DataType, ExchangeCollectorConfig

EVERY_TYPE = [DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER, DataType.CANDLE]


def adapter(symbol="BTCUSDT", data_types=(DataType.TRADE,), **params) -> BinanceAdapter:
    params.setdefault("rest_url", "http://127.0.0.1:9")  # nothing listens: never asked here
    config = ExchangeCollectorConfig("binance", symbol, list(data_types), custom_params=params)
    return BinanceAdapter(config)


def session(**kwargs):
    made = adapter(**kwargs)
    return made.session(made.endpoints()[0])


def push(stream: str, data: dict) -> str:
    return orjson.dumps({"stream": stream, "data": data}).decode()


def test_the_default_channels_are_binance_stream_names_on_one_combined_connection():
    endpoints = adapter(data_types=EVERY_TYPE).endpoints()
    assert len(endpoints) == 1
    assert endpoints[0].url == "wss://stream.binance.com:9443/stream"
    assert endpoints[0].subscriptions == (
        {
            "streams": (
                "btcusdt@aggTrade",
                "btcusdt@depth20@100ms",
                "btcusdt@ticker",
                "btcusdt@kline_1m",
            )
        },
    )


def test_the_ticker_and_the_book_ticker_can_both_be_taken():
    made = adapter(
        data_types=[DataType.TICKER], channels={"ticker": "ticker", "book_ticker": "bookTicker"}
    )
    assert list(made.streams()) == ["btcusdt@ticker", "btcusdt@bookTicker"]


def test_a_bare_host_gets_the_combined_stream_path():
    assert combined_stream_url("wss://stream.binance.com:9443") == (
        "wss://stream.binance.com:9443/stream"
    )
    assert combined_stream_url("ws://127.0.0.1:1/stream") == "ws://127.0.0.1:1/stream"


@pytest.mark.parametrize(
    "symbol, channels, problem",
    [
        ("BTC-USDT", {}, "malformed symbol"),
        ("btcusdt", {}, "malformed symbol"),
        ("BTCUSDT", {"trades": "trades"}, "unknown channel 'trades' for binance"),
        ("BTCUSDT", {"candle": "kline_7m"}, "unknown channel 'kline_7m'"),
        ("BTCUSDT", {"orderbook": "depth50"}, "unknown channel 'depth50'"),
    ],
)
def test_configs_binance_cannot_serve_are_refused(symbol, channels, problem):
    config = ExchangeCollectorConfig(
        "binance", symbol, EVERY_TYPE, custom_params={"channels": channels}
    )
    with pytest.raises(ValueError, match=problem):
        ExchangeFactory.create_collector(config)


def test_subscribe_frames_carry_ids_and_answers_are_matched_to_them():
    parser = session()
    frame = orjson.loads(parser.subscribe_frames()[0])
    assert frame == {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}
    assert orjson.loads(parser.unsubscribe_frames()[0])["id"] == 2
    assert parser.handle('{"result":null,"id":2}').unsubscribed
    handled = parser.handle('{"code":2,"msg":"Invalid request: invalid stream","id":9}')
    assert handled.errors == ["binance error 2: Invalid request: invalid stream"]


@pytest.mark.parametrize("maker, side", [(True, "sell"), (False, "buy")])
def test_the_side_is_the_takers(maker, side):
    parser = session(channels={"trades": "trade"})
    data = {"e": "trade", "E": 1700000000000, "s": "BTCUSDT", "t": 42, "p": "42000.10",
            "q": "0.5", "T": 1700000000000, "m": maker, "M": True}  # fmt: skip
    point = parser.handle(push("btcusdt@trade", data)).points[0]
    assert point.data["side"] == side and point.data["trade_id"] == "42"
    assert str(point.data["price"]) == "42000.10"


def test_an_aggregate_is_stored_under_its_aggregate_id():
    parser = session()
    data = {"e": "aggTrade", "E": 1700000000000, "s": "BTCUSDT", "a": 7, "p": "1", "q": "2",
            "f": 100, "l": 103, "T": 1700000000000, "m": False, "M": True}  # fmt: skip
    point = parser.handle(push("btcusdt@aggTrade", data)).points[0]
    assert point.data["trade_id"] == "7" and point.data["size"] == 2


@pytest.mark.parametrize(
    "change, error",
    [
        ({"a": "7"}, "bad trade id"),
        ({"p": 1.5}, "must be strings"),
        ({"m": "true"}, "buyer-is-maker"),
        ({"p": "-1"}, "price -1 is not positive"),
    ],
)
def test_a_bad_trade_is_reported_and_skipped(change, error):
    parser = session()
    data = {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 7, "p": "1", "q": "2", "f": 1,
            "l": 1, "T": 1700000000000, "m": False, "M": True}  # fmt: skip
    handled = parser.handle(push("btcusdt@aggTrade", {**data, **change}))
    assert not handled.points and error in handled.errors[0]


def test_a_kline_is_final_only_when_it_says_it_is_closed():
    parser = session(data_types=[DataType.CANDLE])
    kline = {"t": 1700000040000, "T": 1700000099999, "s": "BTCUSDT", "i": "1m", "f": 1,
             "L": 2, "o": "1", "c": "2", "h": "3", "l": "0.5", "v": "10", "n": 2, "x": False,
             "q": "15", "V": "0", "Q": "0", "B": "0"}  # fmt: skip
    stream = "btcusdt@kline_1m"
    open_ = parser.handle(push(stream, {"e": "kline", "E": 1, "s": "BTCUSDT", "k": kline}))
    closed = parser.handle(
        push(stream, {"e": "kline", "E": 1, "s": "BTCUSDT", "k": {**kline, "x": True}})
    )
    assert open_.points[0].data["confirmed"] is False
    assert closed.points[0].data["confirmed"] is True
    assert closed.points[0].timestamp.timestamp() == 1700000040  # the interval's start


def test_a_server_shutdown_event_asks_for_a_new_connection():
    parser = session()
    shutdown = push("!serverShutdown", {"e": "serverShutdown", "E": 1})
    assert parser.handle(shutdown).upgrade_notice


@pytest.mark.parametrize("frame", ["{nope", "[1]", '{"stream":"ethusdt@trade","data":{}}'])
def test_frames_that_are_not_ours_are_frame_errors(frame):
    with pytest.raises(FrameError):
        session().handle(frame)


def test_a_permanent_error_is_not_cured_by_a_restart():
    status = {
        "status": "error",
        "should_be_running": True,
        "health": {"time_since_data": 999.0, "max_silence_duration": 1.0},
        "statistics": {"last_error": f"{PERMANENT_ERROR}stream: symbol X does not exist"},
    }
    assert restart_cause(status, is_running=False) is None
    assert [issue.text for issue in health_issues(status, is_running=False)] == [
        f"in error: {PERMANENT_ERROR}stream: symbol X does not exist"
    ]
    status["statistics"]["last_error"] = "stream: gave up after 5 reconnect attempts"
    assert restart_cause(status, is_running=False).startswith("in error")
