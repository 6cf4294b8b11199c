"""Account configuration: credentials named by environment variables, several accounts, the
account data types at the exchange level; stored and dumped without a credential."""

import copy
import io
import json

import pytest
from django.core.management import call_command

from collectors.config.schema import (
    ConfigError,
    collector_configs,
    parse_exchange_config,
    validate_collector_config,
)
from collectors.config.store import collector_configs_from_db, save_exchange_config
from collectors.exchanges.base import ConfigurationError
from collectors.exchanges.okx_account import Credentials, read_credentials
from collectors.models import ExchangeAccount
from collectors.types import DataType

CONFIG = {
    "exchange": "okx",
    "connection": {
        "public_ws_url": "wss://ws.okx.com:8443/ws/v5/public",
        "private_ws_url": "wss://ws.okx.com:8443/ws/v5/private",
        "demo_trading": True,
    },
    "credentials": {
        "api_key_env": "OKX_API_KEY",
        "secret_env": "OKX_API_SECRET",
        "passphrase_env": "OKX_API_PASSPHRASE",
    },
    "account_data_types": ["balance", "position", "order"],
    "trading_pairs": [{"symbol": "BTC-USDT", "data_types": ["trade"]}],
}


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_exchange_config(data)
    return caught.value.errors


def test_one_credentials_object_is_the_main_account_with_its_own_collector():
    config = parse_exchange_config(CONFIG)
    [account] = config.accounts
    assert (account.name, account.api_key_env) == ("main", "OKX_API_KEY")
    configs = {c.name: c for c in collector_configs(config)}
    assert set(configs) == {"okx:BTC-USDT", "okx:account:main"}
    private = configs["okx:account:main"]
    assert private.data_types == [DataType.BALANCE, DataType.POSITION, DataType.ORDER]
    assert private.custom_params["credentials"] == {
        "api_key_env": "OKX_API_KEY",
        "secret_env": "OKX_API_SECRET",
        "passphrase_env": "OKX_API_PASSPHRASE",
    }
    assert private.custom_params["demo_trading"] is True
    assert validate_collector_config(private) == []


def test_several_accounts_sit_side_by_side():
    data = copy.deepcopy(CONFIG)
    main = {"account": "main", **CONFIG["credentials"]}
    sub = {"account": "sub1", "api_key_env": "SUB_KEY", "secret_env": "SUB_SECRET",
           "passphrase_env": "SUB_PASS"}  # fmt: skip
    data["credentials"] = [main, sub]
    names = [c.name for c in collector_configs(parse_exchange_config(data))]
    assert names == ["okx:BTC-USDT", "okx:account:main", "okx:account:sub1"]
    data["credentials"] = [main, {**sub, "account": "main"}]
    assert errors_of(data) == [
        "credentials[1].account: duplicate account 'main' (also credentials[0])"
    ]
    del data["credentials"][1]["account"]
    assert "credentials[1].account: missing: each of several accounts needs a name" in errors_of(
        data
    )


def test_account_data_types_are_refused_on_a_trading_pair_and_checked_at_the_exchange():
    data = copy.deepcopy(CONFIG)
    data["trading_pairs"][0]["data_types"] = ["trade", "balance"]
    data["account_data_types"] = ["balance", "ticker"]
    data["credentials"]["secret_env"] = "not a name"
    assert sorted(errors_of(data)) == [
        "account_data_types[1]: 'ticker' is not account data (expected: balance, position, order)",
        "credentials.secret_env: must be the name of an environment variable (letters, digits "
        "and _, not starting with a digit), not the credential itself",
        "trading_pairs[0].data_types[1]: data type 'balance' cannot be collected: it belongs to "
        "an account: list it in the exchange's account_data_types, with credentials",
    ]
    del data["credentials"]
    data["account_data_types"] = ["balance"]
    assert "credentials: missing: account_data_types needs credentials" in errors_of(data)


def test_a_credential_put_where_its_variable_name_belongs_is_not_quoted_back():
    data = copy.deepcopy(CONFIG)
    data["credentials"]["secret_env"] = "s3cr3t-value/with+chars=="
    [error] = errors_of(data)
    assert error.startswith("credentials.secret_env: must be the name of an environment variable")
    assert "s3cr3t" not in error


def test_a_credential_value_is_read_from_the_environment_and_a_missing_one_named():
    names = CONFIG["credentials"]
    environ = {"OKX_API_KEY": "k-123456", "OKX_API_SECRET": "s-abcdef", "OKX_API_PASSPHRASE": "p-1"}
    credentials = read_credentials(names, "main", environ)
    assert credentials == Credentials("k-123456", "s-abcdef", "p-1")
    assert "s-abcdef" not in repr(credentials) and "k-123456" not in repr(credentials)
    del environ["OKX_API_PASSPHRASE"]
    with pytest.raises(ConfigurationError) as caught:
        read_credentials(names, "main", environ)
    assert str(caught.value) == (
        "environment variable OKX_API_PASSPHRASE is not set: it should hold the passphrase "
        "of okx account 'main'"
    )


@pytest.mark.django_db
def test_stored_and_dumped_with_the_variable_names_only(monkeypatch):
    monkeypatch.setenv("OKX_API_SECRET", "the-secret-value-xyz")
    data = copy.deepcopy(CONFIG)
    data["credentials"] = [
        {"account": "main", **CONFIG["credentials"]},
        {"account": "sub1", "enabled": False, "api_key_env": "SUB_KEY", "secret_env": "SUB_SECRET",
         "passphrase_env": "SUB_PASS"},
    ]  # fmt: skip
    save_exchange_config(parse_exchange_config(data))
    assert list(ExchangeAccount.objects.values_list("name", "secret_env")) == [
        ("main", "OKX_API_SECRET"),
        ("sub1", "SUB_SECRET"),
    ]
    names = sorted(c.name for c in collector_configs_from_db())
    assert names == ["okx:BTC-USDT", "okx:account:main"]  # sub1 is disabled
    out = io.StringIO()
    call_command("dump_exchange_config", "--exchange", "okx", stdout=out)
    dumped = json.loads(out.getvalue())
    assert dumped["credentials"][0] == {"account": "main", "enabled": True, **CONFIG["credentials"]}
    assert dumped["account_data_types"] == ["balance", "position", "order"]
    assert dumped["connection"]["demo_trading"] is True
    assert "the-secret-value-xyz" not in out.getvalue()
    assert parse_exchange_config(dumped).accounts == parse_exchange_config(data).accounts
