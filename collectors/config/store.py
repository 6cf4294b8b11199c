"""Exchange configurations in the database: save (services) and read back (selectors)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from collectors.config.schema import (
    SETTINGS,
    ConfigError,
    ExchangeConfig,
    collector_configs,
    exchange_settings_to_dict,
    parse_exchange_config,
)
from collectors.models import Exchange, ExchangeAccount, TradingPair
from collectors.types import ExchangeCollectorConfig

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SavedConfig:
    exchange: Exchange
    changes: list[str]  # "created exchange okx", "updated trading pair okx:BTC-USDT", ...


def save_exchange_config(config: ExchangeConfig, *, replace: bool = False) -> Exchange:
    """Store a configuration; pairs missing from it are deleted only with `replace`."""
    return apply_exchange_config(config, replace=replace).exchange


def apply_exchange_config(config: ExchangeConfig, *, replace: bool = False) -> SavedConfig:
    """save_exchange_config, also saying what it created, updated and deleted."""
    changes = []
    with transaction.atomic():
        exchange, created = Exchange.objects.update_or_create(
            name=config.exchange, defaults=exchange_fields(config)
        )
        changes.append(f"{'created' if created else 'updated'} exchange {exchange.name}")
        for pair in config.trading_pairs:
            _, created = TradingPair.objects.update_or_create(
                exchange=exchange,
                symbol=pair.symbol,
                defaults={
                    "enabled": pair.enabled,
                    "data_types": [data_type.value for data_type in pair.data_types],
                    "channels": dict(pair.channels),
                },
            )
            verb = "created" if created else "updated"
            changes.append(f"{verb} trading pair {exchange.name}:{pair.symbol}")
        for account in config.accounts:
            _, created = ExchangeAccount.objects.update_or_create(
                exchange=exchange,
                name=account.name,
                defaults={"enabled": account.enabled, **account.credential_names()},
            )
            verb = "created" if created else "updated"
            changes.append(f"{verb} account {exchange.name}:{account.name}")
        if replace:
            names = [account.name for account in config.accounts]
            stale_accounts = exchange.accounts.exclude(name__in=names).order_by("name")
            for name in stale_accounts.values_list("name", flat=True):
                changes.append(f"deleted account {exchange.name}:{name}")
            stale_accounts.delete()
            symbols = [pair.symbol for pair in config.trading_pairs]
            stale = exchange.trading_pairs.exclude(symbol__in=symbols).order_by("symbol")
            for symbol in stale.values_list("symbol", flat=True):
                changes.append(f"deleted trading pair {exchange.name}:{symbol}")
            stale.delete()
    return SavedConfig(exchange, changes)


def add_exchange_config_if_new(config: ExchangeConfig) -> SavedConfig | None:
    """Store a configuration only if its exchange is not in the database yet; None if it is.

    What an operator did to a stored exchange (a pair disabled, deleted, a setting changed)
    is theirs: loading a file again must not undo it.
    """
    with transaction.atomic():
        if Exchange.objects.select_for_update().filter(name=config.exchange).exists():
            return None
        return apply_exchange_config(config)


def exchange_fields(config: ExchangeConfig) -> dict[str, Any]:
    fields = {setting.name: getattr(config, setting.name) for setting in SETTINGS}
    fields["business_ws_url"] = config.business_ws_url or ""
    fields["rest_url"] = config.rest_url or ""
    fields["private_ws_url"] = config.private_ws_url or ""
    fields["account_data_types"] = [data_type.value for data_type in config.account_data_types]
    fields["enabled"] = config.enabled
    return fields


def exchange_config_to_dict(exchange: Exchange) -> dict[str, Any]:
    """The spec's JSON for a stored exchange, pairs in the order they were added."""
    data = exchange_settings_to_dict(exchange)
    pairs = sorted(exchange.trading_pairs.all(), key=lambda pair: pair.pk)
    data["trading_pairs"] = [
        {
            "symbol": pair.symbol,
            "enabled": pair.enabled,
            "data_types": pair.data_types,
            "channels": pair.channels,
        }
        for pair in pairs
    ]
    accounts = sorted(exchange.accounts.all(), key=lambda account: account.pk)
    if accounts or exchange.account_data_types:
        data["credentials"] = [
            {
                "account": account.name,
                "enabled": account.enabled,
                "api_key_env": account.api_key_env,
                "secret_env": account.secret_env,
                "passphrase_env": account.passphrase_env,
            }
            for account in accounts
        ]
        data["account_data_types"] = list(exchange.account_data_types)
    return data


def exchange_config_from_model(exchange: Exchange) -> ExchangeConfig:
    """A stored exchange as a validated configuration; ConfigError if it was stored invalid."""
    return parse_exchange_config(exchange_config_to_dict(exchange))


def collector_configs_from_db() -> list[ExchangeCollectorConfig]:
    """Collector configs of every stored exchange; an invalid one is logged and skipped."""
    configs = []
    exchanges = Exchange.objects.filter(enabled=True).prefetch_related("trading_pairs", "accounts")
    for exchange in exchanges:
        try:
            configs.extend(collector_configs(exchange_config_from_model(exchange)))
        except ConfigError as error:
            logger.error("exchange %s is stored invalid, not collecting it: %s", exchange, error)
    return configs
