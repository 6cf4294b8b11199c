"""A loopback TCP proxy for tests: forwards to a target until cut, like a network that fails.

with TcpProxy("127.0.0.1", 5432) as proxy:   # listens on 127.0.0.1:proxy.port
    proxy.cut()       # drop every connection; refuse new ones (or hold them: blackhole=True)
    proxy.stall()     # keep every connection open, but forward nothing either way
    proxy.restore()   # forward new connections again (and what a stall held back)
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.connections_accepted = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # both ends of every forwarded connection
        self._held: set[socket.socket] = set()  # accepted while blackholed, never answered
        self._cut = False
        self._blackhole = False
        self._closed = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._acceptor: threading.Thread | None = None

    def start(self) -> TcpProxy:
        listener = socket.create_server((self.host, 0))
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._acceptor.start()
        return self

    def cut(self, *, blackhole: bool = False) -> None:
        """Close every current connection; refuse new ones, or accept and never answer them."""
        with self._lock:
            self._cut = True
            self._blackhole = blackhole
            doomed, self._open = self._open, set()
        for sock in doomed:
            _close(sock)

    def stall(self) -> None:
        """Stop forwarding, like a server or network that hangs: connections stay open and
        new ones are accepted, but no byte goes through until restore()."""
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()
        with self._lock:
            self._cut = False
            held, self._held = self._held, set()
        for sock in held:
            _close(sock)

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            _close(self._listener)
        self.cut()
        self.restore()
        if self._acceptor is not None:
            self._acceptor.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._handle(client)

    def _handle(self, client: socket.socket) -> None:
        with self._lock:
            self.connections_accepted += 1
            if self._cut:
                if self._blackhole:
                    self._held.add(client)
                    return
                refused = True
            else:
                refused = False
        if refused:
            _close(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if self._cut:  # cut while we were connecting
                _close(client)
                _close(upstream)
                return
            self._open.update((client, upstream))
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
