"""Binance spot wire format: the combined-stream endpoint, SUBSCRIBE frames, stream parsing,
the diff-depth book rules, REST gap-fill and Binance's error answers.

One connection per collector, to `/stream` (the combined endpoint, whose pushes name their
stream: {"stream": "btcusdt@trade", "data": {...}}), subscribed with one SUBSCRIBE frame
that carries an id and is acknowledged by {"result": null, "id": N}. Binance's limits: at
most 5 incoming messages a second per connection (pings, pongs and JSON requests alike: a
collector sends one SUBSCRIBE, one UNSUBSCRIBE and a pong every 20 s) and 1024 streams
per connection (a collector has at most six). The server pings every 20 s and expects a
pong within a minute; the link answers them (Keepalive.server_pings). A connection lives
at most 24 hours: the adapter's connection_lifetime makes the link open its successor a
little before, as on the `serverShutdown` event.

Trades come from `trade` (trade id `t`) or `aggTrade` (aggregate id `a`); the side is the
taker's, so a buyer who was the maker (`m` true) means a sell. After each subscription the
trades missed while no connection was up are fetched over REST: the recent ones, and when
those do not reach back to the newest trade had before, pages forward from it
(`/api/v3/aggTrades?fromId=`, or `/api/v3/historicalTrades?fromId=` for `trade`), bounded
like OKX's and reported the same way.

The diff-depth stream (`depth`, `depth@100ms`) is kept as a local book exactly as Binance
documents it, with the neutral BookSync: updates are buffered, a REST snapshot
(`/api/v3/depth`) is fetched, updates with u <= lastUpdateId are dropped, the first one
applied must have U <= lastUpdateId + 1 <= u, and every later U must be the previous u + 1;
a gap means a fresh snapshot. Partial-depth streams (`depth5`, `depth10`, `depth20`) are
stored as they come.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, ClassVar

import orjson

from collectors.bounds import Bounds, interval_ms
from collectors.exchanges.base import (
    Endpoint,
    ExchangeAdapter,
    ExchangeSession,
    FrameError,
    Handled,
    Keepalive,
)
from collectors.exchanges.booksync import BookMessage, BookSync
from collectors.exchanges.newest_trade import NewestTrade, trade_number
from collectors.exchanges.orderbook import OrderBook, parse_levels
from collectors.exchanges.parsing import (
    describe_error,
    item_error,
    json_object,
    ms_time,
    price,
    size_or_zero,
    snippet,
    strict_int,
    ticker_field,
    volume,
)
from collectors.exchanges.rest import RateLimited, get_json
from collectors.times import EPOCH, from_epoch_ms
from collectors.types import (
    DataType,
    ExchangeCollectorConfig,
    MarketDataPoint,
    trade_point,
    validate_market_data_point,
)

DEFAULT_WS_URL = "wss://stream.binance.com:9443/stream"
DEFAULT_REST_URL = "https://api.binance.com"
KLINE_INTERVALS = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d",
    "1w", "1M",
)  # fmt: skip
KLINE_CHANNELS = frozenset(f"kline_{interval}" for interval in KLINE_INTERVALS)
DIFF_DEPTH = frozenset({"depth", "depth@100ms"})
PARTIAL_DEPTH = frozenset(
    f"depth{levels}{speed}" for levels in (5, 10, 20) for speed in ("", "@100ms")
)
MAX_STREAMS = 1024  # per connection
REST_TIMEOUT = 5.0  # seconds; a fetch holds up this connection's receive loop
REST_DEPTH = 1000  # levels per side of the REST snapshot under a local book
BOOK_DEPTH = 25  # levels per side in an emitted book point
# Recent trades fetched after each subscription (custom_params "trade_backfill"; 0: none)
TRADE_BACKFILL = 100
TRADE_BACKFILL_MAX = 1000  # the most one page of Binance's trades answers holds
TRADE_BACKFILL_PAGES = 20  # pages of older trades at most (custom_params "trade_backfill_pages")
TRADE_BACKFILL_BUDGET = 10.0  # seconds all of one gap-fill may take
HISTORY_PAGE = 1000
RATE_LIMIT_PAUSE = 1.0  # seconds before asking again after HTTP 429 without Retry-After
# Binance cuts a connection after 24 hours; its successor is opened this much earlier.
CONNECTION_LIFETIME = 24 * 3600 - 15 * 60
INVALID_SYMBOL = -1121
TRADE_ROUTES = {  # channel -> (recent trades path, older pages path, id key in REST items)
    "trade": ("/api/v3/trades", "/api/v3/historicalTrades", "id"),
    "aggTrade": ("/api/v3/aggTrades", "/api/v3/aggTrades", "a"),
}
TICKER_FIELDS = {  # 24hrTicker
    "last": "c",
    "last_size": "Q",
    "bid": "b",
    "bid_size": "B",
    "ask": "a",
    "ask_size": "A",
    "open_24h": "o",
    "high_24h": "h",
    "low_24h": "l",
    "volume_24h": "v",
    "volume_ccy_24h": "q",
}
BOOK_TICKER_FIELDS = {"bid": "b", "bid_size": "B", "ask": "a", "ask_size": "A"}


class BinanceError(ValueError):
    """An error answer of Binance's REST API: {"code": -1121, "msg": "Invalid symbol."}."""

    def __init__(self, code: Any, message: str, status: int | None = None) -> None:
        self.code = code
        self.status = status
        http = f"HTTP {status} " if status else ""
        super().__init__(f"binance REST error {http}{code}: {message[:200]}")


