"""The OKX adapter: its class attributes, endpoints, events, malformed frames, tickers, candles."""

from decimal import Decimal

import orjson
import pytest

from collectors.exchanges import adapter_class
from collectors.exchanges.base import Endpoint, FrameError
from collectors.exchanges.okx import (
    OkxAdapter,
)
from collectors.types import DataType
from tests.collectors.exchanges.okx_frames import (
    AT,
    SYMBOL,
    TS,
    adapter,
    push,
    session,
)

# the adapter's class attributes ------------------------------------------------------------


def test_the_registry_names_this_adapter_for_okx():
    assert adapter_class("okx") is OkxAdapter
    assert OkxAdapter.name == "okx"
    assert OkxAdapter.default_public_ws_url == "wss://ws.okx.com:8443/ws/v5/public"


def test_each_channel_role_produces_its_data_type():
    assert OkxAdapter.channel_roles == {
        "trades": DataType.TRADE,
        "orderbook": DataType.ORDERBOOK,
        "ticker": DataType.TICKER,
        "candle": DataType.CANDLE,
    }
    assert OkxAdapter.channel_names["trades"] == {"trades"}
    assert OkxAdapter.channel_names["orderbook"] == {"books5", "books"}
    assert OkxAdapter.channel_names["ticker"] == {"tickers"}


def test_every_okx_candle_channel_is_a_candle_channel_name():
    assert OkxAdapter.channel_names["candle"] == {
        "candle1m", "candle3m", "candle5m", "candle15m", "candle30m",
        "candle1H", "candle2H", "candle4H", "candle6H", "candle12H",
        "candle1D", "candle2D", "candle3D", "candle1W", "candle1M", "candle3M",
        "candle6Hutc", "candle12Hutc", "candle1Dutc", "candle2Dutc",
        "candle3Dutc", "candle1Wutc", "candle1Mutc", "candle3Mutc",
    }  # fmt: skip


@pytest.mark.parametrize(
    "symbol",
    [
        "BTC-USDT",
        "ETH-USDC",
        "UNI-USD-SWAP",
        "BTC-USDT-SWAP",
        "BTC-USD-220527",
        "BTC-USD-220527-30000-C",
        "ETH-USD-230630-1500-P",
        "1INCH-USDT",
    ],
)
def test_every_okx_instrument_type_matches_the_symbol_pattern(symbol):
    assert OkxAdapter.symbol_pattern.fullmatch(symbol)
    assert OkxAdapter.symbol_pattern.match(symbol)


@pytest.mark.parametrize(
    "symbol",
    ["", "BTCUSDT", "btc-usdt", "BTC-usdt", "BTC USDT", "BTC-", "-BTC", "BTC--USDT", "BTC-USDT\n"],
)
def test_the_symbol_pattern_refuses_what_is_not_an_okx_instrument(symbol):
    assert not OkxAdapter.symbol_pattern.fullmatch(symbol)
    assert not OkxAdapter.symbol_pattern.match(symbol)


# endpoints and subscriptions ----------------------------------------------------------------


def test_public_data_types_share_the_public_endpoint():
    endpoints = adapter(DataType.TRADE, DataType.ORDERBOOK, DataType.TICKER).endpoints()
    assert endpoints == [
        Endpoint(
            "public",
            "wss://ws.okx.com:8443/ws/v5/public",
            (
                {"channel": "trades", "instId": SYMBOL},
                {"channel": "books5", "instId": SYMBOL},
                {"channel": "tickers", "instId": SYMBOL},
            ),
        )
    ]


def test_candles_go_to_the_business_endpoint_derived_from_the_public_url():
    endpoints = adapter(
        DataType.TRADE, DataType.CANDLE, public_ws_url="ws://127.0.0.1:8765/ws/v5/public"
    ).endpoints()
    assert endpoints == [
        Endpoint(
            "public", "ws://127.0.0.1:8765/ws/v5/public", ({"channel": "trades", "instId": SYMBOL},)
        ),
        Endpoint(
            "business",
            "ws://127.0.0.1:8765/ws/v5/business",
            ({"channel": "candle1m", "instId": SYMBOL},),
        ),
    ]


def test_the_default_business_url_is_okx_business():
    [endpoint] = adapter(DataType.CANDLE).endpoints()
    assert endpoint.url == "wss://ws.okx.com:8443/ws/v5/business"


def test_a_query_string_survives_the_business_url_derivation():
    [endpoint] = adapter(
        DataType.CANDLE, public_ws_url="wss://wspap.okx.com:8443/ws/v5/public?brokerId=9999"
    ).endpoints()
    assert endpoint.url == "wss://wspap.okx.com:8443/ws/v5/business?brokerId=9999"


