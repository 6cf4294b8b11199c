"""The registry of exchange adapters: exchange name -> adapter class, one line per exchange."""

from django.utils.module_loading import import_string

from collectors.exchanges.base import ExchangeAdapter

ADAPTERS: dict[str, str] = {
    "okx": "collectors.exchanges.okx.OkxAdapter",
}


def supported_exchanges() -> list[str]:
    return sorted(ADAPTERS)


def adapter_class(exchange: str) -> type[ExchangeAdapter]:
    """The adapter for an exchange name; ValueError naming the supported ones otherwise."""
    try:
        path = ADAPTERS[exchange]
    except KeyError:
        raise ValueError(
            f"unknown exchange {exchange!r}; supported: {', '.join(supported_exchanges())}"
        ) from None
    return import_string(path)
