"""Frame reader benchmark: the collectors' ReadAheadSocket against websocket-client's reader.

Prints, over a local socket pair (no exchange, no database):
- small frames (an OKX trade push, ~175 bytes) read per second by each reader;
- seconds to read one large frame of 5, 40 and 50 MB, which must grow linearly with the
  size (it grew quadratically before the reader was bounded: 0.03 s, 3.8 s, 13 s);
- what a peer announcing a 2**40-byte frame costs: the time to refuse it and the bytes
  buffered by then.

    .venv/bin/python bench/frames.py [--frames 200000]
"""

import argparse
import contextlib
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websocket

from collectors.frames import MessageTooLarge, ReadAheadSocket

TRADE = (
    b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
    b'"tradeId":"1700000000000123","px":"42219.9","sz":"0.00123","side":"buy",'
    b'"ts":"1700000000123","count":"1","source":"0"}]}'
)


def frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes([0x81, size]) + payload
    if size < 65536:
        return bytes([0x81, 126]) + size.to_bytes(2) + payload
    return bytes([0x81, 127]) + size.to_bytes(8) + payload


def feed(sock: socket.socket, data: bytes) -> threading.Thread:
    def send() -> None:
        with contextlib.suppress(OSError):  # the reader may close first
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def client(sock) -> websocket.WebSocket:
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.sock = sock
    ws.connected = True
    return ws


def small_frames(count: int, reader: str) -> float:
    ours, theirs = socket.socketpair()
    data = frame(TRADE) * count
    sender = feed(theirs, data)
    started = time.perf_counter()
    if reader == "own":
        read = ReadAheadSocket(ours, max_message_bytes=4 * 1024 * 1024)
        ws = client(read)
        for _ in range(count):
            read.read_message(ws)
    else:
        ws = client(ours)
        for _ in range(count):
            ws.recv_data_frame(True)
    elapsed = time.perf_counter() - started
    sender.join()
    ours.close()
    theirs.close()
    return count / elapsed


def large_frame(megabytes: int) -> float:
    ours, theirs = socket.socketpair()
    payload = b"x" * (megabytes * 1000 * 1000)
    sender = feed(theirs, frame(payload))
    read = ReadAheadSocket(ours, max_message_bytes=len(payload))
    started = time.perf_counter()
    _, _, got = read.read_frame()
    elapsed = time.perf_counter() - started
    assert len(got) == len(payload)
    sender.join()
    ours.close()
    theirs.close()
    return elapsed


def hostile_header() -> tuple[float, int]:
    ours, theirs = socket.socketpair()
    sender = feed(theirs, bytes([0x81, 127]) + (2**40).to_bytes(8) + b"x" * 10_000_000)
    read = ReadAheadSocket(ours)
    started = time.perf_counter()
    with contextlib.suppress(MessageTooLarge):
        read.read_frame()
    elapsed, buffered = time.perf_counter() - started, read.buffered
    ours.close()
    theirs.close()
    sender.join()
    return elapsed, buffered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    print(f"small frames ({len(TRADE)}-byte OKX trade pushes), read per second:")
    for reader in ("own", "websocket-client"):
        rates = sorted(small_frames(args.frames, reader) for _ in range(3))
        print(f"  {reader}: {rates[1]:,.0f} frames/s (median of 3)")
    print("one large frame, seconds to read:")
    for megabytes in (5, 40, 50):
        print(f"  {megabytes} MB: {large_frame(megabytes):.3f} s")
    elapsed, buffered = hostile_header()
    print(f"a 2**40-byte header refused in {elapsed * 1000:.2f} ms, {buffered} bytes buffered")


if __name__ == "__main__":
    main()
