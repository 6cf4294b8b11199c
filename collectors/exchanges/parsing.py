"""Strict parsing of exchange values: integers, decimals, millisecond times, and bounded
quotes of bad input for error messages. Every exchange module parses with these; values
are held to the bounds of collectors.bounds as they are parsed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from collectors import bounds
from collectors.bounds import Bounds
from collectors.exchanges.base import FrameError
from collectors.times import from_epoch_ms

SNIPPET = 80  # characters of a bad frame quoted in an error


def ms_time(ts: Any) -> datetime:
    """A millisecond epoch (a string or an integer) -> aware UTC datetime."""
    return from_epoch_ms(strict_int(ts, "ts"))


def bounded_time(
    limits: Bounds, ts: Any, received: int, name: str = "ts", span: int = 0
) -> datetime:
    """A millisecond epoch within the bounds' window around `received` (epoch ms)."""
    return from_epoch_ms(limits.exchange_time(strict_int(ts, name), received, name, span))


def strict_int(value: Any, name: str) -> int:
    if type(value) is int:
        return value
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"bad {name} {snippet(value)}")


def optional_int(value: Any, name: str = "integer") -> int | None:
    return None if value is None or value == "" else strict_int(value, name)


def decimal(value: Any, name: str) -> Decimal:
    if type(value) is not str:
        raise ValueError(f"bad {name} {snippet(value)}: not a string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"bad {name} {snippet(value)}") from None
    if not number.is_finite():
        raise ValueError(f"bad {name} {snippet(value)}")
    return number


def price(value: Any, name: str) -> Decimal:
    """A price or a size: positive and representable in DECIMAL(20, 8)."""
    return bounds.price(decimal(value, name), name)


def size_or_zero(value: Any, name: str) -> Decimal:
    """A size that may be zero; else as a price."""
    return bounds.size_or_zero(decimal(value, name), name)


def volume(value: Any, name: str) -> Decimal:
    """A volume: zero, or positive and representable in DECIMAL(30, 8)."""
    return bounds.volume(decimal(value, name), name)


def amount(value: Any, name: str) -> Decimal:
    """An account's amount (a balance, a fill price): finite and not negative. Kept as
    JSON, not in a DECIMAL column, so dust below 0.00000001 stays as the exchange sent it;
    only a number too large for any column is refused."""
    number = decimal(value, name)
    if number < 0:
        raise ValueError(f"bad {name} {snippet(value)}: negative")
    if number >= bounds.MAX_VOLUME:
        raise ValueError(f"bad {name} {snippet(value)}: too large to store")
    return number


def optional_decimal(value: Any, name: str) -> Decimal | None:
    return None if value is None or value == "" else amount(value, name)


def ticker_field(field: str, value: Any, key: str) -> Decimal | None:
    """A ticker's field by its neutral name (last, bid_size, volume_24h, ...): None when
    absent; a volume as a volume, the last price as a price, the rest may be zero (an
    empty side of the book)."""
    if value is None or value == "":
        return None
    if field.startswith("volume"):
        return volume(value, key)
    if field == "last":
        return price(value, key)
    return size_or_zero(value, key)


def describe_error(error: Exception) -> str:
    """What a parsing error says, short: a missing key by name, a bad number as such."""
    if isinstance(error, KeyError):
        return f"missing {error.args[0]!r}"
    if isinstance(error, ArithmeticError):
        return "not a number"
    return str(error)[:150]


def item_error(channel: str, error: Exception) -> str:
    return f"{channel} item skipped: {describe_error(error)}"


def snippet(value: Any) -> str:
    """A bounded quote of untrusted input for an error message."""
    if isinstance(value, bytes):
        value = value[: SNIPPET * 4].decode("utf-8", "replace")
    elif not isinstance(value, str):
        value = repr(value)
    return repr(value[:SNIPPET]) + ("..." if len(value) > SNIPPET else "")


def json_object(frame: str | bytes) -> dict:
    """A frame parsed as a JSON object; FrameError, quoting it (bounded), when it is not."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise FrameError(f"not JSON: {snippet(frame)}") from None
    if type(message) is not dict:
        raise FrameError(f"not a JSON object: {snippet(frame)}")
    return message
