"""An exchange URL with a user and password in it is logged without them, at the source
(before any handler's redaction), and redaction strips them from any text."""

import logging
from urllib.parse import urlsplit

import pytest

from collectors.factory import ExchangeFactory
from tcp_dashboard.logs.redaction import redact, without_credentials
from tests.helpers import make_config, run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "url-Pa55word-7c1e"


class Lines(logging.Handler):
    """The messages as the logger made them, before the handlers' filters."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def link_lines():
    lines = Lines()
    logger = logging.getLogger("collectors.link")
    logger.addHandler(lines)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield lines.lines
    logger.removeHandler(lines)
    logger.setLevel(previous)


def test_the_connected_line_names_the_endpoint_without_its_credentials(simulator, sink, link_lines):
    url = urlsplit(simulator.public_url)
    config = make_config(
        simulator, public_ws_url=f"ws://okx-user:{PASSWORD}@{url.netloc}{url.path}"
    )
    collector = ExchangeFactory.create_collector(config)
    collector.sink = sink
    assert run(collector.start()) is True
    try:
        wait_until(
            lambda: any("connected to" in line for line in link_lines), 15, message="connected"
        )
    finally:
        run(collector.stop())
    connected = [line for line in link_lines if "connected to" in line]
    assert f"connected to ws://{url.netloc}{url.path}" in connected[0]
    assert not [line for line in link_lines if PASSWORD in line or "okx-user" in line]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://key:secret@ws.example.com:8443/ws", "wss://ws.example.com:8443/ws"),
        ("http://user@rest.example.com/api", "http://rest.example.com/api"),
        ("wss://ws.okx.com:8443/ws/v5/public", "wss://ws.okx.com:8443/ws/v5/public"),
    ],
)
def test_credentials_are_taken_out_of_a_url(url, expected):
    assert without_credentials(url) == expected
    assert "secret" not in redact(f"connected to {url}")
