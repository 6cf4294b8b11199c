"""The exchange configuration's rules: the spec's JSON format and its validation, pure.

Nothing here reads or writes the database: collectors.config.files reads files and
collectors.config.store the models, and the models' clean() calls the checks below.

Every check names the offending field by its JSON path and quotes the bad value, and all
problems of a configuration are reported at once, so an operator fixes a file in one pass.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from collectors.exchanges import adapter_class, supported_exchanges, supports_accounts
from collectors.exchanges.base import ExchangeAdapter
from collectors.tls import plaintext_problem
from collectors.types import (
    ACCOUNT_DATA_TYPES,
    ACCOUNT_NAME,
    DataType,
    ExchangeCollectorConfig,
    account_of,
    account_symbol,
)
from collectors.types import COLLECTOR_DEFAULTS as DEFAULTS

logger = logging.getLogger(__name__)

# An account's data comes over its own logged-in connection, never a trading pair's.
ACCOUNT_ONLY = (
    "it belongs to an account: list it in the exchange's account_data_types, with credentials"
)
UNCOLLECTABLE = {data_type: ACCOUNT_ONLY for data_type in ACCOUNT_DATA_TYPES}
CREDENTIAL_KEYS = ("api_key_env", "secret_env", "passphrase_env")
ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,99}\Z")
DEFAULT_ACCOUNT = "main"
MAX_INTEGER = 2**31 - 1  # PositiveIntegerField's limit in PostgreSQL
MAX_URL_LENGTH = 255  # the models' CharField
MAX_SYMBOL_LENGTH = 50
# ws:// and http:// let a collector point at a local simulator: loopback hosts only.
WS_SCHEMES = ("wss", "ws")
HTTP_SCHEMES = ("https", "http")

TOP_LEVEL_KEYS = (
    "exchange",
    "enabled",
    "connection",
    "credentials",
    "account_data_types",
    "data_collection",
    "trading_pairs",
)
PAIR_KEYS = ("symbol", "enabled", "data_types", "channels")


class ConfigError(ValueError):
    """An invalid exchange configuration; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclass(slots=True, frozen=True)
class TradingPairConfig:
    symbol: str
    data_types: tuple[DataType, ...]
    channels: dict[str, str]
    enabled: bool = True


@dataclass(slots=True, frozen=True)
class AccountConfig:
    """One account (or sub-account) and the names of the environment variables holding its
    credentials; the values themselves are read only by the collector that logs in."""

    name: str
    api_key_env: str
    secret_env: str
    passphrase_env: str
    enabled: bool = True

    def credential_names(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in CREDENTIAL_KEYS}


@dataclass(slots=True, frozen=True)
class ExchangeConfig:
    """One exchange's configuration file, validated; settings flattened out of their sections."""

    exchange: str
    public_ws_url: str
    trading_pairs: tuple[TradingPairConfig, ...] = ()
    enabled: bool = True
    business_ws_url: str | None = None
    rest_url: str | None = None
    private_ws_url: str | None = None
    demo_trading: bool = False
    accounts: tuple[AccountConfig, ...] = ()
    account_data_types: tuple[DataType, ...] = ()
    ping_interval: float = DEFAULTS["ping_interval"]
    pong_timeout: float = DEFAULTS["pong_timeout"]
    max_reconnect_attempts: int = DEFAULTS["max_reconnect_attempts"]
    reconnect_delay: float = DEFAULTS["reconnect_delay"]
    store_raw_data: bool = DEFAULTS["store_raw_data"]
    health_check_interval: float = DEFAULTS["health_check_interval"]
    auto_restart: bool = DEFAULTS["auto_restart"]
    buffer_size: int = DEFAULTS["buffer_size"]
    max_silence_duration: float = DEFAULTS["max_silence_duration"]


# checks of single values: return the normalized value or raise Invalid ----------------------


class Invalid(ValueError):
    """One value that fails its check; the message says why, quoting the value."""


