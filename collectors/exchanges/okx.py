"""OKX v5 wire format: endpoints, subscribe frames, push parsing, its book checksum and rules.

The `books` channel keeps a local book per connection with the exchange-neutral BookSync
(collectors.exchanges.booksync): OKX's part is reading seqId/prevSeqId and its CRC32
checksum from each push (whichever it carries: in 2022 only the checksum, later both, from
2026 a checksum of 0, meaning none), resubscribing to resynchronize, and the REST snapshot
(GET /api/v5/market/books) for a stream that opens with an update.

The `trades` channel does not replay what was missed while a connection was down, so each
acknowledged trades subscription fetches the most recent trades over REST
(GET /api/v5/market/trades) and emits them like pushed ones; storage ignores the ones it
already holds. When the collector has had trades before (a reconnect, a restart, a new
connection after an upgrade notice) and the recent ones do not reach back to the newest
of those, it pages further back through GET /api/v5/market/history-trades (by tradeId,
100 a page) until they do, so a long outage of a busy market leaves no gap either. That
is bounded (TRADE_BACKFILL_PAGES, TRADE_BACKFILL_BUDGET); a gap it could not close is
reported as an error naming the trade ids that may be missing.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Sequence
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
    bounded_time,
    describe_error,
    item_error,
    json_object,
    optional_int,
    price,
    snippet,
    strict_int,
    ticker_field,
    volume,
)
from collectors.exchanges.rest import RateLimited, get_json
from collectors.times import EPOCH, from_epoch_ms
from collectors.types import (
    TRADE_SIDES,
    DataType,
    ExchangeCollectorConfig,
    MarketDataPoint,
    trade_point,
    validate_market_data_point,
)

CANDLE_CHANNELS = frozenset(
    [
        f"candle{bar}"
        for bar in (
            "1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H",
            "1D", "2D", "3D", "1W", "1M", "3M",
        )
    ]
    + [f"candle{bar}utc" for bar in ("6H", "12H", "1D", "2D", "3D", "1W", "1M", "3M")]
)  # fmt: skip

# OKX serves candles only on /ws/v5/business since 2023
BUSINESS_ROLES = frozenset({"candle"})
DEFAULT_REST_URL = "https://www.okx.com"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
# The error event of a subscription to a channel or instId OKX does not have:
# {"event":"error","code":"60018","msg":"Subscribe failed, wrong URL or channel:trades,
# instId:SOL-USDX doesn't exist. ..."}
NOT_FOUND = "60018"
REST_DEPTH = 400  # the depth of the `books` channel
REST_TIMEOUT = 5.0  # seconds; the fetch blocks this connection's receive loop
# Recent trades fetched over REST on each trades subscription, to fill what a reconnect
# missed; custom_params "trade_backfill" overrides it, 0 turns it off, OKX serves at most 500.
TRADE_BACKFILL = 100
TRADE_BACKFILL_MAX = 500  # the most OKX's recent trades serves
TRADE_BACKFILL_TIMEOUT = 2.0  # seconds; the fetch holds up the receive loop it runs in
# Pages of older trades fetched when the recent ones do not reach back to the last trade
# seen (custom_params "trade_backfill_pages"), and the seconds all of it may take.
TRADE_BACKFILL_PAGES = 20
TRADE_BACKFILL_BUDGET = 10.0
HISTORY_PAGE = 100  # the most OKX's history-trades serves at once
RATE_LIMIT_PAUSE = 0.5  # seconds before asking again after "Too Many Requests"
BOOK_DEPTH = 25  # levels per side in an emitted `books` point
BOOKS5_DEPTH = 5  # levels per side in a `books5` push: more is refused
CHECKSUM_DEPTH = 25  # levels per side in OKX's book checksum
TICKER_FIELDS = {
    "last": "last",
    "last_size": "lastSz",
    "bid": "bidPx",
    "bid_size": "bidSz",
    "ask": "askPx",
    "ask_size": "askSz",
    "open_24h": "open24h",
    "high_24h": "high24h",
    "low_24h": "low24h",
    "volume_24h": "vol24h",
    "volume_ccy_24h": "volCcy24h",
}


class OkxAdapter(ExchangeAdapter):
    name: ClassVar[str] = "okx"
    channel_names: ClassVar[dict[str, frozenset[str]]] = {
        "trades": frozenset({"trades"}),
        "orderbook": frozenset({"books5", "books"}),
        "ticker": frozenset({"tickers"}),
        "candle": CANDLE_CHANNELS,
    }
    channel_roles: ClassVar[dict[str, DataType]] = {
        "trades": DataType.TRADE,
        "orderbook": DataType.ORDERBOOK,
        "ticker": DataType.TICKER,
        "candle": DataType.CANDLE,
    }
    # spot BTC-USDT, swap BTC-USDT-SWAP, futures BTC-USD-220527, options BTC-USD-220527-30000-C
    symbol_pattern: ClassVar[re.Pattern[str]] = re.compile(
        r"\A(?=.{3,50}\Z)[A-Z0-9]+(?:-[A-Z0-9]+)+\Z"
    )
    default_channels: ClassVar[dict[str, str]] = {
        "trades": "trades",
        "orderbook": "books5",
        "ticker": "tickers",
        "candle": "candle1m",
    }
    default_public_ws_url: ClassVar[str] = "wss://ws.okx.com:8443/ws/v5/public"
    # OKX closes a connection quiet for 30 s; a text "ping" is answered with a text "pong"
    keepalive: ClassVar[Keepalive] = Keepalive.text_frame("ping")
    tuning_params: ClassVar[dict[str, Callable[[Any], Any]]] = {}  # set below the functions

    def __init__(self, config: ExchangeCollectorConfig) -> None:
        super().__init__(config)
        # kept across this collector's connections, so each can fill what the last missed
        self.newest_trade = NewestTrade()

    @classmethod
    def unlisted_symbols(cls, symbols: list[str], rest_url: str, timeout: float) -> list[str]:
        """GET /api/v5/public/instruments?instType=T once per instrument type asked about."""
        listed: set[str] = set()
        for inst_type, family in sorted({instrument_kind(symbol) for symbol in symbols}):
            query = {"instType": inst_type, **({"instFamily": family} if family else {})}
            items = fetch_okx_rest(rest_url or DEFAULT_REST_URL, INSTRUMENTS_PATH, query, timeout)
            listed.update(item.get("instId") for item in items if type(item) is dict)
        return [symbol for symbol in symbols if symbol not in listed]

    def resume_after_trade(self, trade_id: str) -> None:
        self.newest_trade.saw(trade_id)

    def endpoints(self) -> list[Endpoint]:
        """The public endpoint (trades, books, tickers) and the business one (candles)."""
        params = self.config.custom_params or {}
        channels = {**self.default_channels, **(params.get("channels") or {})}
        public_url = params.get("public_ws_url") or self.default_public_ws_url
        subscriptions: dict[str, list[dict]] = {"public": [], "business": []}
        roles = {data_type: role for role, data_type in self.channel_roles.items()}
        for data_type in dict.fromkeys(self.config.data_types):
            role = roles.get(data_type)
            if role is None:  # BALANCE needs a logged-in private connection
                continue
            channel = channels[role]
            if channel not in self.channel_names[role]:
                raise ValueError(f"unknown okx channel {channel!r} for {role}")
            key = "business" if role in BUSINESS_ROLES else "public"
            subscriptions[key].append({"channel": channel, "instId": self.config.symbol})
        urls = {
            "public": public_url,
            "business": params.get("business_ws_url") or business_url(public_url),
        }
        return [
            Endpoint(key, urls[key], tuple(args)) for key, args in subscriptions.items() if args
        ]

    def session(self, endpoint: Endpoint) -> OkxSession:
        params = self.config.custom_params or {}
        backfill, pages = params.get("trade_backfill"), params.get("trade_backfill_pages")
        return OkxSession(
            self.config,
            endpoint,
            params.get("rest_url") or DEFAULT_REST_URL,
            trade_backfill=TRADE_BACKFILL if backfill is None else backfill,
            backfill_pages=TRADE_BACKFILL_PAGES if pages is None else pages,
            newest_trade=self.newest_trade,
            bounds=self.bounds,
        )


def numeric_id(item: Any) -> int | None:
    """A REST trade item's tradeId as a number; None if it has none."""
    return trade_number(item.get("tradeId")) if type(item) is dict else None


