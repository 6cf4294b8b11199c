"""Fixtures for collector tests: the simulators, collector configs and a storage sink."""

import itertools

import pytest

from collectors.simulators.okx import OkxSimulator
from collectors.storage.sink import StorageSink
from tests.helpers import simulated_market

_names = itertools.count()


@pytest.fixture
def simulator():
    sim = OkxSimulator(seed=7, rate=50.0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(params=["okx", "binance"])
def market(request):
    """Each exchange's simulator in turn, for the tests of exchange-neutral behaviour."""
    with simulated_market(request.param, seed=7, rate=50.0) as running:
        yield running


@pytest.fixture
def binance():
    with simulated_market("binance", seed=7, rate=50.0, kline_interval=0.5) as running:
        yield running


@pytest.fixture
def sink(tmp_path):
    storage = StorageSink(
        name=f"test-{next(_names)}", buffer_size=100, flush_interval=0.05, spill_dir=tmp_path
    )
    storage.start()
    yield storage
    storage.stop()
