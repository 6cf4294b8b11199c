"""The newest trade a collector has had, by its numeric id: where a gap-fill starts from.

Exchanges whose trade ids rise per market (OKX's tradeId, Binance's trade and aggregate
ids) fill what a reconnect missed from the id after it.
"""

from __future__ import annotations

from typing import Any


def trade_number(trade_id: Any) -> int | None:
    """A trade id ("123") as a number; None for anything else."""
    if type(trade_id) is str and trade_id.isdecimal() and trade_id.isascii():
        return int(trade_id)
    return None


class NewestTrade:
    """The highest numeric trade id a collector has had.

    Its connections update it without a lock: two at once (around a replacement) may set a
    slightly lower value, which costs at most a page of trades fetched again.
    """

    __slots__ = ("trade_id",)

    def __init__(self) -> None:
        self.trade_id: int | None = None

    def saw(self, trade_id: Any) -> None:
        # trade_number(), inline: this runs for every trade
        if type(trade_id) is str and trade_id.isdecimal() and trade_id.isascii():
            number = int(trade_id)
            if self.trade_id is None or number > self.trade_id:
                self.trade_id = number
