"""Fixtures for collector tests: the OKX simulator, collector configs and a storage sink."""

import asyncio
import itertools

import pytest

from collectors.simulators.okx import OkxSimulator
from collectors.storage import StorageSink
from collectors.types import DataType, ExchangeCollectorConfig

_names = itertools.count()


@pytest.fixture
def simulator():
    sim = OkxSimulator(seed=7, rate=50.0)
    sim.start()
    yield sim
    sim.stop()


def make_config(simulator, symbol="BTC-USDT", data_types=(DataType.TRADE,), **params):
    custom = {
        "public_ws_url": simulator.public_url,
        "business_ws_url": simulator.business_url,
        "rest_url": simulator.rest_url,
        "ping_interval": 2.0,
        "pong_timeout": 1.0,
        "reconnect_delay": 0.1,
        "max_reconnect_attempts": 5,
        "max_silence_duration": 5.0,
        "buffer_size": 100,
        "channels": {
            "trades": "trades",
            "orderbook": "books5",
            "ticker": "tickers",
            "candle": "candle1m",
        },
    }
    custom.update(params)
    return ExchangeCollectorConfig("okx", symbol, list(data_types), custom_params=custom)


@pytest.fixture
def sink(tmp_path):
    storage = StorageSink(
        name=f"test-{next(_names)}", buffer_size=100, flush_interval=0.05, spill_dir=tmp_path
    )
    storage.start()
    yield storage
    storage.stop()


def run(coroutine):
    return asyncio.run(coroutine)
