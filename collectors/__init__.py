"""Everything that talks to an exchange: collectors, adapters, the storage sink, simulators.

The seed's public API is importable from here: DataType, MarketDataPoint,
validate_market_data_point, ExchangeCollectorConfig, BaseDataCollector,
CollectorManager, ExchangeFactory. The layers below (exchanges, the connection core,
config, storage, hosting, simulators) are laid out in docs/collectors.md.
"""

from importlib import import_module

_EXPORTS = {
    "DataType": "collectors.types",
    "MarketDataPoint": "collectors.types",
    "validate_market_data_point": "collectors.types",
    "ExchangeCollectorConfig": "collectors.types",
    "BaseDataCollector": "collectors.collector",
    "CollectorManager": "collectors.manager",
    "ExchangeFactory": "collectors.factory",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # Lazy, so that loading the Django app does not import the collector machinery.
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'collectors' has no attribute {name!r}")
