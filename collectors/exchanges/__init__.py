"""The registry of exchanges: name -> its adapter and its simulator, one line per exchange.

Entries are dotted paths, imported on first use: the collectors never import a simulator,
and a simulator never imports an adapter.
"""

from typing import NamedTuple

from django.utils.module_loading import import_string

from collectors.exchanges.base import ExchangeAdapter


class Registered(NamedTuple):
    adapter: str
    simulator: str
    account_adapter: str = ""  # an account's private connection; "" if not supported


EXCHANGES: dict[str, Registered] = {
    "binance": Registered(
        "collectors.exchanges.binance.BinanceAdapter",
        "collectors.simulators.binance.BinanceSimulator",
    ),
    "okx": Registered(
        "collectors.exchanges.okx.OkxAdapter",
        "collectors.simulators.okx.OkxSimulator",
        "collectors.exchanges.okx_account.OkxAccountAdapter",
    ),
}


def supported_exchanges() -> list[str]:
    return sorted(EXCHANGES)


def registered(exchange: str) -> Registered:
    """The exchange's entry; ValueError naming the supported ones otherwise."""
    try:
        return EXCHANGES[exchange]
    except KeyError:
        raise ValueError(
            f"unknown exchange {exchange!r}; supported: {', '.join(supported_exchanges())}"
        ) from None


def adapter_class(exchange: str) -> type[ExchangeAdapter]:
    """The adapter for an exchange name; ValueError naming the supported ones otherwise."""
    return import_string(registered(exchange).adapter)


def account_adapter_class(exchange: str) -> type[ExchangeAdapter]:
    """The adapter of an exchange's account data; ValueError if it has none."""
    path = registered(exchange).account_adapter
    if not path:
        raise ValueError(f"account data is not supported for {exchange!r}")
    return import_string(path)


def supports_accounts(exchange: str) -> bool:
    return exchange in EXCHANGES and bool(EXCHANGES[exchange].account_adapter)


def simulator_class(exchange: str) -> type:
    """The exchange's simulator (a collectors.simulators.server.SimulatorServer)."""
    return import_string(registered(exchange).simulator)
