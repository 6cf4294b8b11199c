"""The OKX simulator's private side: API keys, login checked as OKX checks it, and a scripted
account that trades at the simulated market's prices, with its pushes and REST answers.

Login (WebSocket `op: login`) and REST requests are signed with base64(HMAC-SHA256(secret,
timestamp + method + path [+ body])), the WebSocket login over "GET/users/self/verify";
a timestamp more than 30 seconds from the server's clock is refused. The error codes are
OKX's: 60004 invalid timestamp, 60005 invalid apiKey, 60006 timestamp expired, 60007
invalid sign, 60009 login failure (the simulator's answer for an IP the key does not allow),
60024 wrong passphrase; over REST 50102, 50105, 50110, 50111, 50112, 50113, 50101.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

LOGIN_METHOD = "GET"
LOGIN_PATH = "/users/self/verify"
TIMESTAMP_WINDOW = 30.0  # seconds either side of the server's clock, as OKX allows
SPOT = "BTC-USDT"
SWAP = "BTC-USDT-SWAP"
ORDER_SIZE = Decimal("0.01")  # BTC per scripted order
SWAP_CONTRACTS = Decimal("1")  # contracts the position moves per fill
SWAP_CONTRACT_VALUE = Decimal("0.01")  # BTC per BTC-USDT-SWAP contract


def okx_sign(secret: str, message: str) -> str:
    """OKX's signature: base64 of HMAC-SHA256 of the message under the secret key."""
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(slots=True)
class ApiKey:
    """An API key the simulator accepts, and who may use it."""

    api_key: str
    secret: str
    passphrase: str
    allowed_ips: tuple[str, ...] = ()  # empty: any address
    demo: bool = False  # a demo-trading key: REST wants x-simulated-trading: 1


@dataclass(slots=True, frozen=True)
class LoginRefused(Exception):
    code: str
    msg: str


def check_login(keys: dict[str, ApiKey], arg: Any, now_s: float, ip: str) -> ApiKey:
    """The key a login argument proves; LoginRefused with OKX's code otherwise."""
    if not isinstance(arg, dict):
        raise LoginRefused("60012", "Invalid request")
    for name in ("apiKey", "passphrase", "timestamp", "sign"):
        if not isinstance(arg.get(name), str) or not arg[name]:
            raise LoginRefused("60027", f"Parameter {name} can not be empty.")
    try:
        timestamp = float(arg["timestamp"])
    except ValueError:
        raise LoginRefused("60004", "Invalid timestamp") from None
    if abs(now_s - timestamp) > TIMESTAMP_WINDOW:
        raise LoginRefused("60006", "Timestamp request expired")
    key = keys.get(arg["apiKey"])
    if key is None:
        raise LoginRefused("60005", "Invalid apiKey")
    if not hmac.compare_digest(arg["passphrase"], key.passphrase):
        raise LoginRefused("60024", "Wrong passphrase")
    if key.allowed_ips and ip not in key.allowed_ips:
        raise LoginRefused("60009", "Login failed. The IP is not in the API key's trusted IPs.")
    expected = okx_sign(key.secret, arg["timestamp"] + LOGIN_METHOD + LOGIN_PATH)
    if not hmac.compare_digest(arg["sign"], expected):
        raise LoginRefused("60007", "Invalid sign")
    return key


