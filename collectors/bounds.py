"""Bounds a market value must keep before anything stores or aggregates it.

Exchange-neutral and shared by every exchange module and the live candle aggregator:

- an exchange time lies within a window around the time the message was received
  (COLLECTOR_MAX_CLOCK_SKEW_PAST behind it, COLLECTOR_MAX_CLOCK_SKEW_FUTURE ahead of it;
  a candle may start its interval's width earlier still);
- a price or size is finite and representable in DECIMAL(20, 8), the columns that hold
  them: at least 0.00000001 (anything smaller would round to zero or double) and below
  10**12 (anything larger overflows). A volume (24 h ticker volumes, exchange candle
  volumes) is bounded by DECIMAL(30, 8), the candles' volume column;
- an order book message holds at most COLLECTOR_MAX_BOOK_LEVELS levels a side, a
  fixed-depth channel (OKX books5, Binance depth5/10/20) at most its depth, and a local
  book keeps at most COLLECTOR_MAX_BOOK_LEVELS a side (its deepest levels are dropped);
- the exchange's item kept as `raw` is at most COLLECTOR_MAX_RAW_BYTES of JSON.

A value out of bounds raises OutOfBounds (a ValueError): the exchange module reports the
item as a bad message, which the collector counts in its errors and logs, and drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

# DECIMAL(20, 8): the step of its last place, and the least value that rounds to 10**12
STEP = Decimal("0.00000001")
MAX_PRICE = Decimal("999999999999.999999995")
# DECIMAL(30, 8), candles.volume
MAX_VOLUME = Decimal("9999999999999999999999.999999995")
PRICE_LIMIT, VOLUME_LIMIT = "999999999999.99999999", "9999999999999999999999.99999999"

DEFAULT_MAX_PAST = 7 * 24 * 3600.0  # seconds; a gap-fill reaches back at most this far
DEFAULT_MAX_FUTURE = 30.0  # seconds; an exchange clock ahead of ours by more is wrong
DEFAULT_MAX_BOOK_LEVELS = 5000  # per side; OKX's deepest book is 400, Binance's REST 5000
DEFAULT_MAX_RAW_BYTES = 64 * 1024  # the largest real item (a 400-level book) is ~40 KB

# A frame no longer than this share of the raw bound holds no item over it, even as
# re-encoded (orjson writes "1E15" as 1000000000000000.0, 4.5 times longer): not measured.
UNMEASURED_SHARE = 8

# units of candle intervals, OKX's (1m, 1H, 1D, 1W, 1M) and Binance's (1s, 1m, 1h, 1d, 1w, 1M)
INTERVAL_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "H": 3600,
    "d": 86400,
    "D": 86400,
    "w": 7 * 86400,
    "W": 7 * 86400,
    "M": 31 * 86400,
}


class OutOfBounds(ValueError):
    """A value no market makes: the item carrying it is counted as bad and dropped."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True, frozen=True)
