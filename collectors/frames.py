"""Reading WebSocket frames: ReadAheadSocket cuts server frames out of 64 KiB reads."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import websocket


class ReadAheadSocket:
    """A connected socket that reads 64 KiB at a time, and reads WebSocket frames from that.

    websocket-client does the handshake and sends; received frames are read here.
    websocket-client reads each frame with several exact-size recv() calls and builds
    objects around it; at tens of thousands of frames a second that costs more than
    parsing the messages (bench/ingest.py). Server frames are unmasked (RFC 6455 5.1),
    so a frame is a 2-10 byte header and its payload.
    """

    CHUNK = 65536

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    def recv(self, size: int) -> bytes:
        """Socket-style read, for the handshake."""
        if self._pos >= len(self._data):
            data = self._sock.recv(self.CHUNK)
            if not data:
                return b""
            self._data, self._pos = data, 0
        piece = self._data[self._pos : self._pos + size]
        self._pos += len(piece)
        return piece

    def _ensure(self, size: int) -> None:
        """Buffer `size` unread bytes; a timeout leaves what was read for the next call."""
        while len(self._data) - self._pos < size:
            chunk = self._sock.recv(self.CHUNK)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self._data, self._pos = self._data[self._pos :] + chunk, 0

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame; TimeoutError when none came in time."""
        self._ensure(2)
        first, second = self._data[self._pos], self._data[self._pos + 1]
        if first & 0x70 or second & 0x80:
            raise ConnectionError("protocol error: reserved bits or a masked server frame")
        length, header = second & 0x7F, 2
        if length == 126:
            self._ensure(4)
            length, header = int.from_bytes(self._data[self._pos + 2 : self._pos + 4]), 4
        elif length == 127:
            self._ensure(10)
            length, header = int.from_bytes(self._data[self._pos + 2 : self._pos + 10]), 10
        self._ensure(header + length)
        start = self._pos + header
        self._pos = start + length
        return bool(first & 0x80), first & 0x0F, self._data[start : self._pos]

    def read_message(self, ws: websocket.WebSocket) -> tuple[int, bytes]:
        """The next data message (text or binary) or close frame; answers pings itself."""
        while True:
            fin, opcode, payload = self.read_frame()
            if opcode == websocket.ABNF.OPCODE_PING:
                ws.pong(payload)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                return opcode, payload
            elif opcode == websocket.ABNF.OPCODE_CONT:
                if not self._fragment_opcode:
                    raise ConnectionError("protocol error: continuation without a start")
                self._fragments.append(payload)
                if fin:
                    message = b"".join(self._fragments)
                    opcode, self._fragment_opcode, self._fragments = self._fragment_opcode, 0, []
                    return opcode, message
            elif opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                if fin:
                    return opcode, payload
                self._fragment_opcode, self._fragments = opcode, [payload]
            elif opcode != websocket.ABNF.OPCODE_PONG:
                raise ConnectionError(f"protocol error: unknown opcode {opcode}")

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def open_socket(url: str, timeout: float) -> ReadAheadSocket:
    """A TCP (TLS for wss://) connection to the WebSocket URL's host."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    sock = socket.create_connection(
        (parts.hostname, parts.port or (443 if secure else 80)), timeout=timeout
    )
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if secure:
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
    return ReadAheadSocket(sock)