def check_rest(
    keys: dict[str, ApiKey], headers: Any, method: str, target: str, now_s: float, ip: str
) -> ApiKey:
    """The key a signed REST request proves; LoginRefused with OKX's REST code otherwise.

    `target` is the request path with its query, as signed.
    """
    values = {
        name: headers.get(name) or ""
        for name in (
            "OK-ACCESS-KEY",
            "OK-ACCESS-SIGN",
            "OK-ACCESS-TIMESTAMP",
            "OK-ACCESS-PASSPHRASE",
        )
    }
    empty = {"OK-ACCESS-KEY": "50103", "OK-ACCESS-PASSPHRASE": "50104"}
    empty |= {"OK-ACCESS-SIGN": "50106", "OK-ACCESS-TIMESTAMP": "50107"}
    for name, code in empty.items():
        if not values[name]:
            raise LoginRefused(code, f'Request header "{name}" can\'t be empty.')
    stamp = values["OK-ACCESS-TIMESTAMP"]
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise LoginRefused("50112", "Invalid OK-ACCESS-TIMESTAMP") from None
    if abs(now_s - moment) > TIMESTAMP_WINDOW:
        raise LoginRefused("50102", "Timestamp request expired")
    key = keys.get(values["OK-ACCESS-KEY"])
    if key is None:
        raise LoginRefused("50111", "Invalid OK-ACCESS-KEY")
    if not hmac.compare_digest(values["OK-ACCESS-PASSPHRASE"], key.passphrase):
        raise LoginRefused("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
    if key.allowed_ips and ip not in key.allowed_ips:
        raise LoginRefused("50110", f"Your IP {ip} is not included in your API key's IP whitelist.")
    if (headers.get("x-simulated-trading") == "1") != key.demo:
        raise LoginRefused("50101", "APIKey does not match current environment.")
    expected = okx_sign(key.secret, stamp + method + target)
    if not hmac.compare_digest(values["OK-ACCESS-SIGN"], expected):
        raise LoginRefused("50113", "Invalid Sign")
    return key


def text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass(slots=True)
class ScriptedAccount:
    """One account that trades BTC-USDT (spot) and BTC-USDT-SWAP at the market's prices:
    each step places a limit order at the best price or fills the one it placed.

    `balances` and `frozen` are per currency; the swap position is net contracts.
    """

    uid: str
    balances: dict[str, Decimal] = field(
        default_factory=lambda: {"USDT": Decimal("100000"), "BTC": Decimal("1.5")}
    )
    frozen: dict[str, Decimal] = field(default_factory=dict)
    position: Decimal = Decimal("0")
    position_avg_px: Decimal = Decimal("0")
    mark_px: Decimal = Decimal("0")
    open_order: dict[str, str] | None = None
    orders: list[dict[str, str]] = field(default_factory=list)
    steps: int = 0
    u_time: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def step(self, best_bid: str, best_ask: str, now_ms: int) -> dict[str, list]:
        """One move of the script: what changed, by channel ("account", "positions",
        "orders"), as OKX pushes it."""
        self.steps += 1
        self.u_time = now_ms
        self.mark_px = (Decimal(best_bid) + Decimal(best_ask)) / 2
        if self.open_order is None:
            return self._place(best_bid, best_ask, now_ms)
        return self._fill(now_ms)

    def _place(self, best_bid: str, best_ask: str, now_ms: int) -> dict[str, list]:
        side = "buy" if (self.steps // 2) % 2 == 0 else "sell"
        px = Decimal(best_bid if side == "buy" else best_ask)
        order_id = str(next(self._ids))
        self.open_order = {
            "instId": SPOT,
            "instType": "SPOT",
            "ordId": order_id,
            "clOrdId": f"sim{order_id}",
            "px": text(px),
            "sz": text(ORDER_SIZE),
            "side": side,
            "ordType": "limit",
            "tdMode": "cash",
            "state": "live",
            "accFillSz": "0",
            "fillPx": "",
            "fillSz": "0",
            "avgPx": "",
            "tradeId": "",
            "cTime": str(now_ms),
            "uTime": str(now_ms),
        }
        ccy, amount = ("USDT", px * ORDER_SIZE) if side == "buy" else ("BTC", ORDER_SIZE)
        self.frozen[ccy] = self.frozen.get(ccy, Decimal(0)) + amount
        self.orders.append(dict(self.open_order))
        return {"orders": [dict(self.open_order)], "account": [self.balance([ccy])]}

    def _fill(self, now_ms: int) -> dict[str, list]:
        order, self.open_order = self.open_order, None
        assert order is not None
        px, side = Decimal(order["px"]), order["side"]
        cost = px * ORDER_SIZE
        if side == "buy":
            self.frozen["USDT"] -= cost
            self.balances["USDT"] -= cost
            self.balances["BTC"] += ORDER_SIZE
        else:
            self.frozen["BTC"] -= ORDER_SIZE
            self.balances["BTC"] -= ORDER_SIZE
            self.balances["USDT"] += cost
        order.update(
            state="filled",
            accFillSz=order["sz"],
            fillPx=order["px"],
            fillSz=order["sz"],
            avgPx=order["px"],
            tradeId=order["ordId"],
            uTime=str(now_ms),
        )
        self.orders[-1] = dict(order)
        self._move_position(SWAP_CONTRACTS if side == "buy" else -SWAP_CONTRACTS, px)
        return {
            "orders": [dict(order)],
            "account": [self.balance(["USDT", "BTC"])],
            "positions": self.positions(),
        }

    def _move_position(self, contracts: Decimal, px: Decimal) -> None:
        before = self.position
        after = before + contracts
        if after == 0:
            self.position_avg_px = Decimal(0)
        elif before == 0 or (before > 0) != (after > 0):
            self.position_avg_px = px
        elif abs(after) > abs(before):
            self.position_avg_px = (self.position_avg_px * abs(before) + px * abs(contracts)) / abs(
                after
            )
        self.position = after

    def balance(self, currencies: list[str] | None = None) -> dict[str, Any]:
        """The account channel's (and REST balance's) item, for some or all currencies."""
        names = sorted(self.balances) if currencies is None else currencies
        details = []
        for ccy in names:
            cash = self.balances[ccy]
            frozen = self.frozen.get(ccy, Decimal(0))
            details.append(
                {
                    "ccy": ccy,
                    "eq": text(cash),
                    "cashBal": text(cash),
                    "availBal": text(cash - frozen),
                    "availEq": text(cash - frozen),
                    "frozenBal": text(frozen),
                    "ordFrozen": text(frozen),
                    "uTime": str(self.u_time),
                }
            )
        total = self.balances["USDT"] + self.balances["BTC"] * self.mark_px
        return {"uTime": str(self.u_time), "totalEq": text(total), "details": details}

    def positions(self, *, open_only: bool = False) -> list[dict[str, str]]:
        if open_only and not self.position:
            return []
        upl = (self.mark_px - self.position_avg_px) * self.position * SWAP_CONTRACT_VALUE
        return [
            {
                "instId": SWAP,
                "instType": "SWAP",
                "posId": f"{self.uid}-1",
                "posSide": "net",
                "mgnMode": "cross",
                "pos": text(self.position),
                "avgPx": text(self.position_avg_px) if self.position else "",
                "markPx": text(self.mark_px),
                "upl": text(upl) if self.position else "0",
                "lever": "3",
                "ccy": "USDT",
                "cTime": str(self.u_time),
                "uTime": str(self.u_time),
            }
        ]