class Bounds:
    """The bounds one collector checks its messages against (see the module's docstring)."""

    max_past_ms: int = int(DEFAULT_MAX_PAST * 1000)
    max_future_ms: int = int(DEFAULT_MAX_FUTURE * 1000)
    max_book_levels: int = DEFAULT_MAX_BOOK_LEVELS
    max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES
    clock: Callable[[], int] = field(default=wall_clock_ms, compare=False)  # receive time, ms

    @classmethod
    def from_settings(cls) -> Bounds:
        """The bounds the settings give (COLLECTOR_MAX_CLOCK_SKEW_PAST, ..._FUTURE,
        COLLECTOR_MAX_BOOK_LEVELS, COLLECTOR_MAX_RAW_BYTES), defaults where unset or where
        Django is not set up (a script using the adapters alone)."""
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            past = getattr(settings, "COLLECTOR_MAX_CLOCK_SKEW_PAST", DEFAULT_MAX_PAST)
        except ImproperlyConfigured:
            return cls()
        future = getattr(settings, "COLLECTOR_MAX_CLOCK_SKEW_FUTURE", DEFAULT_MAX_FUTURE)
        return cls(
            max_past_ms=int(past * 1000),
            max_future_ms=int(future * 1000),
            max_book_levels=int(
                getattr(settings, "COLLECTOR_MAX_BOOK_LEVELS", DEFAULT_MAX_BOOK_LEVELS)
            ),
            max_raw_bytes=int(getattr(settings, "COLLECTOR_MAX_RAW_BYTES", DEFAULT_MAX_RAW_BYTES)),
        )

    @property
    def max_future(self) -> timedelta:
        return timedelta(milliseconds=self.max_future_ms)

    def exchange_time(self, ts: int, received: int, name: str = "ts", span: int = 0) -> int:
        """An exchange time (epoch ms) within the window around `received` (epoch ms); a
        candle's start may lie `span` ms (its interval's width) further back."""
        if not received - self.max_past_ms - span <= ts <= received + self.max_future_ms:
            raise OutOfBounds(
                f"{name} {ts} is {describe_offset(ts - received)} the receive time, outside "
                f"-{self.max_past_ms // 1000}s..+{self.max_future_ms // 1000}s"
            )
        return ts

    def levels(self, levels: list, name: str, limit: int | None = None) -> list:
        """A side of a book message: at most `limit` levels (the channel's depth) and at
        most max_book_levels."""
        bound = self.max_book_levels if limit is None else min(limit, self.max_book_levels)
        if len(levels) > bound:
            raise OutOfBounds(f"{name}: {len(levels)} levels, more than {bound}")
        return levels

    def raw(self, item: Any, frame_bytes: int | None) -> Any:
        """The exchange's item, kept as `raw`, if its JSON is at most max_raw_bytes; only
        measured when the frame that carried it (None: fetched, no frame) is big enough to
        hold a bigger one."""
        bound = self.max_raw_bytes
        if frame_bytes is None or frame_bytes > bound // UNMEASURED_SHARE:
            size = len(orjson.dumps(item))
            if size > bound:
                raise OutOfBounds(f"item of {size} bytes, more than {bound} for raw_data")
        return item

    def trade(
        self, ts: int, px: Decimal, sz: Decimal, item: Any, received: int, frame_bytes: int | None
    ) -> None:
        """A trade's time, price, size and raw item, checked as exchange_time, price and
        raw do, in one call for the hot path; OutOfBounds says what is out."""
        if not received - self.max_past_ms <= ts <= received + self.max_future_ms:
            self.exchange_time(ts, received)
        try:
            values_fit = STEP <= px < MAX_PRICE and STEP <= sz < MAX_PRICE
        except ArithmeticError:  # a NaN does not compare
            values_fit = False
        if not values_fit:
            price(px, "price")
            price(sz, "size")
        if frame_bytes is None or frame_bytes > self.max_raw_bytes // UNMEASURED_SHARE:
            self.raw(item, frame_bytes)


def describe_offset(milliseconds: int) -> str:
    seconds = milliseconds / 1000
    if seconds >= 0:
        return f"{seconds:.0f}s after" if seconds < 1e12 else "far after"
    return f"{-seconds:.0f}s before" if seconds > -1e12 else "far before"


def price(value: Decimal, name: str) -> Decimal:
    """A price or a size: finite, positive and representable in DECIMAL(20, 8)."""
    if value.is_finite() and STEP <= value < MAX_PRICE:
        return value
    raise OutOfBounds(f"{name} {value_text(value)} {problem(value, PRICE_LIMIT)}")


def size_or_zero(value: Decimal, name: str) -> Decimal:
    """A size that may be zero (a deleted book level, an empty best bid): else a price."""
    return value if value.is_zero() else price(value, name)


def volume(value: Decimal, name: str) -> Decimal:
    """A volume: zero, or finite, positive and representable in DECIMAL(30, 8)."""
    if value.is_zero() or (value.is_finite() and STEP <= value < MAX_VOLUME):
        return value
    raise OutOfBounds(f"{name} {value_text(value)} {problem(value, VOLUME_LIMIT)}")


def problem(value: Decimal, limit: str) -> str:
    if not value.is_finite():
        return "is not finite"
    if value <= 0:
        return "is not positive"
    if value < STEP:
        return "is below 0.00000001, the smallest value stored"
    return f"is too large to store (at most {limit})"


def value_text(value: Decimal) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def interval_ms(interval: str) -> int:
    """A candle interval's width ("1m", "4H", "1D", "3M": a month counted as 31 days) in
    ms; ValueError for anything else."""
    unit = INTERVAL_UNITS.get(interval[-1:])
    count = interval[:-1]
    if unit is None or not count.isdecimal() or not count.isascii():
        raise ValueError(f"unknown interval {interval[:20]!r}")
    return int(count) * unit * 1000