class BinanceAdapter(ExchangeAdapter):
    name: ClassVar[str] = "binance"
    channel_names: ClassVar[dict[str, frozenset[str]]] = {
        "trades": frozenset({"trade", "aggTrade"}),
        "orderbook": DIFF_DEPTH | PARTIAL_DEPTH,
        "ticker": frozenset({"ticker", "bookTicker"}),
        "book_ticker": frozenset({"bookTicker"}),  # best bid/ask beside the 24 h ticker
        "candle": KLINE_CHANNELS,
    }
    channel_roles: ClassVar[dict[str, DataType]] = {
        "trades": DataType.TRADE,
        "orderbook": DataType.ORDERBOOK,
        "ticker": DataType.TICKER,
        "book_ticker": DataType.TICKER,
        "candle": DataType.CANDLE,
    }
    # BTCUSDT, as Binance writes it; streams name it in lower case
    symbol_pattern: ClassVar[re.Pattern[str]] = re.compile(r"\A[A-Z0-9]{2,20}\Z")
    # aggTrade: its gap-fill pages (aggTrades?fromId=) need no API key, historicalTrades may
    default_channels: ClassVar[dict[str, str]] = {
        "trades": "aggTrade",
        "orderbook": "depth20@100ms",
        "ticker": "ticker",
        "candle": "kline_1m",
    }
    default_public_ws_url: ClassVar[str] = DEFAULT_WS_URL
    keepalive: ClassVar[Keepalive] = Keepalive.server_pings()
    connection_lifetime: ClassVar[float | None] = CONNECTION_LIFETIME
    tuning_params: ClassVar[dict[str, Callable[[Any], Any]]] = {}  # set below the functions

    def __init__(self, config: ExchangeCollectorConfig) -> None:
        super().__init__(config)
        params = config.custom_params or {}
        if params.get("connection_lifetime") is not None:
            self.connection_lifetime = float(params["connection_lifetime"])
        # kept across this collector's connections, so each can fill what the last missed
        self.newest_trade = NewestTrade()
        self.rest = RestGate(params.get("rest_url") or DEFAULT_REST_URL)
        self.symbol_checked = False

    def resume_after_trade(self, trade_id: str) -> None:
        self.newest_trade.saw(trade_id)

    def streams(self) -> dict[str, str]:
        """Stream name -> channel, for this collector's data types, in subscription order."""
        params = self.config.custom_params or {}
        channels = {**self.default_channels, **(params.get("channels") or {})}
        prefix = self.config.symbol.lower()
        streams: dict[str, str] = {}
        for data_type in dict.fromkeys(self.config.data_types):
            roles = [role for role, produced in self.channel_roles.items() if produced is data_type]
            for role in roles:
                channel = channels.get(role)
                if channel is None:
                    continue
                if channel not in self.channel_names[role]:
                    raise ValueError(f"unknown binance channel {channel!r} for {role}")
                streams[f"{prefix}@{channel}"] = channel
        if len(streams) > MAX_STREAMS:
            raise ValueError(f"{len(streams)} streams, Binance allows {MAX_STREAMS} a connection")
        return streams

    def endpoints(self) -> list[Endpoint]:
        """One combined-stream connection with one SUBSCRIBE for every stream."""
        streams = self.streams()
        if not streams:
            return []
        params = self.config.custom_params or {}
        url = combined_stream_url(params.get("public_ws_url") or self.default_public_ws_url)
        return [Endpoint("stream", url, ({"streams": tuple(streams)},))]

    @classmethod
    def unlisted_symbols(cls, symbols: list[str], rest_url: str, timeout: float) -> list[str]:
        return [symbol for symbol in symbols if not symbol_listed(symbol, rest_url, timeout)]

    def session(self, endpoint: Endpoint) -> BinanceSession:
        params = self.config.custom_params or {}
        backfill, pages = params.get("trade_backfill"), params.get("trade_backfill_pages")
        return BinanceSession(
            self,
            endpoint,
            trade_backfill=TRADE_BACKFILL if backfill is None else backfill,
            backfill_pages=TRADE_BACKFILL_PAGES if pages is None else pages,
        )


