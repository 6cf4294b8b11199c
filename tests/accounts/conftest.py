"""Accounts: an OKX simulator that knows API keys, and account collectors logged in to it."""

import secrets

import pytest

from collectors.factory import ExchangeFactory
from collectors.simulators.okx import OkxSimulator
from collectors.simulators.okx_account import ApiKey
from collectors.types import ACCOUNT_DATA_TYPES, ExchangeCollectorConfig, account_symbol
from tests.helpers import run

ENV_NAMES = {
    "api_key_env": "TEST_OKX_API_KEY",
    "secret_env": "TEST_OKX_API_SECRET",
    "passphrase_env": "TEST_OKX_API_PASSPHRASE",
}


def new_key() -> ApiKey:
    """Credentials unlike anything else in a log, so a grep for them means something."""
    return ApiKey(
        api_key=f"k{secrets.token_hex(12)}",
        secret=f"S{secrets.token_hex(16)}",
        passphrase=f"Pp{secrets.token_hex(6)}!",
    )


@pytest.fixture
def api_key():
    return new_key()


@pytest.fixture
def account_sim(api_key):
    sim = OkxSimulator(seed=11, rate=20.0, api_keys=[api_key], account_interval=0.1)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def credentials_env(monkeypatch, api_key):
    """The key's credentials in the environment, under the names the config gives."""
    monkeypatch.setenv(ENV_NAMES["api_key_env"], api_key.api_key)
    monkeypatch.setenv(ENV_NAMES["secret_env"], api_key.secret)
    monkeypatch.setenv(ENV_NAMES["passphrase_env"], api_key.passphrase)
    return ENV_NAMES


def account_config(sim, account="main", names=ENV_NAMES, data_types=ACCOUNT_DATA_TYPES, **params):
    custom = {
        "private_ws_url": sim.private_url,
        "rest_url": sim.rest_url,
        "ping_interval": 2.0,
        "pong_timeout": 1.0,
        "reconnect_delay": 0.1,
        "max_reconnect_attempts": 3,
        "max_silence_duration": 5.0,
        "credentials": dict(names),
        **params,
    }
    return ExchangeCollectorConfig(
        "okx", account_symbol(account), list(data_types), custom_params=custom
    )


@pytest.fixture
def collectors():
    """Collectors made here are stopped after the test."""
    made = []

    def make(config, sink=None):
        collector = ExchangeFactory.create_collector(config)
        collector.sink = sink
        made.append(collector)
        return collector

    yield make
    for collector in made:
        run(collector.stop(force=True))
