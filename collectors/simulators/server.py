"""What every exchange simulator shares: a WebSocket and HTTP server on one loopback port.

The loopback guard, the life cycle (a background thread or the caller's event loop), the
clients with their write queues, the idle close, the faults every exchange can suffer
(drop, stall, malformed frames) and the control API (POST /_sim/fault, GET /_sim/stats).
An exchange's simulator (simulators.okx) subclasses SimulatorServer with its protocol
only: its paths, messages, REST endpoints and its own faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import logging
import re
import secrets
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

log = logging.getLogger(__name__)

COMMON_FAULTS = ("drop", "stall", "malformed")
MAX_FAULT_COUNT = 100_000  # a bigger burst would hold the event loop for seconds


def require_loopback(host: str) -> str:
    """The host, if it is a loopback address; the simulators never listen anywhere else."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"Refusing to listen on {host!r}: only loopback addresses are allowed")


@dataclass(slots=True, frozen=True)
class Fault:
    """One injected fault, as the control API and `SimulatorServer.fault` take it."""

    kind: str
    seconds: float | None = None
    count: int | None = None
    inst_id: str | None = None


def parse_fault(kind: Any, params: dict[str, Any], kinds: tuple[str, ...]) -> Fault:
    """Validate a fault request; ValueError says what is wrong with it."""
    if kind not in kinds:
        raise ValueError(f"Unknown fault kind {kind!r}; known: {', '.join(kinds)}")
    unknown = set(params) - {"seconds", "count", "inst_id"}
    if unknown:
        raise ValueError(f"Unknown fault parameters: {', '.join(sorted(unknown))}")
    seconds, count, inst_id = params.get("seconds"), params.get("count"), params.get("inst_id")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0
    ):
        raise ValueError(f"seconds must be a number >= 0, not {seconds!r}")
    if count is not None and (
        isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FAULT_COUNT
    ):
        raise ValueError(f"count must be an integer from 1 to {MAX_FAULT_COUNT}, not {count!r}")
    if inst_id is not None and not isinstance(inst_id, str):
        raise ValueError(f"inst_id must be a string, not {inst_id!r}")
    if kind in ("pause", "resume") and inst_id is None:
        raise ValueError(f"A {kind} fault needs an inst_id")
    return Fault(kind, None if seconds is None else float(seconds), count, inst_id)


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload)


def json_response(status: int, payload: Any) -> Response:
    body = dumps(payload)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


class Binary(bytes):
    """A frame to send as binary rather than text."""


class Connection(ServerConnection):
    """A server connection that also reads a request body (websockets reads none), so that
    the control API takes JSON in a POST on the same port as the WebSockets."""

    max_head = 16 * 1024
    max_body = 64 * 1024
    content_length = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r\n")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body = b""
        self._head: bytearray | None = bytearray()

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > self.max_head:
                self._release(bytes(self._head))
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        match = self.content_length.search(head)
        length = int(match.group(1)) if match else 0
        if length == 0 or length > self.max_body:
            self._release(head + rest)  # websockets answers or refuses it as usual
        elif len(rest) >= length:
            self.body = rest[:length]
            self._release(self.content_length.sub(b"", head) + rest[length:])

    def eof_received(self) -> None:
        if self._head is not None:
            self._release(bytes(self._head))
        super().eof_received()

    def _release(self, data: bytes) -> None:
        self._head = None
        if data:
            super().data_received(data)


