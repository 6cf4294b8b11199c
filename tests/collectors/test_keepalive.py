"""Keepalive is the adapter's: text pings (OKX), RFC 6455 ping frames, or the server's pings.

Each test runs a real WebSocket server on loopback (the websockets library, which answers
ping frames with pong frames and, given a ping interval, pings and closes a connection
whose pong does not come back in time, as Binance does).
"""

import asyncio
import re
import threading
from typing import ClassVar

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from collectors.collector import BaseDataCollector
from collectors.exchanges.base import (
    Endpoint,
    ExchangeAdapter,
    ExchangeSession,
    Handled,
    Keepalive,
)
from collectors.types import DataType, ExchangeCollectorConfig
from tests.helpers import run, wait_until


class QuietSession(ExchangeSession):
    def subscribe_frames(self) -> list[str]:
        return ["subscribe"]

    def handle(self, frame: str | bytes) -> Handled:
        return Handled(subscribed=frame in ("ack", b"ack"))


class QuietAdapter(ExchangeAdapter):
    """An exchange that acknowledges the subscription and then says nothing."""

    name: ClassVar[str] = "quiet"
    channel_names: ClassVar[dict] = {"trades": frozenset({"trades"})}
    channel_roles: ClassVar[dict] = {"trades": DataType.TRADE}
    default_channels: ClassVar[dict] = {"trades": "trades"}
    symbol_pattern: ClassVar[re.Pattern] = re.compile(r".+")
    default_public_ws_url: ClassVar[str] = ""

    def endpoints(self) -> list[Endpoint]:
        url = self.config.custom_params["public_ws_url"]
        return [Endpoint("public", url, ({"channel": "trades"},))]

    def session(self, endpoint: Endpoint) -> ExchangeSession:
        return QuietSession()


class ServerPings(QuietAdapter):
    keepalive = Keepalive.server_pings()


class ProtocolPings(QuietAdapter):
    keepalive = Keepalive.protocol_frames()


class QuietServer:
    """Acknowledges a subscription, then only keeps the connection (and pings, if asked)."""

    def __init__(
        self, ping_interval: float | None, ping_timeout: float | None = None, frozen: bool = False
    ) -> None:
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.frozen = frozen  # stops reading after the acknowledgement: no pong ever comes
        self.connections = 0
        self.closed = 0
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.serve()), daemon=True)

    async def serve(self) -> None:
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        async with serve(
            self.connection,
            "127.0.0.1",
            0,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        ) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            self.ready.set()
            await self.stopping.wait()

    async def connection(self, ws) -> None:
        self.connections += 1
        try:
            async for message in ws:
                if message == "subscribe":
                    await ws.send("ack")
                    if self.frozen:
                        ws.transport.pause_reading()
        except ConnectionClosed:
            pass  # the collector gave up on it, or the test ended
        finally:
            self.closed += 1

    def __enter__(self) -> "QuietServer":
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


def collector_for(adapter_type: type[QuietAdapter], url: str) -> BaseDataCollector:
    config = ExchangeCollectorConfig(
        "quiet",
        "X",
        [DataType.TRADE],
        custom_params={
            "public_ws_url": url,
            "ping_interval": 0.3,
            "pong_timeout": 1.0,
            "reconnect_delay": 0.1,
        },
    )
    return BaseDataCollector(config, adapter_type(config))


def test_a_server_that_pings_with_frames_gets_its_pongs_and_keeps_the_connection():
    with QuietServer(ping_interval=0.2, ping_timeout=0.5) as server:
        collector = collector_for(ServerPings, server.url)
        assert run(collector.start())
        # each unanswered ping would close the connection within half a second
        wait_until(lambda: collector.counters()["pings_answered"] >= 8, 10, message="pings")
        counters = collector.counters()
        run(collector.stop(force=True))

    assert (server.connections, counters["errors"]) == (1, 0), collector.last_error
    assert counters["pings_sent"] == 0  # the server pings: a quiet link is normal


def test_protocol_pings_sent_by_the_link_are_answered_by_pong_frames():
    with QuietServer(ping_interval=None) as server:
        collector = collector_for(ProtocolPings, server.url)
        assert run(collector.start())
        wait_until(lambda: collector.counters()["pongs"] >= 3, 10, message="three pongs")
        counters = collector.counters()
        run(collector.stop(force=True))

    assert counters["errors"] == 0, collector.last_error
    assert server.connections == 1
    assert counters["pings_sent"] >= counters["pongs"] >= 3


def test_a_pong_that_never_comes_ends_the_connection():
    with QuietServer(ping_interval=None, frozen=True) as server:
        collector = collector_for(ProtocolPings, server.url)
        assert run(collector.start())
        wait_until(lambda: "no pong within" in collector.last_error, 10, message="no pong")
        wait_until(lambda: server.connections >= 2, 10, message="a reconnect")
        run(collector.stop(force=True))