def symbol_listed(symbol: str, rest_url: str, timeout: float) -> bool:
    """GET /api/v3/exchangeInfo?symbol=S: False when Binance answers "Invalid symbol"."""
    url = rest_url or DEFAULT_REST_URL
    try:
        body = get_json(url, "/api/v3/exchangeInfo", {"symbol": symbol}, timeout)
    except urllib.error.HTTPError as error:
        answer = error_answer(error)
        if isinstance(answer, BinanceError) and answer.code == INVALID_SYMBOL:
            return False
        raise answer from None
    listed = body.get("symbols") if type(body) is dict else None
    if type(listed) is not list:
        raise ValueError("binance exchangeInfo answer holds no symbols list")
    return any(type(item) is dict and item.get("symbol") == symbol for item in listed)


def combined_stream_url(url: str) -> str:
    """The combined-stream endpoint: wss://host:9443 or .../stream -> wss://host:9443/stream."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return parts._replace(path="/stream").geturl()
    return url


def subscription_frame(method: str, streams: Iterable[str], request_id: int) -> str:
    return orjson.dumps({"method": method, "params": list(streams), "id": request_id}).decode()


class RestGate:
    """Binance's REST API for one collector, closed while Binance asks us to wait.

    HTTP 429 (too many requests) and 418 (the IP is banned) carry Retry-After; until it
    has passed no request is sent, since asking again during a ban lengthens it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.closed_until = 0.0
        self.closed_because = ""

    def get(self, path: str, query: dict[str, Any], timeout: float = REST_TIMEOUT) -> Any:
        """The decoded answer; RateLimited (also while closed), BinanceError, OSError."""
        wait = self.closed_until - time.monotonic()
        if wait > 0:
            raise RateLimited(f"{self.closed_because}; {wait:.0f}s left, not asked", wait)
        try:
            return get_json(self.url, path, query, timeout)
        except RateLimited as limited:
            status = str(limited).split()[1] if str(limited).startswith("HTTP ") else ""
            why = (
                "binance banned this IP (HTTP 418)"
                if status == "418"
                else "binance: too many requests (HTTP 429)"
            )
            retry = limited.retry_after
            self.closed_until = time.monotonic() + (retry or RATE_LIMIT_PAUSE)
            self.closed_because = f"{why}, retry after {retry:g}s" if retry else why
            raise RateLimited(self.closed_because, retry) from None
        except urllib.error.HTTPError as error:
            raise error_answer(error) from None