class Client:
    """One WebSocket connection: its subscriptions and the frames waiting to be written."""

    def __init__(self, server: SimulatorServer, conn: Connection) -> None:
        self.server = server
        self.conn = conn
        self.path = urlsplit(conn.request.path).path
        self.conn_id = secrets.token_hex(4)
        self.subs: set[tuple[str, str]] = set()  # (channel or stream, instrument)
        self.out: list[bytes] = []
        self.scheduled = False
        self.closing = False
        self.last_activity = server.loop.time()

    def is_open(self) -> bool:
        return self.conn.protocol.state is State.OPEN and not self.conn.transport.is_closing()

    def send(self, frame: bytes) -> None:
        self.out.append(frame)
        self._schedule()

    def send_many(self, frames: list[bytes]) -> None:
        self.out.extend(frames)
        self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.server.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every waiting frame in one transport write: one write per loop turn, not
        one per message, is what lets a single process send tens of thousands a second."""
        self.scheduled = False
        if not self.out or self.server.stalled:
            return
        frames, self.out = self.out, []
        if not self.is_open():
            return
        conn = self.conn
        protocol = conn.protocol
        try:
            for frame in frames:
                if type(frame) is Binary:
                    protocol.send_binary(frame)
                else:
                    protocol.send_text(frame)
            chunks = protocol.data_to_send()
            conn.transport.write(b"".join(chunks))
            if not all(chunks):
                conn.transport.write_eof()
        except Exception:
            log.warning("%s: writing to %s failed", self.server.name, self.conn_id, exc_info=True)
            conn.transport.abort()
            return
        self.server.events["frames_sent"] += len(frames)
        self.last_activity = self.server.loop.time()

    async def drain(self) -> None:
        with contextlib.suppress(Exception):  # the connection is gone; its handler cleans up
            await self.conn.drain()


class SimulatorServer:
    """A loopback WebSocket + HTTP server with faults and a control API; `start()` runs it
    on a background thread, `serve_forever()` in the caller's event loop."""

    name: ClassVar[str] = "simulator"
    fault_kinds: ClassVar[tuple[str, ...]] = COMMON_FAULTS
    malformed_frames: ClassVar[tuple[bytes, ...]] = (b"{not json", Binary(b"\x00\xff\xfe"))
    idle_close_code: ClassVar[int] = 1000
    # Server-sent protocol pings (seconds between them), or None when the exchange sends none,
    # and the seconds a pong may take before the connection is closed
    protocol_ping_interval: ClassVar[float | None] = None
    protocol_ping_timeout: ClassVar[float | None] = 20.0
    max_message_size: ClassVar[int] = 64 * 1024  # the largest message a client may send

    def __init__(self, host: str = "127.0.0.1", port: int = 0, idle_timeout: float = 30.0):
        self.host = require_loopback(host)
        self.port = port
        self.idle_timeout = idle_timeout
        self.counts: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.stalled = False
        self._clients: set[Client] = set()
        self._stopping = asyncio.Event()
        self.unstalled = asyncio.Event()
        self.unstalled.set()
        self._connected = threading.Condition()
        self._accepted = 0
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._stall_end: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # what an exchange's simulator provides ---------------------------------------------

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Its own switches for `manage.py simulate_exchange` (an argparse parser)."""

    @classmethod
    def options_from(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the constructor from those switches."""
        return {}

    def describe(self) -> str:
        """One line saying where it listens, printed once it does."""
        return f"Simulating {self.name}: {self.rest_url}"

    def on_connect(self, client: Client) -> None:
        """A client connected (its request path and query are in client.conn.request)."""

    def on_message(self, client: Client, message: str | bytes) -> None:
        """A message a client sent."""

    def on_disconnect(self, client: Client) -> None:
        """A client is gone: forget its subscriptions."""

    def process_request(
        self, connection: Connection, request: Request, path: str, query: dict[str, list[str]]
    ) -> Response | None:
        """An HTTP request other than the control API: a REST answer, or None to let a
        WebSocket upgrade (or websockets' 426) go ahead."""
        return json_response(404, {"error": "Not Found"})

    def apply_fault(self, fault: Fault) -> None:
        """A fault of the exchange's own kinds (fault_kinds beyond COMMON_FAULTS)."""

    def check_fault(self, fault: Fault) -> None:
        """ValueError for a fault that names something this simulator does not have."""

    def on_shutdown(self) -> None:
        """The server is closing: stop the market's tasks."""

    def extra_stats(self) -> dict[str, Any]:
        return {}

    # running it ---------------------------------------------------------------------------

    def start(self) -> int:
        """Serve on a background thread with its own event loop; returns the port."""
        if self._thread is not None:
            raise RuntimeError("The simulator is already running")
        ready = threading.Event()

        def run() -> None:
            try:
                asyncio.run(self.serve_forever(on_ready=ready.set))
            except BaseException as exc:
                self._thread_error = exc
                log.exception("%s stopped on an error", self.name)
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._thread_error is not None:
            self._thread = None
            raise RuntimeError(f"The {self.name} did not start") from self._thread_error
        return self.port

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self.request_stop()
        thread.join(15)
        self._thread = None

    def request_stop(self) -> None:
        """Ask a running `serve_forever` to close its connections and return; thread-safe."""
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping.set)

    async def serve_forever(self, on_ready: Callable[[], Any] | None = None) -> None:
        """Serve until `request_stop()` (or `stop()`); `on_ready` runs once it listens."""
        self.loop = asyncio.get_running_loop()
        async with serve(
            self._serve_connection,
            self.host,
            self.port,
            create_connection=Connection,
            process_request=self._process_request,
            compression=None,
            ping_interval=self.protocol_ping_interval,
            ping_timeout=self.protocol_ping_timeout,
            close_timeout=2,
            max_size=self.max_message_size,
            write_limit=512 * 1024,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            if on_ready is not None:
                on_ready()
            try:
                await self._stopping.wait()
            finally:
                self.on_shutdown()
                self.unstalled.set()
                self.stalled = False
                for client in list(self._clients):
                    client.conn.transport.resume_reading()

    def wait_for_connections(self, n: int, timeout: float) -> None:
        """Block until `n` WebSocket connections have been accepted since the start (so a
        reconnect counts); TimeoutError after `timeout` seconds."""
        with self._connected:
            if not self._connected.wait_for(lambda: self._accepted >= n, timeout):
                raise TimeoutError(f"{self._accepted} connections after {timeout}s, wanted {n}")

    def in_loop(self, function: Callable[[], Any]) -> Any:
        """Run `function` on the simulator's loop and return its result."""
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed() or not loop.is_running():
            return function()
        try:
            if asyncio.get_running_loop() is loop:
                return function()
        except RuntimeError:
            pass

        async def call() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    # what tests and operators ask of it ----------------------------------------------------

    def fault(self, kind: str, **params: Any) -> None:
        """Inject a fault; the same kinds and parameters as POST /_sim/fault."""
        fault = parse_fault(kind, params, self.fault_kinds)
        self.check_fault(fault)
        self.in_loop(lambda: self._apply(fault))

    def stats(self) -> dict[str, Any]:
        return self.in_loop(self._stats)

    def _stats(self) -> dict[str, Any]:
        """Counters since the start, and a few gauges (open_connections, stalled, ...)."""
        events = self.events
        return {
            "connections": self._accepted,
            "open_connections": len(self._clients),
            "subscriptions": events["subscriptions"],
            "active_subscriptions": sum(len(client.subs) for client in self._clients),
            "messages_sent": dict(self.counts),  # per channel, counted once per connection
            "frames_sent": events["frames_sent"],  # every frame written, of any kind
            "pings_answered": events["pings_answered"],
            "bad_requests": events["bad_requests"],
            "idle_closes": events["idle_closes"],
            "rest_requests": events["rest_requests"],
            "faults": dict(self.faults),
            "stalled": self.stalled,
            **self.extra_stats(),
        }

    # faults -----------------------------------------------------------------------------

    def _apply(self, fault: Fault) -> None:
        self.faults[fault.kind] += 1
        log.info("%s: fault %s", self.name, fault)
        clients = list(self._clients)
        if fault.kind == "drop":
            for client in clients:
                client.conn.transport.abort()  # no close frame, as when a link dies
        elif fault.kind == "stall":
            self._stall(5.0 if fault.seconds is None else fault.seconds)
        elif fault.kind == "malformed":
            frames = self.malformed_frames
            for client in clients:
                if fault.inst_id is None or any(key[1] == fault.inst_id for key in client.subs):
                    sent = [frames[i % len(frames)] for i in range(fault.count or 3)]
                    client.send_many(sent)
                    self.counts["malformed"] += len(sent)
        else:
            self.apply_fault(fault)

    def _stall(self, seconds: float) -> None:
        self.stalled = True
        self.unstalled.clear()
        for client in self._clients:
            client.conn.transport.pause_reading()
        if self._stall_end is not None:
            self._stall_end.cancel()
        self._stall_end = self.loop.call_later(seconds, self._end_stall)

    def _end_stall(self) -> None:
        self.stalled = False
        self.unstalled.set()
        self._stall_end = None
        now = self.loop.time()
        for client in list(self._clients):
            client.last_activity = now
            client.conn.transport.resume_reading()
            client.flush()

    # connections ---------------------------------------------------------------------------

    def clients(self) -> list[Client]:
        return list(self._clients)

    async def _serve_connection(self, conn: Connection) -> None:
        client = Client(self, conn)
        self._clients.add(client)
        with self._connected:
            self._accepted += 1
            self._connected.notify_all()
        if self.stalled:
            conn.transport.pause_reading()
        watchdog = asyncio.create_task(self._close_when_idle(client))
        try:
            self.on_connect(client)
            async for message in conn:
                client.last_activity = self.loop.time()
                try:
                    self.on_message(client, message)
                except Exception:
                    log.exception("%s: handling a message from %s", self.name, client.conn_id)
        except ConnectionClosed:
            pass
        finally:
            if not client.closing:
                watchdog.cancel()
            self._clients.discard(client)
            self.on_disconnect(client)

    async def _close_when_idle(self, client: Client) -> None:
        """Close a connection when nothing has passed either way for idle_timeout seconds."""
        while True:
            await self.unstalled.wait()
            wait = client.last_activity + self.idle_timeout - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.events["idle_closes"] += 1
            log.info("%s: closing idle connection %s", self.name, client.conn_id)
            client.closing = True
            await client.conn.close(
                self.idle_close_code, f"No data received in {self.idle_timeout:g}s"
            )
            return

    # HTTP on the same port -----------------------------------------------------------------

    def _process_request(self, connection: Connection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/_sim/fault" and request.method == "POST":
            return self._control_fault(connection.body)
        if url.path == "/_sim/stats" and request.method == "GET":
            return json_response(200, self._stats())
        return self.process_request(connection, request, url.path, parse_qs(url.query))

    def _control_fault(self, body: bytes) -> Response:
        try:
            request = orjson.loads(body or b"null")
            if not isinstance(request, dict):
                raise ValueError("The body must be a JSON object with a 'kind'")
            params = dict(request)
            fault = parse_fault(params.pop("kind", None), params, self.fault_kinds)
            self.check_fault(fault)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            return json_response(400, {"ok": False, "error": str(exc)})
        self._apply(fault)
        return json_response(200, {"ok": True, "fault": fault.kind})


class MarketFeed:
    """One instrument's feed in a simulator: its subscribers per channel, and the tasks that
    make its trades and pushes. The market moves only while someone listens, and `linger`
    seconds after (an exchange trades whether anyone listens or not; what a reconnecting
    client missed comes from REST). An exchange's market adds emit_trades (and
    trade_clients, for the flat-out rate) and _run_pushes."""

    def __init__(self, sim: Any, inst_id: str) -> None:
        self.sim = sim
        self.inst_id = inst_id
        self.subs: dict[str, set[Client]] = defaultdict(set)
        self.paused = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.tasks: list[asyncio.Task] = []
        self.linger_end: asyncio.TimerHandle | None = None

    def emit_trades(self, count: int) -> None:
        raise NotImplementedError

    def trade_clients(self) -> set[Client]:
        raise NotImplementedError

    async def _run_pushes(self) -> None:
        raise NotImplementedError

    def activate(self) -> None:
        if self.linger_end is not None:
            self.linger_end.cancel()
            self.linger_end = None
        if not self.tasks:
            self.tasks = [asyncio.create_task(run) for run in self.runs()]
            for task in self.tasks:
                task.add_done_callback(self._log_failure)

    def runs(self) -> list[Coroutine]:
        """What runs while the market is active: its trades and pushes, and whatever else an
        exchange's market adds."""
        return [self._run_trades(), self._run_pushes()]

    def _log_failure(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s: %s stopped on an error", self.sim.name, self.inst_id, exc_info=task.exception()
            )

    def deactivate_if_idle(self) -> None:
        if any(self.subs.values()) or self.linger_end is not None:
            return
        if self.tasks and self.sim.linger > 0:
            self.linger_end = self.sim.loop.call_later(self.sim.linger, self._stop_if_idle)
        else:
            self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        self.linger_end = None
        if not any(self.subs.values()):
            for task in self.tasks:
                task.cancel()
            self.tasks = []

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self.resumed.clear()
        else:
            self.resumed.set()

    async def _ready(self) -> bool:
        """Wait out a stall or a pause; True if there was anything to wait for."""
        waited = False
        while self.sim.stalled or self.paused:
            waited = True
            await self.sim.unstalled.wait()
            await self.resumed.wait()
        return waited

    async def _run_trades(self) -> None:
        loop = self.sim.loop
        rate = self.sim.rate
        if rate <= 0:
            await self._run_flat_out()
            return
        interval = 1.0 / rate
        due = loop.time()
        while True:
            if await self._ready():
                due = loop.time()
            now = loop.time()
            if now - due > 1.0:
                due = now  # fell behind (a slow loop): carry on, but do not burst
            if now >= due:
                count = int((now - due) / interval) + 1
                self.emit_trades(count)
                due += count * interval
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _run_flat_out(self) -> None:
        """Trades as fast as the subscribers take them (rate 0, for throughput benchmarks)."""
        while True:
            await self._ready()
            self.emit_trades(100)
            for client in list(self.trade_clients()):
                await client.drain()
            await asyncio.sleep(0)
