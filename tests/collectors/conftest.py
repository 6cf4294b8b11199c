"""Fixtures for collector tests: each exchange's simulator (the OKX simulator and the sink
are in the root conftest)."""

import pytest

from tests.helpers import simulated_market


@pytest.fixture(params=["okx", "binance"])
def market(request):
    """Each exchange's simulator in turn, for the tests of exchange-neutral behaviour."""
    with simulated_market(request.param, seed=7, rate=50.0) as running:
        yield running


@pytest.fixture
def binance():
    with simulated_market("binance", seed=7, rate=50.0, kline_interval=0.5) as running:
        yield running
