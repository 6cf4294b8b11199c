"""OKX v5 account data: the private WebSocket (login, then account, positions and orders) and
the signed REST refresh of balances and positions after every login.

Credentials come from environment variables whose names the configuration gives; the values
are read when a connection opens and live only in this process's memory: never in a
config, a status, a point, a log line or an error (an error names the variable, not what
it holds). Each connection logs in (base64 HMAC-SHA256 of timestamp + "GET" +
"/users/self/verify"), subscribes once OKX accepts, and fetches the current balances and
positions over REST (GET /api/v5/account/balance and /positions, signed with the
OK-ACCESS-* headers), so a reconnect leaves nothing stale. A refused login either stops the
collector (a wrong key, secret or passphrase, or an IP the key does not allow: retrying
cannot help until the configuration changes) or closes the connection so the link retries
with its backoff (a timestamp out of OKX's 30-second window, OKX's internal errors).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import orjson

from collectors.exchanges.base import (
    ConfigurationError,
    Endpoint,
    ExchangeAdapter,
    ExchangeSession,
    FrameError,
    Handled,
    Keepalive,
)
from collectors.exchanges.okx import okx_frame, subscription_frame
from collectors.exchanges.parsing import (
    decimal,
    describe_error,
    item_error,
    optional_decimal,
    snippet,
)
from collectors.exchanges.rest import MAX_ANSWER_BYTES
from collectors.times import from_epoch_ms
from collectors.types import (
    ACCOUNT_NAME,
    DataType,
    ExchangeCollectorConfig,
    MarketDataPoint,
    account_of,
    validate_market_data_point,
)

DEFAULT_PRIVATE_WS_URL = "wss://ws.okx.com:8443/ws/v5/private"
DEMO_PRIVATE_WS_URL = "wss://wspap.okx.com:8443/ws/v5/private"
DEFAULT_REST_URL = "https://www.okx.com"
LOGIN_PATH = "/users/self/verify"
BALANCE_PATH = "/api/v5/account/balance"
POSITIONS_PATH = "/api/v5/account/positions"
REST_TIMEOUT = 5.0  # seconds; the refresh holds up this connection's receive loop
CREDENTIAL_FIELDS = {
    "api_key_env": "API key",
    "secret_env": "secret key",
    "passphrase_env": "passphrase",
}
CHANNELS: dict[DataType, dict[str, str]] = {
    DataType.BALANCE: {"channel": "account"},
    DataType.POSITION: {"channel": "positions", "instType": "ANY"},
    DataType.ORDER: {"channel": "orders", "instType": "ANY"},
}
# Login refusals no retry can cure: the collector stops until its configuration changes.
PERMANENT_LOGIN_ERRORS = {
    "60005": "invalid API key",
    "60007": "invalid signature (is the secret key right?)",
    "60009": "login refused (is this machine's IP allowed for the key?)",
    "60024": "wrong passphrase",
    "60031": "API key does not exist",
    "60027": "a login parameter is empty",
}
# Refusals worth retrying, with the link's backoff: the clock, OKX's own trouble.
RETRY_LOGIN_ERRORS = {
    "60004": "invalid timestamp (is this machine's clock right?)",
    "60006": "timestamp outside OKX's 30-second window (is this machine's clock right?)",
    "60014": "requests too frequent",
    "63999": "OKX internal error",
}


@dataclass(slots=True, frozen=True)
class Credentials:
    """An API key, its secret and passphrase; their repr shows none of them."""

    api_key: str
    secret: str
    passphrase: str

    def __repr__(self) -> str:
        return "Credentials(***)"


def read_credentials(
    names: Mapping[str, str], account: str, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The credentials the named environment variables hold; ConfigurationError naming the
    first variable that is missing or empty (never a value)."""
    environ = os.environ if environ is None else environ
    values = {}
    for field, what in CREDENTIAL_FIELDS.items():
        name = names.get(field) or ""
        value = environ.get(name, "") if name else ""
        if not value:
            raise ConfigurationError(
                f"environment variable {name or '(unnamed)'} is not set: it should hold "
                f"the {what} of okx account {account!r}"
            )
        values[field] = value
    return Credentials(values["api_key_env"], values["secret_env"], values["passphrase_env"])