def error_answer(error: urllib.error.HTTPError) -> Exception:
    """An HTTP error status as Binance's own error, when its body says one."""
    try:
        body = orjson.loads(error.read(64 * 1024))
    except (OSError, ValueError):
        body = None
    if type(body) is dict and "code" in body:
        return BinanceError(body.get("code"), str(body.get("msg", "")), error.code)
    return OSError(f"binance REST: HTTP {error.code} {error.reason}")


class BinanceSession(ExchangeSession):
    """One connection's parser: its streams, its request ids and the state of its book."""

    def __init__(
        self,
        adapter: BinanceAdapter,
        endpoint: Endpoint,
        *,
        trade_backfill: int = TRADE_BACKFILL,
        backfill_pages: int = TRADE_BACKFILL_PAGES,
    ) -> None:
        self.adapter = adapter
        self.exchange = BinanceAdapter.name
        self.symbol = adapter.config.symbol
        self.rest = adapter.rest
        self.newest_trade = adapter.newest_trade
        self.trade_backfill = trade_backfill
        self.backfill_pages = backfill_pages
        self.streams = [stream for sub in endpoint.subscriptions for stream in sub["streams"]]
        self.requests: dict[int, str] = {}  # request id -> method, until answered
        self.next_id = 1
        self.trade_channel: str | None = None
        self.bounds = adapter.bounds
        self.received = 0  # when the frame being handled was received, epoch ms
        self.frame_bytes = 0  # and its length
        self._trade_time: tuple[int | None, datetime] = (None, EPOCH)  # the last trade's ts
        self.books: BookSync | None = None
        self._handlers: dict[str, Callable[[dict], Handled]] = {}
        prefix = self.symbol.lower() + "@"
        for stream in self.streams:
            self._handlers[stream] = self._handler_for(stream.removeprefix(prefix))

    def _handler_for(self, channel: str) -> Callable[[dict], Handled]:
        if channel in TRADE_ROUTES:
            self.trade_channel = channel
            return self._trades if channel == "trade" else self._agg_trades
        if channel in DIFF_DEPTH:
            self.books = books_sync(self.symbol, self.rest, channel, self.bounds)
            return self._depth
        if channel in PARTIAL_DEPTH:
            return partial(self._partial_depth, channel)
        if channel == "ticker":
            return self._ticker
        if channel == "bookTicker":
            return self._book_ticker
        if channel in KLINE_CHANNELS:
            return partial(self._kline, channel)
        raise ValueError(f"unknown binance channel {channel!r}")

    def _request(self, method: str) -> str:
        request_id, self.next_id = self.next_id, self.next_id + 1
        self.requests[request_id] = method
        return subscription_frame(method, self.streams, request_id)

    def subscribe_frames(self) -> list[str]:
        return [self._request("SUBSCRIBE")]

    def unsubscribe_frames(self) -> list[str]:
        return [self._request("UNSUBSCRIBE")]

    def handle(self, frame: str | bytes) -> Handled:
        self.received, self.frame_bytes = self.bounds.clock(), len(frame)
        message = json_object(frame)
        data = message.get("data")
        if type(data) is dict:
            handler = self._handlers.get(message.get("stream"))
            if handler is not None:
                return handler(data)
            if data.get("e") == "serverShutdown":  # the server closes soon: move first
                return Handled(upgrade_notice=True)
            raise FrameError(f"push for a stream not subscribed here: {snippet(message)}")
        if "id" in message:
            return self._answer(message)
        if message.get("e") == "serverShutdown":
            return Handled(upgrade_notice=True)
        raise FrameError(f"neither a push nor an answer: {snippet(frame)}")

    def _answer(self, message: dict) -> Handled:
        """{"result": null, "id": 1}, or an error: {"code": 2, "msg": "Invalid request: ...",
        "id": 1} (also seen as {"error": {"code": 2, "msg": ...}, "id": 1})."""
        method = self.requests.pop(message.get("id"), None)  # type: ignore[arg-type]
        error = message.get("error") if type(message.get("error")) is dict else message
        if "code" in error:
            text = str(error.get("msg", ""))[:200]
            what = f" to {method}" if method else ""
            return Handled(errors=[f"binance error{what} {error.get('code')}: {text}"])
        if method == "SUBSCRIBE":
            return self._subscribed()
        if method == "UNSUBSCRIBE":
            return Handled(unsubscribed=True)
        return Handled()  # LIST_SUBSCRIPTIONS and the like: nothing to do

    def _subscribed(self) -> Handled:
        handled = Handled(subscribed=True)
        if not self.adapter.symbol_checked and not self._check_symbol(handled):
            return handled
        if self.books is not None:
            self.books.on_subscribed()
        if self.trade_channel is not None:
            self._backfill_trades(handled)
        return handled

    def _check_symbol(self, handled: Handled) -> bool:
        """Binance's streams of an unknown symbol are silent, not refused: ask its REST API
        once per collector. False when the symbol does not exist (a permanent error)."""
        try:
            self.rest.get("/api/v3/exchangeInfo", {"symbol": self.symbol})
        except BinanceError as error:
            if error.code == INVALID_SYMBOL:
                handled.permanent_error = self._no_such_symbol(error)
                return False
            handled.errors.append(f"symbol check failed: {describe_error(error)}")
        except (OSError, ValueError) as error:  # checked again on the next connection
            handled.errors.append(f"symbol check failed: {describe_error(error)}")
        else:
            self.adapter.symbol_checked = True
        return True

    def _no_such_symbol(self, error: BinanceError) -> str:
        return (
            f"symbol {self.symbol} does not exist on binance ({error}); "
            "not restarted until the configuration changes"
        )

    def _point(self, data_type: DataType, ts: Any, data: dict) -> MarketDataPoint:
        point = MarketDataPoint(self.exchange, self.symbol, ms_time(ts), data_type, data)
        validate_market_data_point(point)
        return point

    def _time(self, ts: Any, name: str, span: int = 0) -> int:
        """An exchange time (epoch ms) within the bounds' window around the time its frame
        was received."""
        return self.bounds.exchange_time(strict_int(ts, name), self.received, name, span)

    # trades ------------------------------------------------------------------------------

    def _trades(self, data: dict) -> Handled:
        """{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",
        "T":1672515782136,"m":true,"M":true}"""
        handled = Handled()
        self._add_trade(data, data.get("t"), "trade", handled, self.received, self.frame_bytes)
        return handled

    def _agg_trades(self, data: dict) -> Handled:
        """{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100",
        "f":100,"l":105,"T":1672515782136,"m":true,"M":true}"""
        handled = Handled()
        self._add_trade(data, data.get("a"), "aggTrade", handled, self.received, self.frame_bytes)
        return handled

    def _add_trade(
        self,
        item: Any,
        trade_id: Any,
        channel: str,
        handled: Handled,
        received: int,
        frame_bytes: int | None,
    ) -> None:
        """A pushed trade (p, q, T, m) or a REST one (price/qty/time/isBuyerMaker for
        trades, p/q/T/m for aggTrades) -> a trade point; a bad one, or one out of bounds
        (collectors.bounds), is reported and skipped. `received`: when it came (epoch ms);
        `frame_bytes`: the length of the frame that carried it, None when fetched."""
        try:
            if type(trade_id) is not int or trade_id < 0:
                raise ValueError(f"bad trade id {snippet(trade_id)}")
            if "p" in item:
                px, qty, ts, maker = item["p"], item["q"], item["T"], item["m"]
            else:
                px, qty, ts, maker = item["price"], item["qty"], item["time"], item["isBuyerMaker"]
            if type(px) is not str or type(qty) is not str or type(ts) is not int:
                raise TypeError("price and quantity must be strings, time an integer")
            if type(maker) is not bool:
                raise TypeError("the buyer-is-maker flag must be true or false")
            number, price_, size = str(trade_id), Decimal(px), Decimal(qty)
            self.bounds.trade(ts, price_, size, item, received, frame_bytes)
            last_ts, when = self._trade_time
            if ts != last_ts:  # trades in a burst share their millisecond, and its datetime
                when = EPOCH + timedelta(0, ts // 1000, ts % 1000 * 1000)
                self._trade_time = (ts, when)
            point = trade_point(
                self.exchange,
                self.symbol,
                when,
                {
                    "trade_id": number,
                    "price": price_,
                    "size": size,
                    "side": "sell" if maker else "buy",  # the buyer made, the taker sold
                    "raw": item,
                },
            )
            validate_market_data_point(point)
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            handled.errors.append(item_error(channel, error))
            return
        self.newest_trade.saw(number)
        handled.points.append(point)

    def _backfill_trades(self, handled: Handled) -> None:
        """The trades missed before this subscription, oldest first: the most recent ones
        and, if those do not reach back to the newest trade had before, pages forward from
        it. Binance answers oldest first."""
        if not self.trade_backfill:
            return
        channel = self.trade_channel
        assert channel is not None
        recent_path, pages_path, key = TRADE_ROUTES[channel]
        since = self.newest_trade.trade_id
        try:
            query = {"symbol": self.symbol, "limit": self.trade_backfill}
            recent = self._trade_page(recent_path, query)
        except BinanceError as error:
            if error.code == INVALID_SYMBOL:
                handled.permanent_error = self._no_such_symbol(error)
            else:
                handled.errors.append(f"trade backfill failed: {describe_error(error)}")
            return
        except (OSError, ValueError) as error:
            handled.errors.append(f"trade backfill failed: {describe_error(error)}")
            return
        items = recent
        if since is not None:
            ids = [item_id(item, key) for item in recent]
            if ids and None not in ids:
                if max(ids) < since:
                    handled.errors.append(
                        f"trade backfill: the newest trade had, {since}, is ahead of binance's "
                        f"newest {channel} id {max(ids)}: the stored trades come from the other "
                        "id space (trade vs aggTrade); a pair must not switch trade channels"
                    )
                    return
                items = self._older_trades(pages_path, key, min(ids), since, handled) + recent
            items = [item for item in items if (n := item_id(item, key)) is None or n > since]
        received = self.bounds.clock()
        for item in items:
            trade_id = item.get(key) if type(item) is dict else None
            self._add_trade(item, trade_id, channel, handled, received, None)

    def _trade_page(self, path: str, query: dict[str, Any]) -> list:
        page = self.rest.get(path, query)
        if type(page) is not list:
            raise ValueError(f"binance {path} answer is not a list: {snippet(page)}")
        return page

    def _older_trades(self, path: str, key: str, oldest: int, since: int, handled: Handled) -> list:
        """Trades with ids from since + 1 up to `oldest` (exclusive), paged forward; as many
        pages as allowed, nearest the present first when not all of them are. A gap left
        open is reported with the ids that may be missing."""
        if oldest <= since + 1:
            return []
        first = max(since + 1, oldest - self.backfill_pages * HISTORY_PAGE)
        if first > since + 1:
            handled.errors.append(
                f"trade backfill: {oldest - since - 1} trades missed, more than "
                f"{self.backfill_pages} pages: trade ids {since + 1} to {first - 1} may be missing"
            )
        older: list = []
        start, pages = first, 0
        deadline = time.monotonic() + TRADE_BACKFILL_BUDGET
        while start < oldest:
            if pages >= self.backfill_pages or time.monotonic() >= deadline:
                handled.errors.append(
                    f"trade backfill stopped after {pages} pages: trade ids {start} to "
                    f"{oldest - 1} may be missing"
                )
                break
            query = {"symbol": self.symbol, "fromId": start, "limit": HISTORY_PAGE}
            try:
                page = self._trade_page(path, query)
            except RateLimited as limited:
                pause = limited.retry_after or RATE_LIMIT_PAUSE
                if time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    continue
                handled.errors.append(
                    f"trade backfill failed: {limited}; trade ids {start} to {oldest - 1} "
                    "may be missing"
                )
                break
            except (OSError, ValueError) as error:
                handled.errors.append(
                    f"trade backfill failed: {describe_error(error)}; trade ids {start} to "
                    f"{oldest - 1} may be missing"
                )
                break
            pages += 1
            ids = [item_id(item, key) for item in page]
            if not ids or None in ids or max(ids) < start:
                break  # nothing newer is kept, or the answer does not page forward
            older += [item for item in page if item_id(item, key) < oldest]  # type: ignore[operator]
            start = max(ids) + 1  # type: ignore[type-var]
        return older

    # books -------------------------------------------------------------------------------

    def _depth(self, data: dict) -> Handled:
        """{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,
        "b":[["0.0024","10"]],"a":[["0.0026","100"]]}"""
        books = self.books
        assert books is not None  # set up with the handler
        handled = Handled()
        try:
            first, last = strict_int(data["U"], "U"), strict_int(data["u"], "u")
            limits = self.bounds
            message = BookMessage(
                bids=limits.levels(data["b"], "b"), asks=limits.levels(data["a"], "a"),
                ts=self._time(data["E"], "E"), seq=last, prev_seq=first - 1,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            books.bad_message(handled, f"depth bad update: {describe_error(error)}")
            return handled
        books.update(message, handled)
        return handled

    def _partial_depth(self, channel: str, data: dict) -> Handled:
        """{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}: no time
        in it, so stamped when received."""
        handled = Handled()
        limits, depth = self.bounds, partial_depth(channel)
        try:
            bids = limits.levels(data["bids"], "bids", depth)
            asks = limits.levels(data["asks"], "asks", depth)
            point_data = {
                "channel": channel,
                "action": "snapshot",
                "bids": [[px, sz] for _, _, px, sz in parse_levels(bids)],
                "asks": [[px, sz] for _, _, px, sz in parse_levels(asks)],
                "seq_id": strict_int(data["lastUpdateId"], "lastUpdateId"),
                "checksum": None,
                "raw": limits.raw(data, self.frame_bytes),
            }
            handled.points.append(self._point(DataType.ORDERBOOK, self.received, point_data))
        except (KeyError, TypeError, ValueError) as error:
            handled.errors.append(item_error(channel, error))
        return handled

    # tickers and candles -----------------------------------------------------------------

    def _ticker(self, data: dict) -> Handled:
        """{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00",
        "w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026",
        "A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,
        "C":86400000,"F":0,"L":18150,"n":18151}"""
        handled = Handled()
        try:
            fields: dict[str, Any] = {
                name: ticker_field(name, data.get(key), key) for name, key in TICKER_FIELDS.items()
            }
            if fields["last"] is None:
                raise ValueError("no last price")
            fields.update(channel="ticker", raw=self.bounds.raw(data, self.frame_bytes))
            handled.points.append(self._point(DataType.TICKER, self._time(data["E"], "E"), fields))
        except (KeyError, TypeError, ValueError) as error:
            handled.errors.append(item_error("ticker", error))
        return handled

    def _book_ticker(self, data: dict) -> Handled:
        """{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",
        "a":"25.36520000","A":"40.66000000"}: no time in it, so stamped when received."""
        handled = Handled()
        try:
            fields: dict[str, Any] = {
                name: size_or_zero(data[key], key) for name, key in BOOK_TICKER_FIELDS.items()
            }
            raw = self.bounds.raw(data, self.frame_bytes)
            fields.update(channel="bookTicker", update_id=strict_int(data["u"], "u"), raw=raw)
            handled.points.append(self._point(DataType.TICKER, self.received, fields))
        except (KeyError, TypeError, ValueError) as error:
            handled.errors.append(item_error("bookTicker", error))
        return handled

    def _kline(self, channel: str, data: dict) -> Handled:
        """{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,
        "T":1672515839999,"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020",
        "h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500",
        "Q":"0.500","B":"123456"}}

        t is the interval's start; x true marks the kline closed: only then is it final.
        """
        handled = Handled()
        try:
            kline = data["k"]
            if type(kline) is not dict:
                raise TypeError("k is not an object")
            closed = kline["x"]
            if type(closed) is not bool:
                raise TypeError("x must be true or false")
            interval = channel.removeprefix("kline_")
            fields = {
                "interval": interval,
                "utc_aligned": True,
                "open": price(kline["o"], "o"),
                "high": price(kline["h"], "h"),
                "low": price(kline["l"], "l"),
                "close": price(kline["c"], "c"),
                "volume": volume(kline["v"], "v"),
                "volume_ccy": volume(kline["q"], "q"),
                "volume_quote": volume(kline["q"], "q"),
                "trade_count": strict_int(kline["n"], "n"),
                "confirmed": closed,
                "raw": self.bounds.raw(data, self.frame_bytes),
            }
            start = self._time(kline["t"], "t", span=interval_ms(interval))
            handled.points.append(self._point(DataType.CANDLE, start, fields))
        except (KeyError, TypeError, ValueError) as error:
            handled.errors.append(item_error(channel, error))
        return handled


def item_id(item: Any, key: str) -> int | None:
    """A REST trade item's id ("id" of a trade, "a" of an aggregate) as a number."""
    value = item.get(key) if type(item) is dict else None
    if type(value) is int and value >= 0:
        return value
    return trade_number(value)


def partial_depth(channel: str) -> int:
    """The levels a side of a partial-depth stream holds: depth20@100ms -> 20."""
    return int(channel.removeprefix("depth").split("@")[0])


def books_sync(symbol: str, rest: RestGate, channel: str, bounds: Bounds) -> BookSync:
    """The diff-depth stream's local book, kept the neutral way: U - 1 and u as the sequence
    before and after each update, the REST snapshot's lastUpdateId as its sequence."""

    def emit(action: str, message: BookMessage, book: OrderBook) -> MarketDataPoint:
        bids, asks = book.top(BOOK_DEPTH)
        data = {
            "channel": channel,
            "action": action,
            "bids": bids,
            "asks": asks,
            "seq_id": message.seq,
            "checksum": None,
        }
        point = MarketDataPoint(
            BinanceAdapter.name, symbol, from_epoch_ms(message.ts), DataType.ORDERBOOK, data
        )
        validate_market_data_point(point)
        return point

    def fetch_snapshot() -> BookMessage:
        """{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[...]}"""
        answer = rest.get("/api/v3/depth", {"symbol": symbol, "limit": REST_DEPTH})
        if type(answer) is not dict:
            raise ValueError("binance REST answer holds no book")
        return BookMessage(
            bids=answer.get("bids", []),
            asks=answer.get("asks", []),
            ts=time.time_ns() // 1_000_000,
            seq=strict_int(answer.get("lastUpdateId"), "lastUpdateId"),
        )

    return BookSync(
        channel,
        emit,
        fetch_snapshot=fetch_snapshot,
        labels=("u", "U - 1"),
        max_levels=bounds.max_book_levels,
    )


def count_check(maximum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"must be a non-negative integer, not {value!r}")
        if value > maximum:
            raise ValueError(f"must be at most {maximum}, not {value!r}")
        return value

    return check


def lifetime_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 86_400:
        raise ValueError(f"must be a number of seconds from 1 to 86400, not {value!r}")
    return float(value)


# Recent trades a subscription fetches, pages of older ones, and (for tests against the
# simulator, whose 24 h cut is compressed) how long a connection lives before its successor.
BinanceAdapter.tuning_params = {
    "trade_backfill": count_check(TRADE_BACKFILL_MAX),
    "trade_backfill_pages": count_check(2**31 - 1),
    "connection_lifetime": lifetime_seconds,
}