def json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return repr(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def positive_number(value: Any) -> float:
    number = as_number(value)
    if number is None or number <= 0:
        raise Invalid(f"must be a positive number, not {value!r}")
    return number


def integer_check(minimum: int, description: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"must be {description}, not {value!r}")
        if value > MAX_INTEGER:
            raise Invalid(f"must be at most {MAX_INTEGER}, not {value!r}")
        return value

    return check


positive_integer = integer_check(1, "a positive integer")
non_negative_integer = integer_check(0, "a non-negative integer")


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {value!r}")
    return value


def url_check(schemes: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a URL string, not {json_kind(value)}")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as error:
            raise Invalid(f"malformed URL {value!r}: {error}") from None
        if parts.scheme not in schemes:
            raise Invalid(f"URL scheme must be {' or '.join(schemes)}, not {parts.scheme!r}")
        if not parts.hostname:
            raise Invalid(f"URL has no host: {value!r}")
        if plaintext_problem(value):
            raise Invalid(plaintext_problem(value))
        if len(value) > MAX_URL_LENGTH:
            raise Invalid(f"URL longer than {MAX_URL_LENGTH} characters: {value!r}")
        return value

    return check


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Null or "" means "use the adapter's default", as a blank field does in the admin."""

    def check_optional(value: Any) -> Any:
        return None if value in (None, "") else check(value)

    return check_optional


@dataclass(slots=True, frozen=True)
class Setting:
    section: str
    name: str
    check: Callable[[Any], Any]
    required: bool = False


SETTINGS = (
    Setting("connection", "public_ws_url", url_check(WS_SCHEMES), required=True),
    Setting("connection", "business_ws_url", optional(url_check(WS_SCHEMES))),
    Setting("connection", "rest_url", optional(url_check(HTTP_SCHEMES))),
    Setting("connection", "private_ws_url", optional(url_check(WS_SCHEMES))),
    Setting("connection", "demo_trading", boolean),
    Setting("connection", "ping_interval", positive_number),
    Setting("connection", "pong_timeout", positive_number),
    Setting("connection", "max_reconnect_attempts", non_negative_integer),
    Setting("connection", "reconnect_delay", positive_number),
    Setting("data_collection", "store_raw_data", boolean),
    Setting("data_collection", "health_check_interval", positive_number),
    Setting("data_collection", "auto_restart", boolean),
    Setting("data_collection", "buffer_size", positive_integer),
    Setting("data_collection", "max_silence_duration", positive_number),
)
SECTIONS = ("connection", "data_collection")
# what a collector's custom_params carries: the connection settings and the pair's channels
CUSTOM_PARAMS = (
    "public_ws_url",
    "business_ws_url",
    "rest_url",
    "ping_interval",
    "pong_timeout",
    "max_reconnect_attempts",
    "reconnect_delay",
    "buffer_size",
    "max_silence_duration",
    "channels",
)
# what an account collector's custom_params carries
ACCOUNT_PARAMS = (
    "private_ws_url",
    "rest_url",
    "demo_trading",
    "ping_interval",
    "pong_timeout",
    "max_reconnect_attempts",
    "reconnect_delay",
    "buffer_size",
    "max_silence_duration",
    "credentials",
)
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


# Tuning any collector may carry in custom_params (not part of the exchange file); each
# adapter adds its own (ExchangeAdapter.tuning_params, e.g. OKX's trade backfill).
TUNING_PARAMS: dict[str, Callable[[Any], Any]] = {
    "max_message_bytes": integer_check(1024, "a number of bytes, at least 1024"),
}


# collecting problems by JSON path ---------------------------------------------------------


@dataclass(slots=True)
class Problems:
    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def check(self, path: str, check: Callable[[Any], Any], value: Any) -> Any:
        """The checked value, or None after recording why it is invalid."""
        try:
            return check(value)
        except ValueError as error:  # Invalid, or an adapter's check refusing a value
            self.add(path, str(error))
            return None

    def messages(self) -> list[str]:
        return [f"{path}: {message}" if path else message for path, message in self.items]

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.messages())


def key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def unknown_keys(data: dict, expected: tuple[str, ...], path: str, problems: Problems) -> None:
    for key in data:
        if key not in expected:
            problems.add(
                key_path(path, str(key)),
                f"unknown key {key!r} (expected one of: {', '.join(sorted(expected))})",
            )


def object_at(data: Any, path: str, problems: Problems) -> dict | None:
    if isinstance(data, dict):
        return data
    problems.add(path or "configuration", f"must be an object, not {json_kind(data)}")
    return None


# exchange, symbol, channels, data types: the rules the adapter defines ------------------------


def exchange_adapter(name: Any, path: str, problems: Problems) -> type[ExchangeAdapter] | None:
    if not isinstance(name, str):
        problems.add(path, f"must be a string, not {json_kind(name)}")
        return None
    if name not in supported_exchanges():
        supported = ", ".join(supported_exchanges())
        problems.add(path, f"unknown exchange {name!r} (supported: {supported})")
        return None
    return adapter_class(name)


def check_symbol(symbol: Any, adapter: type[ExchangeAdapter] | None) -> str:
    if not isinstance(symbol, str):
        raise Invalid(f"must be a string, not {json_kind(symbol)}")
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise Invalid(f"symbol longer than {MAX_SYMBOL_LENGTH} characters: {symbol!r}")
    if adapter is not None and not adapter.symbol_pattern.fullmatch(symbol):
        raise Invalid(f"malformed symbol {symbol!r}")
    return symbol


def check_channels(
    channels: Any, adapter: type[ExchangeAdapter] | None, path: str, problems: Problems
) -> dict[str, str] | None:
    channels = object_at(channels, path, problems)
    if channels is None:
        return None
    valid = {}
    for role, channel in channels.items():
        at = key_path(path, str(role))
        if not isinstance(channel, str):
            problems.add(at, f"must be a channel name, not {json_kind(channel)}")
        elif adapter is None:
            valid[role] = channel
        elif role not in adapter.channel_names:
            roles = ", ".join(sorted(adapter.channel_names))
            problems.add(at, f"unknown channel role {role!r} (expected one of: {roles})")
        elif channel not in adapter.channel_names[role]:
            names = ", ".join(sorted(adapter.channel_names[role]))
            problems.add(
                at, f"unknown channel {channel!r} for {adapter.name} (expected one of: {names})"
            )
        else:
            valid[role] = channel
    return valid


def default_channels(adapter: type[ExchangeAdapter] | None) -> dict[str, str]:
    """The channels a trading pair uses when it names none: the adapter's defaults."""
    return dict(adapter.default_channels) if adapter is not None else {}


def data_type_named(value: Any) -> DataType:
    if not isinstance(value, str):
        raise Invalid(f"must be a data type name, not {json_kind(value)}")
    try:
        return DataType(value)
    except ValueError:
        names = ", ".join(sorted(t.value for t in DataType))
        raise Invalid(f"unknown data type {value!r} (expected one of: {names})") from None


def check_data_types(
    data_types: list[tuple[str, DataType]],
    channels: dict[str, Any] | None,
    channels_path: str,
    adapter: type[ExchangeAdapter] | None,
    problems: Problems,
) -> None:
    """Each data type once, collectable, and with a channel for its role configured."""
    seen: dict[DataType, str] = {}
    for at, data_type in data_types:
        if data_type in seen:
            problems.add(at, f"duplicate data type {data_type.value!r} (also {seen[data_type]})")
            continue
        seen[data_type] = at
        if data_type in UNCOLLECTABLE:
            reason = UNCOLLECTABLE[data_type]
            problems.add(at, f"data type {data_type.value!r} cannot be collected: {reason}")
            continue
        if adapter is None or channels is None:
            continue
        roles = [role for role, produced in adapter.channel_roles.items() if produced is data_type]
        if not roles:
            problems.add(at, f"data type {data_type.value!r} is not offered by {adapter.name}")
        elif not any(role in channels for role in roles):
            problems.add(
                at,
                f"data type {data_type.value!r} needs a {roles[0]!r} channel, "
                f"and {channels_path} has none",
            )


# parsing the JSON format --------------------------------------------------------------------


def parse_exchange_config(data: Any) -> ExchangeConfig:
    """The validated configuration; ConfigError listing every problem otherwise."""
    problems = Problems()
    config = parse_exchange(data, "", problems)
    problems.raise_if_any()
    assert config is not None
    return config


def parse_exchange_configs(data: Any) -> list[ExchangeConfig]:
    """One configuration (an object) or several (an array of them, as dumped)."""
    if not isinstance(data, list):
        return [parse_exchange_config(data)]
    problems = Problems()
    configs = [parse_exchange(item, f"[{index}]", problems) for index, item in enumerate(data)]
    seen: dict[str, str] = {}
    for index, item in enumerate(data):
        name = item.get("exchange") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            problems.add(f"[{index}].exchange", f"duplicate exchange {name!r} (also {seen[name]})")
        elif isinstance(name, str):
            seen[name] = f"[{index}]"
    problems.raise_if_any()
    return [config for config in configs if config is not None]


def parse_exchange(data: Any, path: str, problems: Problems) -> ExchangeConfig | None:
    before = len(problems.items)
    data = object_at(data, path, problems)
    if data is None:
        return None
    unknown_keys(data, TOP_LEVEL_KEYS, path, problems)
    name_path = key_path(path, "exchange")
    if "exchange" in data:
        adapter = exchange_adapter(data["exchange"], name_path, problems)
    else:
        problems.add(name_path, "missing required key")
        adapter = None
    enabled = problems.check(key_path(path, "enabled"), boolean, data.get("enabled", True))
    settings = parse_sections(data, path, problems)
    pairs = parse_pairs(data, key_path(path, "trading_pairs"), adapter, problems)
    accounts, account_types = parse_accounts(data, path, adapter, problems)
    if len(problems.items) > before:
        return None
    return ExchangeConfig(
        exchange=data["exchange"],
        enabled=enabled,
        trading_pairs=tuple(pairs),
        accounts=tuple(accounts),
        account_data_types=tuple(account_types),
        **settings,
    )


def check_env_name(value: Any) -> str:
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value):
        # the value is not quoted: it may be a credential put here by mistake
        raise Invalid(
            "must be the name of an environment variable (letters, digits and _, not "
            "starting with a digit), not the credential itself"
        )
    return value


def check_account_name(value: Any) -> str:
    if not isinstance(value, str) or not ACCOUNT_NAME.fullmatch(value):
        raise Invalid(
            f"must be an account name of 1 to 40 letters, digits, '_', '.' or '-', "
            f"not {json_kind(value)}"
        )
    return value


def parse_accounts(
    data: dict, path: str, adapter: type[ExchangeAdapter] | None, problems: Problems
) -> tuple[list[AccountConfig], list[DataType]]:
    """ "credentials" (one object, or an array of them with "account" names) and
    "account_data_types": the accounts to log in and what to collect from each."""
    creds_path = key_path(path, "credentials")
    types_path = key_path(path, "account_data_types")
    if "credentials" not in data and "account_data_types" not in data:
        return [], []
    if adapter is not None and not supports_accounts(adapter.name):
        problems.add(creds_path, f"account data is not supported for {adapter.name}")
        return [], []
    items = data.get("credentials")
    if items is None:
        problems.add(creds_path, "missing: account_data_types needs credentials")
        items = []
    single = isinstance(items, dict)
    if single:
        items = [items]
    elif not isinstance(items, list):
        problems.add(creds_path, f"must be an object or an array of them, not {json_kind(items)}")
        items = []
    accounts, seen = [], {}
    for index, item in enumerate(items):
        at = creds_path if single else f"{creds_path}[{index}]"
        account = parse_credentials(item, at, single, problems)
        if account is None:
            continue
        if account.name in seen:
            problems.add(
                key_path(at, "account"),
                f"duplicate account {account.name!r} (also {seen[account.name]})",
            )
            continue
        seen[account.name] = at
        accounts.append(account)
    names = data.get("account_data_types")
    types: list[DataType] = []
    if names is None:
        if accounts:
            problems.add(types_path, "missing: credentials need account_data_types")
    elif not isinstance(names, list):
        problems.add(types_path, f"must be an array of data types, not {json_kind(names)}")
    else:
        for index, name in enumerate(names):
            at = f"{types_path}[{index}]"
            data_type = problems.check(at, data_type_named, name)
            if data_type is None:
                continue
            if data_type not in ACCOUNT_DATA_TYPES:
                allowed = ", ".join(t.value for t in ACCOUNT_DATA_TYPES)
                problems.add(at, f"{data_type.value!r} is not account data (expected: {allowed})")
            elif data_type in types:
                problems.add(at, f"duplicate data type {data_type.value!r}")
            else:
                types.append(data_type)
    return accounts, types


def parse_credentials(
    item: Any, path: str, single: bool, problems: Problems
) -> AccountConfig | None:
    before = len(problems.items)
    item = object_at(item, path, problems)
    if item is None:
        return None
    unknown_keys(item, ("account", "enabled", *CREDENTIAL_KEYS), path, problems)
    if "account" in item:
        name = problems.check(key_path(path, "account"), check_account_name, item["account"])
    elif single:
        name = DEFAULT_ACCOUNT
    else:
        problems.add(key_path(path, "account"), "missing: each of several accounts needs a name")
        name = None
    names = {}
    for key in CREDENTIAL_KEYS:
        if key not in item:
            problems.add(key_path(path, key), "missing required key")
        else:
            names[key] = problems.check(key_path(path, key), check_env_name, item[key])
    enabled = problems.check(key_path(path, "enabled"), boolean, item.get("enabled", True))
    if len(problems.items) > before:
        return None
    return AccountConfig(name=name, enabled=enabled, **names)


def parse_sections(data: dict, path: str, problems: Problems) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for section in SECTIONS:
        section_path = key_path(path, section)
        if section not in data:
            if any(s.required for s in SETTINGS if s.section == section):
                problems.add(section_path, "missing required key")
            continue
        values = object_at(data[section], section_path, problems)
        if values is None:
            continue
        expected = tuple(s.name for s in SETTINGS if s.section == section)
        unknown_keys(values, expected, section_path, problems)
        for setting in SETTINGS:
            if setting.section != section:
                continue
            at = key_path(section_path, setting.name)
            if setting.name in values:
                settings[setting.name] = problems.check(at, setting.check, values[setting.name])
            elif setting.required:
                problems.add(at, "missing required key")
    return settings


def parse_pairs(
    data: dict, path: str, adapter: type[ExchangeAdapter] | None, problems: Problems
) -> list[TradingPairConfig]:
    if "trading_pairs" not in data:
        problems.add(path, "missing required key")
        return []
    items = data["trading_pairs"]
    if not isinstance(items, list):
        problems.add(path, f"must be an array, not {json_kind(items)}")
        return []
    pairs = [
        parse_pair(item, f"{path}[{index}]", adapter, problems) for index, item in enumerate(items)
    ]
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        symbol = item.get("symbol") if isinstance(item, dict) else None
        if not isinstance(symbol, str):
            continue
        if symbol in seen:
            problems.add(
                f"{path}[{index}].symbol", f"duplicate symbol {symbol!r} (also {seen[symbol]})"
            )
        else:
            seen[symbol] = f"{path}[{index}]"
    return [pair for pair in pairs if pair is not None]


def parse_pair(
    data: Any, path: str, adapter: type[ExchangeAdapter] | None, problems: Problems
) -> TradingPairConfig | None:
    before = len(problems.items)
    data = object_at(data, path, problems)
    if data is None:
        return None
    unknown_keys(data, PAIR_KEYS, path, problems)
    symbol = None
    if "symbol" in data:
        check = partial(check_symbol, adapter=adapter)
        symbol = problems.check(key_path(path, "symbol"), check, data["symbol"])
    else:
        problems.add(key_path(path, "symbol"), "missing required key")
    enabled = problems.check(key_path(path, "enabled"), boolean, data.get("enabled", True))
    channels_path = key_path(path, "channels")
    if data.get("channels", {}) != {}:  # absent or {}: the adapter's default channels
        channels = check_channels(data["channels"], adapter, channels_path, problems)
        # a role with a bad channel name is reported once, not again as a missing role
        configured = data["channels"] if channels is not None else None
    else:
        channels = configured = default_channels(adapter)
    data_types = parse_data_types(data, key_path(path, "data_types"), problems)
    check_data_types(data_types, configured, channels_path, adapter, problems)
    if len(problems.items) > before:
        return None
    return TradingPairConfig(
        symbol=symbol,
        enabled=enabled,
        data_types=tuple(data_type for _, data_type in data_types),
        channels=channels,
    )


def parse_data_types(data: dict, path: str, problems: Problems) -> list[tuple[str, DataType]]:
    """(path, data type) of each valid entry of a pair's "data_types"."""
    if "data_types" not in data:
        problems.add(path, "missing required key")
        return []
    names = data["data_types"]
    if not isinstance(names, list):
        problems.add(path, f"must be an array of data types, not {json_kind(names)}")
        return []
    if not names:
        problems.add(path, "must list at least one data type")
    parsed = [(f"{path}[{index}]", name) for index, name in enumerate(names)]
    checked = [(at, problems.check(at, data_type_named, name)) for at, name in parsed]
    return [(at, data_type) for at, data_type in checked if data_type is not None]


# collectors --------------------------------------------------------------------------------


def collector_configs(config: ExchangeConfig) -> list[ExchangeCollectorConfig]:
    """One collector config per enabled pair of an enabled exchange."""
    if not config.enabled:
        return []
    connection = {name: getattr(config, name) for name in CUSTOM_PARAMS if name != "channels"}
    return [
        ExchangeCollectorConfig(
            exchange=config.exchange,
            symbol=pair.symbol,
            data_types=list(pair.data_types),
            auto_restart=config.auto_restart,
            health_check_interval=config.health_check_interval,
            store_raw_data=config.store_raw_data,
            custom_params={**connection, "channels": dict(pair.channels)},
        )
        for pair in config.trading_pairs
        if pair.enabled
    ] + account_collector_configs(config)


def account_collector_configs(config: ExchangeConfig) -> list[ExchangeCollectorConfig]:
    """One collector per enabled account: its private connection, "okx:account:main"."""
    if not config.enabled or not config.account_data_types:
        return []
    connection = {name: getattr(config, name) for name in ACCOUNT_PARAMS if name != "credentials"}
    return [
        ExchangeCollectorConfig(
            exchange=config.exchange,
            symbol=account_symbol(account.name),
            data_types=list(config.account_data_types),
            auto_restart=config.auto_restart,
            health_check_interval=config.health_check_interval,
            store_raw_data=config.store_raw_data,
            custom_params={**connection, "credentials": account.credential_names()},
        )
        for account in config.accounts
        if account.enabled
    ]


def validate_account_collector(config: ExchangeCollectorConfig, account: str) -> list[str]:
    """Everything wrong with an account collector's config; empty when valid."""
    problems = Problems()
    exchange_adapter(config.exchange, "exchange", problems)
    if isinstance(config.exchange, str) and not supports_accounts(config.exchange):
        problems.add("exchange", f"account data is not supported for {config.exchange!r}")
    problems.check("symbol", check_account_name, account)
    data_types = config.data_types
    if not isinstance(data_types, list | tuple) or not data_types:
        problems.add("data_types", f"must be a non-empty list of DataType, not {data_types!r}")
    else:
        for index, data_type in enumerate(data_types):
            if data_type not in ACCOUNT_DATA_TYPES:
                problems.add(f"data_types[{index}]", f"not account data: {data_type!r}")
    params = object_at(config.custom_params, "custom_params", problems) or {}
    unknown_keys(params, ACCOUNT_PARAMS, "custom_params", problems)
    for name in ACCOUNT_PARAMS:
        setting = SETTINGS_BY_NAME.get(name)
        if setting is not None and params.get(name) is not None:
            problems.check(key_path("custom_params", name), setting.check, params[name])
    credentials = object_at(params.get("credentials"), "custom_params.credentials", problems)
    for key in CREDENTIAL_KEYS:
        at = f"custom_params.credentials.{key}"
        if credentials is not None:
            problems.check(at, check_env_name, credentials.get(key))
    return problems.messages()


def validate_collector_config(config: ExchangeCollectorConfig) -> list[str]:
    """Everything wrong with one collector config (the file's rules); empty when valid."""
    account = account_of(config.symbol) if isinstance(config.symbol, str) else None
    if account is not None:
        return validate_account_collector(config, account)
    problems = Problems()
    adapter = exchange_adapter(config.exchange, "exchange", problems)
    problems.check("symbol", partial(check_symbol, adapter=adapter), config.symbol)
    for name in ("auto_restart", "store_raw_data"):
        problems.check(name, boolean, getattr(config, name))
    problems.check("health_check_interval", positive_number, config.health_check_interval)
    channels = check_custom_params(config.custom_params, adapter, problems)
    data_types = config.data_types
    if not isinstance(data_types, list | tuple) or not data_types:
        problems.add("data_types", f"must be a non-empty list of DataType, not {data_types!r}")
        return problems.messages()
    typed = []
    for index, data_type in enumerate(data_types):
        if isinstance(data_type, DataType):
            typed.append((f"data_types[{index}]", data_type))
        else:
            problems.add(f"data_types[{index}]", f"must be a DataType, not {data_type!r}")
    check_data_types(typed, channels, "custom_params.channels", adapter, problems)
    return problems.messages()


def check_custom_params(
    params: Any, adapter: type[ExchangeAdapter] | None, problems: Problems
) -> dict[str, Any] | None:
    """Validate custom_params; the channels a collector will use (None if not an object)."""
    if params is None:
        return default_channels(adapter)
    params = object_at(params, "custom_params", problems)
    if params is None:
        return None
    tuning = {**TUNING_PARAMS, **(adapter.tuning_params if adapter is not None else {})}
    unknown_keys(params, (*CUSTOM_PARAMS, *tuning), "custom_params", problems)
    checks = {name: setting.check for name, setting in SETTINGS_BY_NAME.items()}
    for name, check in {**checks, **tuning}.items():
        # None stands for the collector's default, as it does in BaseDataCollector.setting
        if name in params and params[name] is not None:
            problems.check(key_path("custom_params", name), check, params[name])
    if params.get("channels") in (None, {}):
        return default_channels(adapter)
    channels = check_channels(params["channels"], adapter, "custom_params.channels", problems)
    return params["channels"] if channels is not None else None


# the admin: model instances, read as plain objects ------------------------------------------


def exchange_settings_to_dict(exchange: Any) -> dict[str, Any]:
    """The exchange's part of the spec's JSON; a blank optional URL is left out."""
    data: dict[str, Any] = {"exchange": exchange.name, "enabled": exchange.enabled}
    for section in SECTIONS:
        values = {s.name: getattr(exchange, s.name) for s in SETTINGS if s.section == section}
        data[section] = {name: value for name, value in values.items() if value != ""}
    if not data["connection"].get("demo_trading"):
        data["connection"].pop("demo_trading", None)  # the default: files need not say it
    return data


def validate_exchange_fields(exchange: Any) -> dict[str, list[str]]:
    """Problems of an Exchange by model field name, for a form's ValidationError."""
    data = {**exchange_settings_to_dict(exchange), "trading_pairs": []}
    problems = Problems()
    parse_exchange(data, "", problems)
    errors: dict[str, list[str]] = {}
    for path, message in problems.items:
        name = path.rsplit(".", 1)[-1]
        errors.setdefault("name" if name == "exchange" else name, []).append(message)
    names = exchange.account_data_types
    if names:  # checked alone here: the accounts are saved apart from the exchange
        check = {"credentials": [], "account_data_types": names}
        problems = Problems()
        parse_accounts(check, "", None, problems)
        for _path, message in problems.items:
            errors.setdefault("account_data_types", []).append(message)
    return errors


def validate_account_fields(account: Any) -> dict[str, list[str]]:
    """Problems of an ExchangeAccount by model field name."""
    problems = Problems()
    item = {key: getattr(account, key) for key in CREDENTIAL_KEYS}
    parse_credentials({"account": account.name, **item}, "", True, problems)
    errors: dict[str, list[str]] = {}
    for path, message in problems.items:
        name = "name" if path == "account" else path
        errors.setdefault(name, []).append(message)
    return errors


def validate_trading_pair_fields(
    pair: Any, exchange_name: str | None = None
) -> dict[str, list[str]]:
    """Problems of a TradingPair by model field name, checked against its exchange's adapter."""
    problems = Problems()
    if exchange_name is None:
        exchange_name = pair.exchange.name
    adapter = exchange_adapter(exchange_name, "exchange", problems)
    data = {
        "symbol": pair.symbol,
        "enabled": pair.enabled,
        "data_types": pair.data_types,
        "channels": pair.channels,
    }
    parse_pair(data, "", adapter, problems)
    errors: dict[str, list[str]] = {}
    for path, message in problems.items:
        name = path.split(".", 1)[0].split("[", 1)[0]
        errors.setdefault(name, []).append(message if path == name else f"{path}: {message}")
    return errors
