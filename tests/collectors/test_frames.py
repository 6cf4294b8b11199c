"""The collector's WebSocket frame reader, over a real socket pair."""

import socket

import pytest
import websocket

from collectors.frames import MAX_HANDSHAKE_BYTES, MessageTooLarge, ReadAheadSocket

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, first_extra: int = 0) -> bytes:
    first = (0x80 if fin else 0) | opcode | first_extra
    size = len(payload)
    if size < 126:
        header = bytes([first, size])
    elif size < 65536:
        header = bytes([first, 126]) + size.to_bytes(2)
    else:
        header = bytes([first, 127]) + size.to_bytes(8)
    return header + payload


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.settimeout(0.5)
    yield ReadAheadSocket(ours), theirs
    ours.close()
    theirs.close()


def client_for(reader: ReadAheadSocket) -> websocket.WebSocket:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.sock = reader
    ws.connected = True
    return ws


def test_it_reads_frames_of_every_length_encoding(pair):
    reader, theirs = pair
    payloads = [b"pong", b"x" * 200, b"y" * 70_000]
    theirs.sendall(b"".join(frame(TEXT, p) for p in payloads))
    ws = client_for(reader)
    assert [reader.read_message(ws) for _ in payloads] == [(TEXT, p) for p in payloads]


def test_it_joins_a_fragmented_message(pair):
    reader, theirs = pair
    theirs.sendall(
        frame(TEXT, b'{"a":', fin=False) + frame(CONT, b"1", fin=False) + frame(CONT, b"}")
    )
    assert reader.read_message(client_for(reader)) == (TEXT, b'{"a":1}')


def test_it_answers_a_ping_and_hands_pongs_on(pair):
    reader, theirs = pair
    theirs.sendall(frame(PING, b"hi") + frame(PONG, b"") + frame(BINARY, b"data"))
    assert reader.read_message(client_for(reader)) == (PING, b"hi")  # answered already
    assert reader.read_message(client_for(reader)) == (PONG, b"")
    assert reader.read_message(client_for(reader)) == (BINARY, b"data")
    answer = theirs.recv(100)
    assert answer[0] == 0x80 | PONG
    mask = answer[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(answer[6:])) == b"hi"


def test_a_close_frame_is_returned(pair):
    reader, theirs = pair
    theirs.sendall(frame(CLOSE, (1000).to_bytes(2)))
    assert reader.read_message(client_for(reader))[0] == CLOSE


def test_a_timeout_in_the_middle_of_a_frame_loses_nothing(pair):
    reader, theirs = pair
    whole = frame(TEXT, b"z" * 1000)
    theirs.sendall(whole[:300])
    with pytest.raises(TimeoutError):
        reader.read_message(client_for(reader))
    theirs.sendall(whole[300:])
    assert reader.read_message(client_for(reader)) == (TEXT, b"z" * 1000)


@pytest.mark.parametrize(
    "bad",
    [
        frame(TEXT, b"x", first_extra=0x40),  # a reserved bit
        bytes([0x81, 0x81]) + b"mask" + b"x",  # a masked server frame
        frame(CONT, b"x"),  # a continuation without a start
        frame(0x3, b"x"),  # an unknown opcode
    ],
)
def test_a_protocol_error_ends_the_connection(pair, bad):
    reader, theirs = pair
    theirs.sendall(bad)
    with pytest.raises(ConnectionError, match="protocol error"):
        reader.read_message(client_for(reader))


def test_a_closed_socket_is_reported(pair):
    reader, theirs = pair
    theirs.sendall(frame(TEXT, b"abc")[:3])
    theirs.close()
    with pytest.raises(ConnectionError, match="closed"):
        reader.read_message(client_for(reader))


def test_a_frame_over_the_bound_is_refused_from_its_header_before_it_is_buffered():
    ours, theirs = socket.socketpair()
    ours.settimeout(0.5)
    reader = ReadAheadSocket(ours, max_message_bytes=1000)
    theirs.sendall(bytes([0x81, 127]) + (2**40).to_bytes(8) + b"x" * 5000)
    with pytest.raises(MessageTooLarge, match=f"frame of {2**40} bytes over the limit of 1000"):
        reader.read_message(client_for(reader))
    assert reader.buffered <= 2 + 8 + 5000  # what one read brought, not what was announced
    ours.close()
    theirs.close()


def test_fragments_are_bounded_together_not_one_by_one():
    ours, theirs = socket.socketpair()
    ours.settimeout(0.5)
    reader = ReadAheadSocket(ours, max_message_bytes=1000)
    theirs.sendall(frame(TEXT, b"a" * 400, fin=False) + frame(CONT, b"b" * 400, fin=False))
    theirs.sendall(frame(CONT, b"c" * 400, fin=False))
    with pytest.raises(MessageTooLarge, match="fragmented message over 1000 bytes"):
        reader.read_message(client_for(reader))
    ours.close()
    theirs.close()


def test_a_message_at_the_bound_is_read_whole():
    ours, theirs = socket.socketpair()
    ours.settimeout(0.5)
    reader = ReadAheadSocket(ours, max_message_bytes=1000)
    theirs.sendall(frame(TEXT, b"a" * 600, fin=False) + frame(CONT, b"b" * 400))
    assert reader.read_message(client_for(reader)) == (TEXT, b"a" * 600 + b"b" * 400)
    ours.close()
    theirs.close()


def test_a_control_frame_longer_than_125_bytes_is_a_protocol_error(pair):
    reader, theirs = pair
    theirs.sendall(frame(PING, b"p" * 126))
    with pytest.raises(ConnectionError, match="control frame"):
        reader.read_message(client_for(reader))


def test_an_endless_handshake_answer_is_cut_at_its_bound(pair):
    reader, theirs = pair
    theirs.sendall(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X: " + b"a" * MAX_HANDSHAKE_BYTES)
    with pytest.raises(MessageTooLarge, match="handshake answer over"):
        while True:
            reader.recv(1)
