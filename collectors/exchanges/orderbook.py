"""Order books kept from snapshots plus updates, with the exchange's strings for each level.

Exchange-neutral: a checksum over a book is the exchange module's (OKX: okx.book_checksum).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from decimal import Decimal, InvalidOperation

# A parsed level: (price, size, price as sent, size as sent)
ParsedLevel = tuple[Decimal, Decimal, str, str]


def parse_level(level: object) -> ParsedLevel:
    """[price, size, ...] as strings -> (Decimal price, Decimal size, price, size).

    ValueError unless the price is positive and the size non-negative, both finite.
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
    if not price.is_finite() or price <= 0:
        raise ValueError(f"bad level price {px[:30]!r}")
    if not size.is_finite() or size < 0:
        raise ValueError(f"bad level size {sz[:30]!r}")
    return price, size, px, sz


def parse_levels(levels: object) -> list[ParsedLevel]:
    if not isinstance(levels, list):
        raise ValueError(f"levels must be a list, not {type(levels).__name__}")
    return [parse_level(level) for level in levels]


class BookSide:
    """One side of a book: price levels kept sorted best first, with the exchange's strings."""

    __slots__ = ("_keys", "_levels", "_sign")

    def __init__(self, descending: bool) -> None:
        # bids sort by negated price so that both sides keep their best level first
        self._sign = Decimal(-1) if descending else Decimal(1)
        self._keys: list[Decimal] = []
        self._levels: dict[Decimal, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._keys.clear()
        self._levels.clear()

    def apply(self, levels: list[ParsedLevel]) -> None:
        """Set each level's size; a zero size deletes the level."""
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

    def top(self, depth: int) -> list[list[str]]:
        levels = self._levels
        return [list(levels[key]) for key in self._keys[:depth]]


class OrderBook:
    """A full-depth book rebuilt from a snapshot and kept current by updates."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def apply_snapshot(self, bids: object, asks: object) -> None:
        """Replace the book. ValueError on a bad level, leaving the book as it was."""
        parsed_bids, parsed_asks = parse_levels(bids), parse_levels(asks)
        self.bids.clear()
        self.asks.clear()
        self.bids.apply(parsed_bids)
        self.asks.apply(parsed_asks)

    def apply_update(self, bids: object, asks: object) -> None:
        """Apply changed levels. ValueError on a bad level, leaving the book as it was."""
        parsed_bids, parsed_asks = parse_levels(bids), parse_levels(asks)
        self.bids.apply(parsed_bids)
        self.asks.apply(parsed_asks)

    def top(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        """The best `depth` bids and asks as [price, size] strings, best first."""
        return self.bids.top(depth), self.asks.top(depth)
