"""Exchange configuration files: strict JSON (no duplicate keys, no NaN), then the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collectors.config.schema import (
    ConfigError,
    ExchangeConfig,
    parse_exchange_config,
    parse_exchange_configs,
)


class DuplicateKey(ValueError):
    pass


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(f"invalid JSON: duplicate key {key!r} in an object")
        result[key] = value
    return result


def reject_constant(name: str) -> Any:
    raise DuplicateKey(f"invalid JSON: {name} is not a JSON number")


def read_json_file(path: str | Path) -> Any:
    """The file's JSON; ConfigError with line and column if it is not JSON. OSError passes."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError([f"not UTF-8 text: {error}"]) from None
    try:
        return json.loads(
            text, object_pairs_hook=reject_duplicate_keys, parse_constant=reject_constant
        )
    except json.JSONDecodeError as error:
        message = f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        raise ConfigError([message]) from None
    except DuplicateKey as error:
        raise ConfigError([str(error)]) from None


def load_exchange_config_file(path: str | Path) -> ExchangeConfig:
    return parse_exchange_config(read_json_file(path))


def load_exchange_configs_file(path: str | Path) -> list[ExchangeConfig]:
    """A file holding one configuration or an array of them (what a dump of all writes)."""
    return parse_exchange_configs(read_json_file(path))