def business_url(public_url: str) -> str:
    """wss://host/ws/v5/public -> wss://host/ws/v5/business (query kept)."""
    parts = urllib.parse.urlsplit(public_url)
    if not parts.path.endswith("/public"):
        raise ValueError(f"cannot derive the business URL from {public_url!r}; set business_ws_url")
    return parts._replace(path=parts.path[: -len("/public")] + "/business").geturl()


def subscription_frame(op: str, args: list[dict] | tuple[dict, ...]) -> str:
    return orjson.dumps({"op": op, "args": list(args)}).decode()


def okx_frame(frame: str | bytes) -> tuple[dict, Any, list | None]:
    """(message, arg, data) of an OKX frame: data None for an event, whose "event" is a
    string; a push has an arg object and a data list. FrameError for anything else."""
    message = json_object(frame)
    data = message.get("data")
    if data is None:
        if type(message.get("event")) is not str:
            raise FrameError(f"neither an event nor a push: {snippet(frame)}")
        return message, None, None
    arg = message.get("arg")
    if type(arg) is not dict or type(data) is not list:
        raise FrameError(f"push without arg object or data list: {snippet(frame)}")
    return message, arg, data


class OkxSession(ExchangeSession):
    """One OKX connection's parser: which channels it subscribed and the state of its book."""

    def __init__(
        self,
        config: ExchangeCollectorConfig,
        endpoint: Endpoint,
        rest_url: str,
        *,
        trade_backfill: int = TRADE_BACKFILL,
        backfill_pages: int = TRADE_BACKFILL_PAGES,
        newest_trade: NewestTrade | None = None,
        bounds: Bounds | None = None,
    ):
        self.exchange = OkxAdapter.name
        self.symbol = config.symbol
        self.endpoint = endpoint
        self.rest_url = rest_url
        self.trade_backfill = trade_backfill
        self.backfill_pages = backfill_pages
        self.newest_trade = newest_trade or NewestTrade()
        self.bounds = bounds or Bounds()
        self.received = 0  # when the frame being handled was received, epoch ms
        self.frame_bytes = 0  # and its length
        self._trade_time: tuple[int | None, datetime] = (None, EPOCH)  # the last trade's ts
        self.books: BookSync | None = None
        self._handlers: dict[str, Any] = {}
        for arg in endpoint.subscriptions:
            self._handlers[arg["channel"]] = self._handler_for(arg["channel"], rest_url)

    def _handler_for(self, channel: str, rest_url: str) -> Any:
        if channel == "trades":
            return self._trades
        if channel == "books5":
            return self._books5
        if channel == "books":
            self.books = books_sync(self.exchange, self.symbol, rest_url, self.bounds)
            return self._books
        if channel == "tickers":
            return self._tickers
        if channel in CANDLE_CHANNELS:
            return partial(self._candles, channel)
        raise ValueError(f"unknown okx channel {channel!r}")

    def subscribe_frames(self) -> list[str]:
        return [subscription_frame("subscribe", self.endpoint.subscriptions)]

    def unsubscribe_frames(self) -> list[str]:
        return [subscription_frame("unsubscribe", self.endpoint.subscriptions)]

    def handle(self, frame: str | bytes) -> Handled:
        if frame == "pong" or frame == b"pong":
            return Handled(is_pong=True)
        self.received, self.frame_bytes = self.bounds.clock(), len(frame)
        message, arg, data = okx_frame(frame)
        if data is None:
            return self._event(message["event"], message)
        handler = self._handlers.get(arg.get("channel"))
        if handler is None:
            raise FrameError(f"push for a channel not subscribed here: {snippet(arg)}")
        if arg.get("instId") != self.symbol:
            raise FrameError(f"push for an instId not subscribed here: {snippet(arg)}")
        return handler(message, data)

    def _event(self, event: str, message: dict) -> Handled:
        if event == "subscribe":
            arg = message.get("arg")
            channel = arg.get("channel") if type(arg) is dict else None
            if self.books is not None and channel == "books":
                self.books.on_subscribed()
            handled = Handled(subscribed=True)
            if channel == "trades" and "trades" in self._handlers:
                self._backfill_trades(handled)
            return handled
        if event in ("error", "channel-conn-count-error"):
            code, text = message.get("code"), str(message.get("msg", ""))[:200]
            if code == NOT_FOUND:
                # A channel or instrument OKX does not have: asking again cannot help.
                return Handled(
                    permanent_error=f"okx {event} {code}: {text}; "
                    "not restarted until the configuration changes"
                )
            return Handled(errors=[f"okx {event} {code}: {text}"])
        if event == "notice" and message.get("code") == "64008":
            return Handled(upgrade_notice=True)
        if event == "unsubscribe":
            return Handled(unsubscribed=True)
        # channel-conn-count and other notices: informational
        return Handled()

    def _point(self, data_type: DataType, timestamp: datetime, data: dict) -> MarketDataPoint:
        point = MarketDataPoint(self.exchange, self.symbol, timestamp, data_type, data)
        validate_market_data_point(point)
        return point

    def _time(self, ts: Any, span: int = 0) -> datetime:
        """An item's ts within the bounds' window around the time its frame was received."""
        return bounded_time(self.bounds, ts, self.received, span=span)

    def _trades(self, message: dict, items: list) -> Handled:
        """{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",
        "tradeId":"12345678","px":"50000.5","sz":"0.001","side":"buy","ts":"1697123456789"}]}
        """
        handled = Handled()
        self._add_trades(items, handled, self.received, self.frame_bytes)
        return handled

    def _backfill_trades(self, handled: Handled) -> None:
        """The trades missed before this subscription, oldest first: the most recent ones
        and, if those do not reach back to the newest trade had before, older pages until
        they do. REST answers newest first, with items shaped like the pushed ones."""
        if not self.trade_backfill:
            return
        since = self.newest_trade.trade_id
        query = {"instId": self.symbol, "limit": self.trade_backfill}
        try:
            items = fetch_okx_rest(
                self.rest_url, "/api/v5/market/trades", query, TRADE_BACKFILL_TIMEOUT
            )
        except (OSError, ValueError) as error:
            handled.errors.append(f"trade backfill failed: {describe_error(error)}")
            return
        if since is not None:
            items += self._older_trades(items, since, handled)
            # what this collector had already: no need to deliver it again
            items = [item for item in items if (n := numeric_id(item)) is None or n > since]
        self._add_trades(reversed(items), handled, self.bounds.clock(), None)

    def _older_trades(self, newer: list, since: int, handled: Handled) -> list:
        """Pages of trades older than `newer` (newest first) until one at or before `since`,
        the newest trade had before, is reached; a gap left open is reported."""
        ids = [numeric_id(item) for item in newer]
        if not ids or None in ids:
            return []  # no trades, or ids that cannot be compared: nothing to page by
        oldest, older, pages = min(ids), [], 0
        deadline = time.monotonic() + TRADE_BACKFILL_BUDGET
        while oldest > since + 1:
            if pages >= self.backfill_pages or time.monotonic() >= deadline:
                handled.errors.append(
                    f"trade backfill stopped after {pages} pages of older trades: trade ids "
                    f"{since + 1} to {oldest - 1} may be missing"
                )
                break
            query = {"instId": self.symbol, "type": "1", "after": oldest, "limit": HISTORY_PAGE}
            try:
                page = fetch_okx_rest(
                    self.rest_url, "/api/v5/market/history-trades", query, TRADE_BACKFILL_TIMEOUT
                )
            except RateLimited as limited:  # OKX allows 20 a 2 s per IP: wait, within the budget
                pause = limited.retry_after or RATE_LIMIT_PAUSE
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                continue
            except (OSError, ValueError) as error:
                handled.errors.append(
                    f"trade backfill failed: {describe_error(error)}; trade ids {since + 1} to "
                    f"{oldest - 1} may be missing"
                )
                break
            pages += 1
            page_ids = [numeric_id(item) for item in page]
            if not page_ids or None in page_ids or min(page_ids) >= oldest:
                break  # nothing older is kept, or the answer does not page back
            older += page
            oldest = min(page_ids)
        return older

    def _add_trades(
        self, items: Iterable, handled: Handled, received: int, frame_bytes: int | None
    ) -> None:
        """Pushed or fetched trade items -> trade points; a bad item, or one out of bounds
        (collectors.bounds), is reported and skipped. `received`: when they came (epoch ms);
        `frame_bytes`: the length of the frame that carried them, None when fetched."""
        points = handled.points
        exchange, symbol = self.exchange, self.symbol
        saw = self.newest_trade.saw
        check = self.bounds.trade
        last_ts, last_time = self._trade_time
        # What validate_market_data_point() would check and nothing below settles already:
        # the names (once), then each trade's side and id; anything doubtful goes through it.
        names_plain = type(exchange) is str and type(symbol) is str and bool(exchange and symbol)
        for item in items:
            try:
                px, sz = item["px"], item["sz"]
                if type(px) is not str or type(sz) is not str:
                    raise TypeError("px and sz must be strings")
                ts, price_, size = int(item["ts"]), Decimal(px), Decimal(sz)
                check(ts, price_, size, item, received, frame_bytes)
                if ts != last_ts:  # trades in a burst share their millisecond, and its datetime
                    last_ts, last_time = ts, EPOCH + timedelta(0, ts // 1000, ts % 1000 * 1000)
                trade_id, side = item["tradeId"], item["side"]
                point = trade_point(
                    exchange,
                    symbol,
                    last_time,
                    {
                        "trade_id": trade_id,
                        "price": price_,
                        "size": size,
                        "side": side,
                        "raw": item,
                    },
                )
                if not (
                    names_plain
                    and side in TRADE_SIDES
                    and type(trade_id) is str
                    and 0 < len(trade_id) <= 100
                ):
                    validate_market_data_point(point)
                saw(trade_id)
            except (KeyError, TypeError, ValueError, ArithmeticError) as error:
                handled.errors.append(item_error("trades", error))
                continue
            points.append(point)
        self._trade_time = (last_ts, last_time)

    def _books5(self, message: dict, items: list) -> Handled:
        """{"arg":{"channel":"books5","instId":"BTC-USDT"},"data":[{"asks":[["8476.98","415",
        "0","13"]],"bids":[["8476.97","256","0","12"]],"instId":"BTC-USDT",
        "ts":"1597026383085","seqId":123456}]}
        """
        handled = Handled()
        limits = self.bounds
        for item in items:
            try:
                bids = limits.levels(item["bids"], "bids", BOOKS5_DEPTH)
                asks = limits.levels(item["asks"], "asks", BOOKS5_DEPTH)
                data = {
                    "channel": "books5",
                    "action": "snapshot",
                    "bids": [[px, sz] for _, _, px, sz in parse_levels(bids)],
                    "asks": [[px, sz] for _, _, px, sz in parse_levels(asks)],
                    "seq_id": optional_int(item.get("seqId")),
                    "checksum": optional_checksum(item),
                    "raw": limits.raw(item, self.frame_bytes),
                }
                handled.points.append(self._point(DataType.ORDERBOOK, self._time(item["ts"]), data))
            except (KeyError, TypeError, ValueError) as error:
                handled.errors.append(item_error("books5", error))
        return handled

    def _books(self, message: dict, items: list) -> Handled:
        """{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":
        [["8476.98","415","0","13"]],"bids":[],"ts":"1597026383085","checksum":0,
        "prevSeqId":123,"seqId":124}]}
        """
        books = self.books
        assert books is not None  # set up with the handler
        action = message.get("action")
        if action not in ("snapshot", "update"):
            raise FrameError(f"books push with unknown action {snippet(action)}")
        handled = Handled()
        for item in items:
            if type(item) is not dict:
                raise FrameError(f"books item is not an object: {snippet(item)}")
            if action == "update" and books.awaiting_ack:
                continue  # from the old subscription: the new snapshot holds it
            try:
                parsed = book_message(item, self.bounds, self.received)
            except (KeyError, TypeError, ValueError) as error:
                books.bad_message(handled, f"books bad {action}: {describe_error(error)}")
            else:
                if action == "snapshot":
                    books.snapshot(parsed, handled)
                else:
                    books.update(parsed, handled)
            if handled.send:  # resynced: the rest of this frame belongs to the dropped book
                break
        return handled

    def _tickers(self, message: dict, items: list) -> Handled:
        """{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT",
        "instId":"BTC-USDT","last":"9999.99","lastSz":"0.1","askPx":"9999.99","askSz":"11",
        "bidPx":"8888.88","bidSz":"5","open24h":"9000","high24h":"10000","low24h":"8888.88",
        "volCcy24h":"2222","vol24h":"2222","sodUtc0":"0.1","sodUtc8":"0.1",
        "ts":"1597026383085"}]}
        """
        handled = Handled()
        for item in items:
            try:
                data: dict[str, Any] = {
                    name: ticker_field(name, item.get(key), key)
                    for name, key in TICKER_FIELDS.items()
                }
                if data["last"] is None:
                    raise ValueError("no last price")
                data["raw"] = self.bounds.raw(item, self.frame_bytes)
                handled.points.append(self._point(DataType.TICKER, self._time(item["ts"]), data))
            except (KeyError, TypeError, ValueError) as error:
                handled.errors.append(item_error("tickers", error))
        return handled

    def _candles(self, channel: str, message: dict, items: list) -> Handled:
        """{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1597026383085",
        "8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5.3","0"]]}

        ts is the interval's start; confirm "1" marks the final update of the candle.
        """
        bar = channel[len("candle") :]
        utc_aligned = bar.endswith("utc")
        interval = bar.removesuffix("utc")
        width = interval_ms(interval)  # a candle starts up to its width before now
        handled = Handled()
        for item in items:
            try:
                if type(item) is not list or len(item) < 9:
                    raise ValueError("not an array of 9")
                ts, open_, high, low, close, vol, vol_ccy, vol_quote, confirm = item[:9]
                data = {
                    "interval": interval,
                    "utc_aligned": utc_aligned,
                    "open": price(open_, "open"),
                    "high": price(high, "high"),
                    "low": price(low, "low"),
                    "close": price(close, "close"),
                    "volume": volume(vol, "vol"),
                    "volume_ccy": volume(vol_ccy, "volCcy"),
                    "volume_quote": volume(vol_quote, "volCcyQuote"),
                    "confirmed": confirm == "1",
                    "raw": self.bounds.raw(item, self.frame_bytes),
                }
                start = self._time(ts, span=width)
                handled.points.append(self._point(DataType.CANDLE, start, data))
            except (KeyError, TypeError, ValueError) as error:
                handled.errors.append(item_error(channel, error))
        return handled


def okx_checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """OKX's checksum: CRC32 of "bid1px:bid1sz:ask1px:ask1sz:..." over the top 25 levels.

    Levels are the exchange's original strings, best first. Where one side has fewer
    levels, the other side's remaining levels follow alone. The result is signed 32-bit.
    """
    parts: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def book_checksum(book: OrderBook) -> int:
    return okx_checksum(*book.top(CHECKSUM_DEPTH))


def optional_checksum(item: dict) -> int | None:
    """OKX stopped filling in checksums: 0 or absent means there is none."""
    checksum = item.get("checksum")
    return None if not checksum else strict_int(checksum, "checksum")


def book_message(item: dict, bounds: Bounds, received: int) -> BookMessage:
    """A `books` push item as what it carries. Since 2023 (or so) OKX sends seqId and
    prevSeqId; a 2022 item has neither, only its checksum:

    {"asks":[["41006.8","0.60038921","0","1"]],"bids":[["41006.3","0.30178218","0","2"]],
     "ts":"1643784245436","checksum":-1200119424}
    """
    return BookMessage(
        bids=bounds.levels(item.get("bids", []), "bids"),
        asks=bounds.levels(item.get("asks", []), "asks"),
        ts=bounds.exchange_time(strict_int(item["ts"], "ts"), received),
        seq=optional_int(item.get("seqId"), "seqId"),
        prev_seq=optional_int(item.get("prevSeqId"), "prevSeqId"),
        checksum=optional_checksum(item),
    )


def instrument_kind(inst_id: str) -> tuple[str, str]:
    """OKX's instType of an instId, and the instFamily its list needs (options only):
    BTC-USDT SPOT, BTC-USDT-SWAP SWAP, BTC-USD-220527 FUTURES, BTC-USD-220527-30000-C OPTION."""
    parts = inst_id.split("-")
    if parts[-1] == "SWAP":
        return "SWAP", ""
    if parts[-1] in ("C", "P") and len(parts) == 5:
        return "OPTION", f"{parts[0]}-{parts[1]}"
    return ("FUTURES", "") if len(parts) == 3 else ("SPOT", "")


def books_sync(exchange: str, symbol: str, rest_url: str, bounds: Bounds) -> BookSync:
    """The `books` channel's local book on one connection, kept the neutral way."""
    arg = {"channel": "books", "instId": symbol}

    def emit(action: str, message: BookMessage, book: OrderBook) -> MarketDataPoint:
        bids, asks = book.top(BOOK_DEPTH)
        data = {
            "channel": "books",
            "action": action,
            "bids": bids,
            "asks": asks,
            "seq_id": message.seq,
            "checksum": message.checksum,
        }
        point = MarketDataPoint(
            exchange, symbol, from_epoch_ms(message.ts), DataType.ORDERBOOK, data
        )
        validate_market_data_point(point)
        return point

    def fetch_snapshot() -> BookMessage:
        item = fetch_okx_book_snapshot(rest_url, symbol, REST_DEPTH)
        return BookMessage(
            bids=item.get("bids", []),
            asks=item.get("asks", []),
            ts=bounds.exchange_time(strict_int(item.get("ts"), "ts"), bounds.clock()),
            seq=optional_int(item.get("seqId")),
        )

    return BookSync(
        "books",
        emit,
        checksum=book_checksum,
        fetch_snapshot=fetch_snapshot,
        resync_frames=[
            subscription_frame("unsubscribe", [arg]),
            subscription_frame("subscribe", [arg]),
        ],
        labels=("seqId", "prevSeqId"),
        max_levels=bounds.max_book_levels,
    )


def fetch_okx_book_snapshot(
    rest_url: str, inst_id: str, depth: int, timeout: float = REST_TIMEOUT
) -> dict:
    """GET {rest_url}/api/v5/market/books: the book item {"asks","bids","ts"[,"seqId"]}.

    Raises OSError when the request fails and ValueError when the answer is not a book.
    """
    data = fetch_okx_rest(
        rest_url, "/api/v5/market/books", {"instId": inst_id, "sz": depth}, timeout
    )
    if not data or type(data[0]) is not dict:
        raise ValueError("okx REST answer holds no book")
    return data[0]


def fetch_okx_rest(
    rest_url: str, path: str, query: dict[str, Any], timeout: float = REST_TIMEOUT
) -> list:
    """GET {rest_url}{path}?{query} from OKX's public REST API: the answer's data list.

    Raises RateLimited on "Too Many Requests" (HTTP 429 or code 50011), OSError when the
    request fails and ValueError when OKX answers with an error code or without a data list.
    """
    body = get_json(rest_url, path, query, timeout)
    if type(body) is not dict or body.get("code") != "0":
        code, text = (body.get("code"), body.get("msg")) if type(body) is dict else (None, None)
        message = f"okx REST error {code}: {str(text)[:200]}"
        raise RateLimited(message) if code == "50011" else ValueError(message)
    data = body.get("data")
    if type(data) is not list:
        raise ValueError("okx REST answer holds no data list")
    return data


def trade_backfill_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a non-negative integer, not {value!r}")
    if value > TRADE_BACKFILL_MAX:
        raise ValueError(
            f"must be at most {TRADE_BACKFILL_MAX}, the most OKX serves, not {value!r}"
        )
    return value


def backfill_pages(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a non-negative integer, not {value!r}")
    if value > 2**31 - 1:
        raise ValueError(f"must be at most {2**31 - 1}, not {value!r}")
    return value


# How many recent trades a trades subscription fetches, and how many pages of older ones.
OkxAdapter.tuning_params = {
    "trade_backfill": trade_backfill_count,
    "trade_backfill_pages": backfill_pages,
}