def test_a_configured_business_url_wins():
    [endpoint] = adapter(
        DataType.CANDLE, business_ws_url="ws://127.0.0.1:9000/business"
    ).endpoints()
    assert endpoint.url == "ws://127.0.0.1:9000/business"


def test_configured_channels_replace_the_defaults_role_by_role():
    endpoints = adapter(
        DataType.ORDERBOOK,
        DataType.CANDLE,
        DataType.TRADE,
        channels={"orderbook": "books", "candle": "candle1Dutc"},
    ).endpoints()
    assert [(e.key, e.subscriptions) for e in endpoints] == [
        (
            "public",
            ({"channel": "books", "instId": SYMBOL}, {"channel": "trades", "instId": SYMBOL}),
        ),
        ("business", ({"channel": "candle1Dutc", "instId": SYMBOL},)),
    ]


def test_an_endpoint_without_subscriptions_is_left_out():
    assert [e.key for e in adapter(DataType.TRADE).endpoints()] == ["public"]
    assert adapter(DataType.BALANCE).endpoints() == []


def test_a_data_type_listed_twice_is_subscribed_once():
    [endpoint] = adapter(DataType.TRADE, DataType.TRADE).endpoints()
    assert endpoint.subscriptions == ({"channel": "trades", "instId": SYMBOL},)


def test_an_unknown_channel_for_a_role_is_refused():
    with pytest.raises(ValueError, match="books7"):
        adapter(DataType.ORDERBOOK, channels={"orderbook": "books7"}).endpoints()


def test_the_subscribe_frame_is_the_spec_format():
    okx_session = session(DataType.TRADE, DataType.ORDERBOOK)
    assert [orjson.loads(f) for f in okx_session.subscribe_frames()] == [
        {
            "op": "subscribe",
            "args": [
                {"channel": "trades", "instId": "BTC-USDT"},
                {"channel": "books5", "instId": "BTC-USDT"},
            ],
        }
    ]


def test_each_session_has_its_own_book():
    okx = adapter(DataType.ORDERBOOK, channels={"orderbook": "books"})
    [endpoint] = okx.endpoints()
    first, second = okx.session(endpoint), okx.session(endpoint)
    assert first.books is not None and second.books is not None
    assert first.books is not second.books


# events ------------------------------------------------------------------------------------


def test_pong_is_recognised_as_text_and_bytes():
    okx_session = session(DataType.TRADE)
    assert okx_session.handle("pong").is_pong
    assert okx_session.handle(b"pong").is_pong


def test_a_subscribe_acknowledgement_is_flagged():
    handled = session(DataType.TRADE, trade_backfill=0).handle(
        '{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}'
    )
    assert handled.subscribed
    assert handled.errors == [] and handled.points == []


def test_an_unsubscribe_acknowledgement_is_quietly_accepted():
    handled = session(DataType.TRADE).handle(
        '{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4"}'
    )
    assert (handled.subscribed, handled.errors, handled.points) == (False, [], [])


def test_an_error_event_is_reported_with_its_code_and_message():
    handled = session(DataType.TRADE).handle(
        '{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}'
    )
    assert handled.errors == ["okx error 60012: Invalid request"]
    assert not handled.subscribed


def test_the_upgrade_notice_64008_is_flagged():
    handled = session(DataType.TRADE).handle(
        '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a '
        'service upgrade. Please reconnect.","connId":"a4d3ae55"}'
    )
    assert handled.upgrade_notice
    assert handled.errors == []


@pytest.mark.parametrize(
    "frame",
    [
        '{"event":"channel-conn-count","channel":"trades","connCount":"2","connId":"a4"}',
        '{"event":"notice","code":"64009","msg":"something else","connId":"a4"}',
        '{"event":"login","code":"0","msg":"","connId":"a4"}',
    ],
)
def test_informational_events_are_tolerated_silently(frame):
    handled = session(DataType.TRADE).handle(frame)
    assert (handled.errors, handled.points, handled.upgrade_notice) == ([], [], False)


# malformed and unexpected frames -----------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ("not json at all", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"foo": 1}', "neither an event nor a push"),
        ('{"arg": "trades", "data": []}', "push without arg object or data list"),
        ('{"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": {}}', "data list"),
        (push("tickers", []), "channel not subscribed"),
        (push("trades", [], inst_id="ETH-USDT"), "instId not subscribed"),
        ('{"event": 5}', "neither an event nor a push"),
    ],
)
def test_a_malformed_or_unexpected_frame_raises_frame_error(frame, words):
    with pytest.raises(FrameError, match=words):
        session(DataType.TRADE).handle(frame)


def test_a_frame_error_quotes_at_most_a_short_piece_of_the_frame():
    frame = "x" * 10_000
    with pytest.raises(FrameError) as error:
        session(DataType.TRADE).handle(frame)
    assert len(str(error.value)) < 130


# tickers -----------------------------------------------------------------------------------


