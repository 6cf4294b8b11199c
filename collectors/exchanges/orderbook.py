"""Order books kept from snapshots plus updates, with the exchange's strings for each level.

Exchange-neutral: a checksum over a book is the exchange module's (OKX: okx.book_checksum).
Levels are held to collectors.bounds: prices and sizes representable in DECIMAL(20, 8), and
each side of a kept book to its deepest `max_levels` (the levels beyond are dropped).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from decimal import Decimal, InvalidOperation

from collectors.bounds import DEFAULT_MAX_BOOK_LEVELS, OutOfBounds, size_or_zero
from collectors.bounds import price as bounded_price

# A parsed level: (price, size, price as sent, size as sent)
ParsedLevel = tuple[Decimal, Decimal, str, str]


def parse_level(level: object) -> ParsedLevel:
    """[price, size, ...] as strings -> (Decimal price, Decimal size, price, size).

    ValueError unless the price is positive and the size zero or positive, both finite and
    representable in DECIMAL(20, 8).
    """
    if not isinstance(level, list | tuple) or len(level) < 2:
        raise ValueError(f"bad level {str(level)[:60]}")
    px, sz = level[0], level[1]
    if type(px) is not str or type(sz) is not str:
        raise ValueError(f"bad level {str(level)[:60]}: price and size must be strings")
    try:
        price, size = Decimal(px), Decimal(sz)
    except InvalidOperation:
        raise ValueError(f"bad level {str(level)[:60]}: not a number") from None
    try:
        bounded_price(price, "level price")
        size_or_zero(size, "level size")
    except OutOfBounds as error:
        raise ValueError(f"bad level {str(level)[:60]}: {error}") from None
    return price, size, px, sz


def parse_levels(levels: object) -> list[ParsedLevel]:
    if not isinstance(levels, list):
        raise ValueError(f"levels must be a list, not {type(levels).__name__}")
    return [parse_level(level) for level in levels]


class BookSide:
    """One side of a book: price levels kept sorted best first, with the exchange's strings."""

    __slots__ = ("_keys", "_levels", "_sign", "max_levels")

    def __init__(self, descending: bool, max_levels: int = DEFAULT_MAX_BOOK_LEVELS) -> None:
        self.max_levels = max_levels
        # bids sort by negated price so that both sides keep their best level first
        self._sign = Decimal(-1) if descending else Decimal(1)
        self._keys: list[Decimal] = []
        self._levels: dict[Decimal, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys.clear()
        self._levels.clear()

    def apply(self, levels: list[ParsedLevel]) -> int:
        """Set each level's size; a zero size deletes the level. Levels beyond the deepest
        `max_levels` are dropped: how many were is returned."""
        for price, size, px, sz in levels:
            key = price * self._sign
            known = key in self._levels
            if size == 0:
                if known:
                    del self._levels[key]
                    del self._keys[bisect_left(self._keys, key)]
                continue
            if not known:
                insort(self._keys, key)
            self._levels[key] = (px, sz)
        extra = len(self._keys) - self.max_levels
        if extra > 0:
            for key in self._keys[-extra:]:
                del self._levels[key]
            del self._keys[-extra:]
        return max(extra, 0)

    def top(self, depth: int) -> list[list[str]]:
        levels = self._levels
        return [list(levels[key]) for key in self._keys[:depth]]


class OrderBook:
    """A full-depth book rebuilt from a snapshot and kept current by updates."""

    __slots__ = ("asks", "bids")

    def __init__(self, max_levels: int = DEFAULT_MAX_BOOK_LEVELS) -> None:
        self.bids = BookSide(descending=True, max_levels=max_levels)
        self.asks = BookSide(descending=False, max_levels=max_levels)

    def apply_snapshot(self, bids: object, asks: object) -> int:
        """Replace the book. ValueError on a bad level, leaving the book as it was. Returns
        how many levels beyond the deepest kept were dropped."""
        parsed_bids, parsed_asks = parse_levels(bids), parse_levels(asks)
        self.bids.clear()
        self.asks.clear()
        return self.bids.apply(parsed_bids) + self.asks.apply(parsed_asks)

    def apply_update(self, bids: object, asks: object) -> int:
        """Apply changed levels. ValueError on a bad level, leaving the book as it was.
        Returns how many levels beyond the deepest kept were dropped."""
        parsed_bids, parsed_asks = parse_levels(bids), parse_levels(asks)
        return self.bids.apply(parsed_bids) + self.asks.apply(parsed_asks)

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        """The best `depth` bids and asks as [price, size] strings, best first."""
        return self.bids.top(depth), self.asks.top(depth)
