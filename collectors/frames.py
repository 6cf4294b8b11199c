"""Reading WebSocket frames: ReadAheadSocket cuts server frames out of 64 KiB reads, bounded.

websocket-client does the handshake and sends; received frames are read here.
websocket-client reads each frame with several exact-size recv() calls and builds
objects around it; at tens of thousands of frames a second that costs more than
parsing the messages (bench/ingest.py --reader). It also buffers whatever a peer
announces: a frame header claiming 2**40 bytes, endless continuation frames or an
endless handshake answer grow its buffers without limit. Here every message (a frame, or
the fragments of one) is checked against `max_message_bytes` from its header, before its
bytes are buffered, and the handshake answer against MAX_HANDSHAKE_BYTES; reading costs
time linear in the bytes received. Server frames are unmasked (RFC 6455 5.1), so a frame
is a 2-10 byte header and its payload.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import websocket

from collectors.tls import check_url, exchange_ssl_context
from collectors.types import COLLECTOR_DEFAULTS

CHUNK = 65536
DEFAULT_MAX_MESSAGE_BYTES = COLLECTOR_DEFAULTS["max_message_bytes"]
MAX_HANDSHAKE_BYTES = 64 * 1024  # the HTTP answer to the upgrade request, headers and all
MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5

PING, PONG, CLOSE = (
    websocket.ABNF.OPCODE_PING,
    websocket.ABNF.OPCODE_PONG,
    websocket.ABNF.OPCODE_CLOSE,
)
TEXT, BINARY, CONT = (
    websocket.ABNF.OPCODE_TEXT,
    websocket.ABNF.OPCODE_BINARY,
    websocket.ABNF.OPCODE_CONT,
)


class MessageTooLarge(ConnectionError):
    """A peer announced a frame or message over the bound: the connection is closed."""


class ReadAheadSocket:
    """A connected socket that reads 64 KiB at a time, and reads WebSocket frames from that."""

    def __init__(
        self,
        sock: socket.socket,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        handshake_timeout: float = 10.0,
    ) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._pos = 0  # bytes of the buffer already handed out
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._fragment_opcode = 0
        self.max_message_bytes = max_message_bytes
        self._handshake_left = MAX_HANDSHAKE_BYTES
        self._handshake_deadline = time.monotonic() + handshake_timeout

    @property
    def buffered(self) -> int:
        """Bytes this reader holds: its read-ahead buffer and the fragments of a message."""
        return len(self._buffer) + self._fragments_size

    def recv(self, size: int) -> bytes:
        """Socket-style read, for websocket-client's handshake; bounded in bytes and time."""
        if time.monotonic() > self._handshake_deadline:
            raise TimeoutError("the handshake answer took too long")
        if self._pos >= len(self._buffer):
            data = self._sock.recv(CHUNK)
            if not data:
                return b""
            self._buffer[:] = data
            self._pos = 0
        size = min(size, len(self._buffer) - self._pos, self._handshake_left)
        if size <= 0:
            raise MessageTooLarge(f"handshake answer over {MAX_HANDSHAKE_BYTES} bytes")
        self._handshake_left -= size
        self._pos += size
        return bytes(self._buffer[self._pos - size : self._pos])

    def _ensure(self, size: int) -> None:
        """Buffer `size` unread bytes; a timeout leaves what was read for the next call.

        Read bytes are dropped from the front once, then chunks are appended: each byte is
        copied a bounded number of times, however large the frame.
        """
        if len(self._buffer) - self._pos >= size:
            return
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        while len(self._buffer) < size:
            chunk = self._sock.recv(CHUNK)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self._buffer += chunk

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame; TimeoutError when none came in time.

        MessageTooLarge when the frame, with the fragments before it, would exceed
        max_message_bytes: raised from the header, before the payload is read.
        """
        self._ensure(2)
        buffer, pos = self._buffer, self._pos
        first, second = buffer[pos], buffer[pos + 1]
        if first & 0x70 or second & 0x80:
            raise ConnectionError("protocol error: reserved bits or a masked server frame")
        fin, opcode = bool(first & 0x80), first & 0x0F
        length, header = second & 0x7F, 2
        if length == 126:
            self._ensure(4)
            length, header = int.from_bytes(self._buffer[self._pos + 2 : self._pos + 4]), 4
        elif length == 127:
            self._ensure(10)
            length, header = int.from_bytes(self._buffer[self._pos + 2 : self._pos + 10]), 10
        if opcode >= CLOSE:
            if length > MAX_CONTROL_PAYLOAD or not fin:
                raise ConnectionError("protocol error: a control frame too long or fragmented")
        elif opcode == CONT:
            if length > self.max_message_bytes - self._fragments_size:
                raise MessageTooLarge(
                    f"fragmented message over {self.max_message_bytes} bytes "
                    f"({self._fragments_size} buffered, a {length}-byte fragment next)"
                )
        elif length > self.max_message_bytes:
            raise MessageTooLarge(
                f"frame of {length} bytes over the limit of {self.max_message_bytes}"
            )
        self._ensure(header + length)
        start = self._pos + header
        self._pos = start + length
        return fin, opcode, bytes(self._buffer[start : self._pos])

    def read_message(self, ws: websocket.WebSocket) -> tuple[int, bytes]:
        """The next data message (text or binary), or control frame; a ping is answered with
        its pong before it is returned."""
        # The common case, cut out here without a call: a whole unfragmented text or binary
        # frame under 64 KiB, already buffered. Anything else takes the general path.
        buffer, pos = self._buffer, self._pos
        available = len(buffer) - pos
        if available >= 2 and not self._fragment_opcode:
            first, length = buffer[pos], buffer[pos + 1]
            if first == 0x81 or first == 0x82:  # FIN, no reserved bits, text or binary
                start = pos + 2
                if length == 126 and available >= 4:
                    length, start = (buffer[pos + 2] << 8) | buffer[pos + 3], pos + 4
                if length < 126 or start == pos + 4:  # unmasked, its length known
                    end = start + length
                    if end - pos <= available and length <= self.max_message_bytes:
                        self._pos = end
                        return first & 0x0F, bytes(buffer[start:end])
        return self._read_message(ws)

    def _read_message(self, ws: websocket.WebSocket) -> tuple[int, bytes]:
        while True:
            fin, opcode, payload = self.read_frame()
            if opcode == PING:
                ws.pong(payload)
                return opcode, payload
            if opcode in (CLOSE, PONG):
                return opcode, payload
            if opcode == CONT:
                if not self._fragment_opcode:
                    raise ConnectionError("protocol error: continuation without a start")
                self._fragments.append(payload)
                self._fragments_size += len(payload)
                if fin:
                    message = b"".join(self._fragments)
                    opcode = self._fragment_opcode
                    self._fragments, self._fragments_size, self._fragment_opcode = [], 0, 0
                    return opcode, message
            elif opcode in (TEXT, BINARY):
                if self._fragment_opcode:
                    raise ConnectionError("protocol error: a new message inside a fragmented one")
                if fin:
                    return opcode, payload
                self._fragment_opcode = opcode
                self._fragments, self._fragments_size = [payload], len(payload)
            else:
                raise ConnectionError(f"protocol error: unknown opcode {opcode}")

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def open_socket(
    url: str, timeout: float, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> ReadAheadSocket:
    """A TCP (TLS for wss://) connection to the WebSocket URL's host."""
    check_url(url)
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    sock = socket.create_connection(
        (parts.hostname, parts.port or (443 if secure else 80)), timeout=timeout
    )
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if secure:
        try:
            sock = exchange_ssl_context().wrap_socket(sock, server_hostname=parts.hostname)
        except BaseException:
            sock.close()
            raise
    return ReadAheadSocket(sock, max_message_bytes, handshake_timeout=timeout)
