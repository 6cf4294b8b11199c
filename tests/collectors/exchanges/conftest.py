"""Fixtures of the exchange adapter tests: a canned REST server on loopback."""

import threading
from http.server import ThreadingHTTPServer

import pytest

from tests.collectors.exchanges.okx_frames import CannedOkx


@pytest.fixture
def rest():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CannedOkx)
    server.answers, server.paths = [], []
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def receive_window_reaching_back_to_the_recorded_frames(settings):
    """The frames here are stamped when they were recorded (2020 to 2023), and the 2022
    sessions replayed: a collector takes them only with a window reaching back that far.
    The window itself is tested in tests/collectors/test_bounds.py."""
    settings.COLLECTOR_MAX_CLOCK_SKEW_PAST = 10 * 365 * 86400.0
