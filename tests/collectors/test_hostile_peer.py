"""A hostile WebSocket peer cannot grow a collector's memory, nor disturb its neighbours.

The peer is raw TCP on loopback speaking just enough RFC 6455: it answers the upgrade,
then sends a text frame without FIN followed by endless continuation frames, or a frame
header claiming 2**40 bytes followed by an endless payload, or it never ends its
handshake answer. Meanwhile a second collector in the same process collects trades
from the OKX simulator.
"""

import base64
import hashlib
import socket
import threading

import pytest

from collectors.factory import ExchangeFactory
from collectors.frames import CHUNK, MAX_HANDSHAKE_BYTES
from collectors.types import DataType, ExchangeCollectorConfig
from marketdata.models import RawTrade
from tests.helpers import make_config, run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LIMIT = 1024 * 1024  # the hostile collector's max_message_bytes
SLICE = b"x" * CHUNK


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class HostilePeer:
    """Accepts WebSocket upgrades and then misbehaves in one of three ways, for ever."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self.accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/public"

    def accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self.misbehave, args=(conn,), daemon=True).start()

    def misbehave(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 16384:
                    request += conn.recv(4096)
                if self.mode == "endless handshake":
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
                    while not self.stopping.is_set():
                        conn.sendall(b"X-Padding: " + b"a" * 1000 + b"\r\n")
                    return
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in request.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                if self.mode == "endless fragments":
                    conn.sendall(bytes([0x01, 127]) + CHUNK.to_bytes(8) + SLICE)  # text, no FIN
                    header = bytes([0x00, 127]) + CHUNK.to_bytes(8)  # continuation, no FIN
                else:  # "huge header": one frame announcing a terabyte
                    conn.sendall(bytes([0x81, 127]) + (2**40).to_bytes(8))
                    header = b""
                while not self.stopping.is_set():
                    conn.sendall(header + SLICE)
            except OSError:
                return  # the collector closed the connection, as it should

    def close(self) -> None:
        self.stopping.set()
        self.acceptor.join(5)
        self.listener.close()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("endless fragments", f"fragmented message over {LIMIT} bytes"),
        ("huge header", f"frame of {2**40} bytes over the limit of {LIMIT}"),
        ("endless handshake", f"handshake answer over {MAX_HANDSHAKE_BYTES} bytes"),
    ],
)
def test_a_hostile_peer_costs_a_bounded_buffer_and_a_counted_reconnect(
    mode, error, simulator, sink
):
    neighbour = ExchangeFactory.create_collector(make_config(simulator, "ETH-USDT"))
    neighbour.sink = sink
    assert run(neighbour.start())
    peer = HostilePeer(mode)
    victim = ExchangeFactory.create_collector(
        ExchangeCollectorConfig(
            "okx",
            "BTC-USDT",
            [DataType.TRADE],
            custom_params={
                "public_ws_url": peer.url,
                "rest_url": "http://127.0.0.1:9",
                "max_message_bytes": LIMIT,
                "reconnect_delay": 0.1,
                "max_reconnect_attempts": 1000,
                "trade_backfill": 0,
            },
        )
    )
    rss_before = rss_bytes()
    starting = threading.Thread(target=lambda: run(victim.start()), daemon=True)
    starting.start()
    try:
        stored_before = wait_until(
            lambda: RawTrade.objects.filter(symbol="ETH-USDT").count(), 10, message="trades"
        )
        largest = 0

        def attacked_three_times() -> bool:
            nonlocal largest
            for link in list(victim._links):
                reader = getattr(link, "reader", None)
                if reader is not None:
                    largest = max(largest, reader.buffered)
            return victim.counters()["errors"] >= 3 and peer.connections >= 3

        wait_until(attacked_three_times, 30, 0.01, message="three errors and reconnects")
        assert error in victim.last_error
        assert largest <= LIMIT + 2 * CHUNK
        assert rss_bytes() - rss_before < 64 * 1024 * 1024
        # the neighbour kept collecting meanwhile
        wait_until(
            lambda: RawTrade.objects.filter(symbol="ETH-USDT").count() > stored_before + 20,
            10,
            message="the neighbour's trades",
        )
        assert neighbour.counters()["errors"] == 0
        assert neighbour.status == "running"
    finally:
        run(victim.stop(force=True))
        peer.close()
        starting.join(15)
        run(neighbour.stop())
