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
