"""ExchangeFactory: builds collectors from configurations through the adapter registry."""

from __future__ import annotations

from collectors.collector import BaseDataCollector
from collectors.config.schema import validate_collector_config
from collectors.exchanges import account_adapter_class, adapter_class, supported_exchanges
from collectors.types import ExchangeCollectorConfig, account_of


class ExchangeFactory:
    @staticmethod
    def create_collector(config: ExchangeCollectorConfig) -> BaseDataCollector:
        """A collector for the config; ValueError listing everything wrong with it."""
        errors = validate_collector_config(config)
        if errors:
            raise ValueError(f"invalid collector config {config.name}: " + "; ".join(errors))
        if account_of(config.symbol) is not None:  # an account's private connection
            return BaseDataCollector(config, account_adapter_class(config.exchange)(config))
        return BaseDataCollector(config, adapter_class(config.exchange)(config))

    @staticmethod
    def create_multiple_collectors(
        configs: list[ExchangeCollectorConfig],
    ) -> list[BaseDataCollector]:
        return [ExchangeFactory.create_collector(config) for config in configs]

    @staticmethod
    def get_supported_exchanges() -> list[str]:
        return supported_exchanges()

    @staticmethod
    def validate_config(config: ExchangeCollectorConfig) -> bool:
        return not validate_collector_config(config)