TICKER_ITEM = {
    "instType": "SPOT",
    "instId": "BTC-USDT",
    "last": "9999.99",
    "lastSz": "0.1",
    "askPx": "10000.01",
    "askSz": "11",
    "bidPx": "9999.98",
    "bidSz": "5",
    "open24h": "9000",
    "high24h": "10000.5",
    "low24h": "8888.88",
    "volCcy24h": "22220000.5",
    "vol24h": "2222",
    "sodUtc0": "0.1",
    "sodUtc8": "0.1",
    "ts": TS,
}


def test_a_ticker_push_becomes_a_ticker_point_of_decimals():
    [point] = session(DataType.TICKER).handle(push("tickers", [TICKER_ITEM])).points
    assert (point.data_type, point.timestamp) == (DataType.TICKER, AT)
    assert point.data == {
        "last": Decimal("9999.99"),
        "last_size": Decimal("0.1"),
        "bid": Decimal("9999.98"),
        "bid_size": Decimal("5"),
        "ask": Decimal("10000.01"),
        "ask_size": Decimal("11"),
        "open_24h": Decimal("9000"),
        "high_24h": Decimal("10000.5"),
        "low_24h": Decimal("8888.88"),
        "volume_24h": Decimal("2222"),
        "volume_ccy_24h": Decimal("22220000.5"),
        "raw": TICKER_ITEM,
    }


def test_missing_or_empty_optional_ticker_fields_become_none():
    item = {k: v for k, v in TICKER_ITEM.items() if k not in ("askPx", "askSz")}
    item["bidPx"] = item["bidSz"] = ""
    [point] = session(DataType.TICKER).handle(push("tickers", [item])).points
    assert [point.data[k] for k in ("bid", "bid_size", "ask", "ask_size")] == [None] * 4
    assert point.data["last"] == Decimal("9999.99")


@pytest.mark.parametrize(
    ("change", "words"),
    [({"last": ""}, "no last price"), ({"bidPx": "abc"}, "bidPx"), ({"ts": None}, "ts")],
)
def test_a_bad_ticker_is_reported_and_skipped(change, words):
    handled = session(DataType.TICKER).handle(push("tickers", [{**TICKER_ITEM, **change}]))
    assert handled.points == []
    [error] = handled.errors
    assert error.startswith("tickers item skipped") and words in error


# candles -----------------------------------------------------------------------------------


CANDLE = [TS, "8533.02", "8553.74", "8527.17", "8548.26", "45247", "529.5858061", "5.3", "0"]


def test_a_candle_push_on_the_business_endpoint_becomes_a_candle_point_stamped_at_its_start():
    candles = session(DataType.CANDLE, endpoint="business")
    handled = candles.handle(push("candle1m", [CANDLE]))
    [point] = handled.points
    assert (point.data_type, point.timestamp) == (DataType.CANDLE, AT)
    assert point.data == {
        "interval": "1m",
        "utc_aligned": False,
        "open": Decimal("8533.02"),
        "high": Decimal("8553.74"),
        "low": Decimal("8527.17"),
        "close": Decimal("8548.26"),
        "volume": Decimal("45247"),
        "volume_ccy": Decimal("529.5858061"),
        "volume_quote": Decimal("5.3"),
        "confirmed": False,
        "raw": CANDLE,
    }


def test_unconfirmed_and_confirmed_candle_updates_are_both_emitted_and_flagged():
    candles = session(DataType.CANDLE, endpoint="business")
    live = candles.handle(push("candle1m", [CANDLE])).points
    final = candles.handle(push("candle1m", [[*CANDLE[:8], "1"]])).points
    assert [p.data["confirmed"] for p in live + final] == [False, True]


def test_a_utc_candle_channel_names_its_interval_and_alignment():
    candles = session(DataType.CANDLE, endpoint="business", channels={"candle": "candle1Dutc"})
    [point] = candles.handle(push("candle1Dutc", [CANDLE])).points
    assert (point.data["interval"], point.data["utc_aligned"]) == ("1D", True)


@pytest.mark.parametrize(
    "candle",
    [CANDLE[:7], [*CANDLE[:1], "-1", *CANDLE[2:]], [*CANDLE[:5], "x", *CANDLE[6:]], {"ts": TS}],
)
def test_a_bad_candle_is_reported_and_skipped(candle):
    candles = session(DataType.CANDLE, endpoint="business")
    handled = candles.handle(push("candle1m", [candle, CANDLE]))
    assert len(handled.points) == 1
    [error] = handled.errors
    assert error.startswith("candle1m item skipped")


def test_the_public_session_does_not_accept_candles():
    with pytest.raises(FrameError, match="channel not subscribed"):
        session(DataType.TRADE, DataType.CANDLE).handle(push("candle1m", [CANDLE]))
