"""Fixtures for logging tests: the OKX simulator of the collector tests."""

from tests.collectors.conftest import simulator  # noqa: F401 - a fixture used here too
