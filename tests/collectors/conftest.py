"""Fixtures for collector tests: the OKX simulator, collector configs and a storage sink."""

import itertools

import pytest

from collectors.simulators.okx import OkxSimulator
from collectors.storage.sink import StorageSink

_names = itertools.count()


@pytest.fixture
def simulator():
    sim = OkxSimulator(seed=7, rate=50.0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def sink(tmp_path):
    storage = StorageSink(
        name=f"test-{next(_names)}", buffer_size=100, flush_interval=0.05, spill_dir=tmp_path
    )
    storage.start()
    yield storage
    storage.stop()