def okx_signature(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def login_frame(credentials: Credentials, timestamp: float) -> str:
    """OKX's login request: timestamp in seconds, sign over timestamp+GET+/users/self/verify."""
    stamp = str(int(timestamp))
    sign = okx_signature(credentials.secret, f"{stamp}GET{LOGIN_PATH}")
    arg = {
        "apiKey": credentials.api_key,
        "passphrase": credentials.passphrase,
        "timestamp": stamp,
        "sign": sign,
    }
    return orjson.dumps({"op": "login", "args": [arg]}).decode()


def rest_timestamp(moment: float) -> str:
    """OKX's REST timestamp: ISO 8601 in UTC with milliseconds, e.g. 2020-12-08T09:08:57.715Z."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def signed_headers(
    credentials: Credentials, method: str, target: str, moment: float, demo: bool
) -> dict[str, str]:
    """The OK-ACCESS-* headers of a REST request to `target` (path and query)."""
    stamp = rest_timestamp(moment)
    headers = {
        "OK-ACCESS-KEY": credentials.api_key,
        "OK-ACCESS-SIGN": okx_signature(credentials.secret, f"{stamp}{method}{target}"),
        "OK-ACCESS-TIMESTAMP": stamp,
        "OK-ACCESS-PASSPHRASE": credentials.passphrase,
        "Accept": "application/json",
    }
    if demo:
        headers["x-simulated-trading"] = "1"
    return headers


def fetch_private(
    rest_url: str,
    path: str,
    credentials: Credentials,
    *,
    demo: bool,
    timeout: float = REST_TIMEOUT,
    clock: Callable[[], float] = time.time,
) -> list:
    """A signed GET of OKX's REST API: the answer's data list.

    Raises OSError when the request fails and ValueError when OKX answers with an error
    code (quoted with its message, which never holds a credential) or without a data list.
    """
    if urllib.parse.urlsplit(rest_url).scheme not in ("http", "https"):
        raise ValueError("REST base URL must be http(s)")
    headers = signed_headers(credentials, "GET", path, clock(), demo)
    request = urllib.request.Request(f"{rest_url.rstrip('/')}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:  # OKX says why in the body of a 401
        body = error.read(64 * 1024)
        if not body:
            raise OSError(f"HTTP {error.code}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise OSError(f"REST answer over {MAX_ANSWER_BYTES} bytes")
    answer = orjson.loads(body)
    if type(answer) is not dict or answer.get("code") != "0":
        code, text = (answer.get("code"), answer.get("msg")) if type(answer) is dict else ("", "")
        raise ValueError(f"okx REST {path} error {code}: {str(text)[:200]}")
    data = answer.get("data")
    if type(data) is not list:
        raise ValueError(f"okx REST {path} answer holds no data list")
    return data


# parsing: account, positions and orders items -> points -------------------------------------


def _moment(value: Any, fallback: datetime) -> datetime:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return fallback
    return from_epoch_ms(ms) if ms > 0 else fallback


def balance_points(
    account: str, item: dict, source: str, now: datetime
) -> tuple[list[MarketDataPoint], list[str]]:
    """{"uTime":"1614846244194","totalEq":"91884.8","details":[{"ccy":"BTC","eq":"1.5",
    "cashBal":"1.5","availBal":"1.49","frozenBal":"0.01","uTime":"1614846244194"}]}
    -> one BALANCE point per currency."""
    points, errors = [], []
    if type(item) is not dict or type(item.get("details")) is not list:
        return [], [f"account item without details: {snippet(item)}"]
    at = _moment(item.get("uTime"), now)
    for detail in item["details"]:
        try:
            data = {
                "account": account,
                "currency": detail["ccy"],
                "equity": decimal(detail["eq"], "eq"),
                "available": decimal(detail.get("availBal") or detail["availEq"], "availBal"),
                "frozen": decimal(detail.get("frozenBal") or "0", "frozenBal"),
                "cash": optional_decimal(detail.get("cashBal"), "cashBal"),
                "source": source,
                "raw": detail,
            }
            symbol = detail["ccy"]
            if type(symbol) is not str or not symbol:
                raise ValueError(f"bad ccy {snippet(symbol)}")
            point = MarketDataPoint(
                "okx", symbol, _moment(detail.get("uTime"), at), DataType.BALANCE, data
            )
            validate_market_data_point(point)
        except (KeyError, TypeError, ValueError) as error:
            errors.append(item_error("account", error))
            continue
        points.append(point)
    return points, errors


def position_point(account: str, item: dict, source: str, now: datetime) -> MarketDataPoint:
    """{"instId":"BTC-USDT-SWAP","instType":"SWAP","posSide":"net","pos":"2","avgPx":"42000",
    "markPx":"42010","upl":"0.2","mgnMode":"cross","uTime":"1614846244194"}"""
    data = {
        "account": account,
        "inst_type": item.get("instType", ""),
        "position_side": item.get("posSide", ""),
        "position": decimal(item["pos"], "pos"),
        "avg_price": optional_decimal(item.get("avgPx"), "avgPx"),
        "mark_price": optional_decimal(item.get("markPx"), "markPx"),
        "unrealized_pnl": None if not item.get("upl") else decimal(item["upl"], "upl"),
        "margin_mode": item.get("mgnMode", ""),
        "source": source,
        "raw": item,
    }
    point = MarketDataPoint(
        "okx", item["instId"], _moment(item.get("uTime"), now), DataType.POSITION, data
    )
    validate_market_data_point(point)
    return point


def position_key(item: dict) -> tuple[str, str]:
    return (item.get("instId", ""), item.get("posSide", ""))


def closed_position(account: str, inst_id: str, side: str, now: datetime) -> MarketDataPoint:
    """A position OKX no longer lists: closed while the connection was down."""
    data = {
        "account": account,
        "inst_type": "",
        "position_side": side,
        "position": Decimal(0),
        "avg_price": None,
        "mark_price": None,
        "unrealized_pnl": None,
        "margin_mode": "",
        "source": "rest",
        "raw": {},
    }
    return MarketDataPoint("okx", inst_id, now, DataType.POSITION, data)


def order_point(account: str, item: dict, now: datetime) -> MarketDataPoint:
    """{"instId":"BTC-USDT","ordId":"312269865356374016","clOrdId":"b1","px":"42000",
    "sz":"0.01","side":"buy","ordType":"limit","state":"filled","accFillSz":"0.01",
    "fillPx":"42000","avgPx":"42000","uTime":"1614846244194"}"""
    data = {
        "account": account,
        "order_id": item["ordId"],
        "client_order_id": item.get("clOrdId", ""),
        "side": item["side"],
        "order_type": item.get("ordType", ""),
        "price": optional_decimal(item.get("px"), "px"),
        "size": decimal(item["sz"], "sz"),
        "state": item["state"],
        "filled_size": optional_decimal(item.get("accFillSz"), "accFillSz"),
        "fill_price": optional_decimal(item.get("fillPx"), "fillPx"),
        "avg_price": optional_decimal(item.get("avgPx"), "avgPx"),
        "source": "ws",
        "raw": item,
    }
    point = MarketDataPoint(
        "okx", item["instId"], _moment(item.get("uTime"), now), DataType.ORDER, data
    )
    validate_market_data_point(point)
    return point


# the adapter and its session ------------------------------------------------------------------


class OkxAccountAdapter(ExchangeAdapter):
    """One OKX account's private connection: its balances, positions and orders."""

    name: ClassVar[str] = "okx"
    channel_names: ClassVar[dict[str, frozenset[str]]] = {}
    channel_roles: ClassVar[dict[str, DataType]] = {}
    default_channels: ClassVar[dict[str, str]] = {}
    symbol_pattern: ClassVar[re.Pattern[str]] = ACCOUNT_NAME
    default_public_ws_url: ClassVar[str] = DEFAULT_PRIVATE_WS_URL
    keepalive: ClassVar[Keepalive] = Keepalive.text_frame("ping")

    def __init__(self, config: ExchangeCollectorConfig) -> None:
        super().__init__(config)
        self.account = account_of(config.symbol) or config.symbol
        params = config.custom_params or {}
        self.demo = bool(params.get("demo_trading"))
        self.credential_names = dict(params.get("credentials") or {})
        self.rest_url = params.get("rest_url") or DEFAULT_REST_URL
        default_url = DEMO_PRIVATE_WS_URL if self.demo else DEFAULT_PRIVATE_WS_URL
        self.url = params.get("private_ws_url") or default_url
        # open positions seen, kept across connections: one the REST refresh no longer
        # lists was closed while the connection was down
        self.open_positions: set[tuple[str, str]] = set()

    def endpoints(self) -> list[Endpoint]:
        args = tuple(
            dict(CHANNELS[data_type])
            for data_type in dict.fromkeys(self.config.data_types)
            if data_type in CHANNELS
        )
        return [Endpoint("private", self.url, args)]

    def session(self, endpoint: Endpoint) -> OkxAccountSession:
        credentials = read_credentials(self.credential_names, self.account)
        return OkxAccountSession(
            self.account,
            endpoint,
            credentials,
            self.rest_url,
            demo=self.demo,
            open_positions=self.open_positions,
        )


class OkxAccountSession(ExchangeSession):
    """One private connection: log in, then subscribe, then refresh over REST."""

    def __init__(
        self,
        account: str,
        endpoint: Endpoint,
        credentials: Credentials,
        rest_url: str,
        *,
        demo: bool = False,
        clock: Callable[[], float] = time.time,
        open_positions: set[tuple[str, str]] | None = None,
    ) -> None:
        self.account = account
        self.open_positions = set() if open_positions is None else open_positions
        self.endpoint = endpoint
        self._credentials = credentials
        self.rest_url = rest_url
        self.demo = demo
        self.clock = clock
        self.logged_in = False
        self.kinds = {arg["channel"] for arg in endpoint.subscriptions}

    def __repr__(self) -> str:
        return f"OkxAccountSession({self.account!r}, logged_in={self.logged_in})"

    def subscribe_frames(self) -> list[str]:
        return [login_frame(self._credentials, self.clock())]

    def unsubscribe_frames(self) -> list[str]:
        if not self.logged_in:
            return []
        return [subscription_frame("unsubscribe", self.endpoint.subscriptions)]

    def handle(self, frame: str | bytes) -> Handled:
        if frame == "pong" or frame == b"pong":
            return Handled(is_pong=True)
        message, arg, data = okx_frame(frame)
        if data is None:
            return self._event(message["event"], message)
        channel = arg.get("channel")
        if channel not in self.kinds:
            raise FrameError(f"push for a channel not subscribed here: {snippet(arg)}")
        return self._push(channel, data, "ws")

    def _event(self, event: str, message: dict) -> Handled:
        code, text = str(message.get("code", "")), str(message.get("msg", ""))[:200]
        if event == "login":
            if code != "0":
                return self._login_refused(code, text)
            self.logged_in = True
            handled = Handled(send=[subscription_frame("subscribe", self.endpoint.subscriptions)])
            self.refresh(handled)
            return handled
        if event == "error" and not self.logged_in:
            return self._login_refused(code, text)
        if event == "subscribe":
            return Handled(subscribed=True)
        if event == "unsubscribe":
            return Handled(unsubscribed=True)
        if event == "error":
            return Handled(errors=[f"okx error {code}: {text}"])
        if event == "notice" and code == "64008":
            return Handled(upgrade_notice=True)
        return Handled()

    def _login_refused(self, code: str, text: str) -> Handled:
        what = f"okx login of account {self.account!r} refused, code {code}"
        if code in PERMANENT_LOGIN_ERRORS:
            return Handled(
                permanent_error=f"{what}: {PERMANENT_LOGIN_ERRORS[code]} ({text}); "
                "not retried until the configuration changes"
            )
        meaning = RETRY_LOGIN_ERRORS.get(code, "unexpected")
        return Handled(reconnect=f"{what}: {meaning} ({text}); retrying with backoff")

    def refresh(self, handled: Handled) -> None:
        """The current balances and positions over REST: what a reconnect may have missed."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        if "account" in self.kinds:
            try:
                items = fetch_private(
                    self.rest_url, BALANCE_PATH, self._credentials, demo=self.demo
                )
            except (OSError, ValueError) as error:
                handled.errors.append(f"balance refresh failed: {describe_error(error)}")
            else:
                for item in items:
                    points, errors = balance_points(self.account, item, "rest", now)
                    handled.points += points
                    handled.errors += errors
        if "positions" in self.kinds:
            try:
                items = fetch_private(
                    self.rest_url, POSITIONS_PATH, self._credentials, demo=self.demo
                )
            except (OSError, ValueError) as error:
                handled.errors.append(f"positions refresh failed: {describe_error(error)}")
            else:
                before = set(self.open_positions)
                self._positions(items, "rest", now, handled)
                listed = {position_key(item) for item in items if type(item) is dict}
                for inst_id, side in sorted(before - listed):
                    handled.points.append(closed_position(self.account, inst_id, side, now))
                    self.open_positions.discard((inst_id, side))

    def _push(self, channel: str, items: list, source: str) -> Handled:
        handled = Handled()
        now = datetime.fromtimestamp(self.clock(), UTC)
        if channel == "account":
            for item in items:
                points, errors = balance_points(self.account, item, source, now)
                handled.points += points
                handled.errors += errors
        elif channel == "positions":
            self._positions(items, source, now, handled)
        else:
            for item in items:
                try:
                    handled.points.append(order_point(self.account, item, now))
                except (KeyError, TypeError, ValueError, ArithmeticError) as error:
                    handled.errors.append(item_error("orders", error))
        return handled

    def _positions(self, items: list, source: str, now: datetime, handled: Handled) -> None:
        for item in items:
            try:
                point = position_point(self.account, item, source, now)
            except (KeyError, TypeError, ValueError, ArithmeticError) as error:
                handled.errors.append(item_error("positions", error))
                continue
            handled.points.append(point)
            key = (point.symbol, point.data["position_side"])
            if point.data["position"]:
                self.open_positions.add(key)
            else:
                self.open_positions.discard(key)
