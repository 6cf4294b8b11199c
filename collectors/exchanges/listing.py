"""Whether an exchange lists a trading pair's symbol, asked before the pair is stored (in
the admin, from a configuration file), so that a symbol the exchange does not have is
refused with the exchange's word for it instead of failing at every start.

When the exchange cannot be asked (no network, a firewall, a REST URL that does not
answer within SYMBOL_CHECK_TIMEOUT), the pair is stored unchecked and the caller says so:
an exchange being down must not stop an operator from editing the configuration. The
collector then finds out itself: the exchange's "does not exist" answer stops the stream
in error with the exchange's message, and it is not restarted until its configuration
changes (collectors.health_rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from collectors.exchanges import adapter_class

SYMBOL_CHECK_TIMEOUT = 5.0  # seconds: a save in the admin waits at most about this long


@dataclass(slots=True, frozen=True)
class SymbolCheck:
    unlisted: list[str] = field(default_factory=list)  # symbols the exchange does not list
    unchecked: str = ""  # why the exchange could not be asked; "" when it answered


def check_symbols(
    exchange: str, rest_url: str, symbols: Iterable[str], timeout: float = SYMBOL_CHECK_TIMEOUT
) -> SymbolCheck:
    """Ask the exchange (its REST API at `rest_url`, its own when blank) which of the
    symbols it does not list."""
    symbols = list(symbols)
    if not symbols:
        return SymbolCheck()
    try:
        adapter = adapter_class(exchange)
    except ValueError as error:  # the schema refuses an unknown exchange by itself
        return SymbolCheck(unchecked=str(error))
    try:
        return SymbolCheck(adapter.unlisted_symbols(symbols, rest_url, timeout))
    except (OSError, ValueError) as error:
        where = rest_url or "its default REST URL"
        return SymbolCheck(
            unchecked=f"{exchange} could not be asked for its instruments at {where}: "
            f"{str(error)[:200] or type(error).__name__}"
        )


def unlisted_message(exchange: str, symbols: list[str]) -> str:
    return f"{exchange} does not list {', '.join(symbols)} (its instrument list says so)"


def unchecked_message(check: SymbolCheck) -> str:
    return (
        f"not checked: {check.unchecked}; stored anyway. If the exchange does not have it, "
        "the stream stops in error with the exchange's message."
    )
