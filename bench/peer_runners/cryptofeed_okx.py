"""cryptofeed's OKX trades feed and its PostgreSQL backend (TradePostgres), pointed at the
project's OKX simulator on loopback. bench/peers.py runs this file with the Python of
cryptofeed's own virtual environment; it is not part of the project and imports none of it.

What this process changes in cryptofeed (2.4.1) to reach the simulator, and nothing else:
- the OKX feed's public WebSocket address becomes the simulator's (ws://127.0.0.1:P/ws/v5/public);
  its private one is dropped; its REST addresses become the simulator's (none is called);
- the instrument list, which cryptofeed downloads at start-up from OKX's REST
  /api/v5/public/instruments (one request per instrument type) and the simulator does not
  serve, is set from one local record per instrument, as that endpoint would give it;
- cryptofeed accepts only wss:// addresses and the simulator has no TLS: its WebSocket
  connection class is replaced by a subclass that takes a ws:// address;
- with --max-queue N, websockets' receive queue is bounded at N frames (cryptofeed ships
  max_queue=None, no bound), through the endpoint's options, which cryptofeed passes to
  websockets' connect();
- it makes the event loop itself: cryptofeed's FeedHandler.run() asks for the current one, and
  the uvloop that pip installs with it (0.23 here) no longer makes one on demand.
It refuses to start unless every address the OKX feed holds is a loopback address and
PostgreSQL is on loopback or a Unix socket.

With --latency-out FILE it notes, for every batch the backend writes, time.time() once the
transaction has committed, and writes [[commit time, commit time - the trade's exchange
timestamp], ...] to FILE when stopped (SIGTERM or SIGINT, or after --duration seconds).
"""

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptofeed import FeedHandler
from cryptofeed import feed as feed_module
from cryptofeed.backends.postgres import TradePostgres
from cryptofeed.connection import WSAsyncConn
from cryptofeed.defines import TRADES
from cryptofeed.exchanges import OKX
from cryptofeed.symbols import Symbols


class PlainWebSocket(WSAsyncConn):
    """cryptofeed's WebSocket connection, taking the simulator's plain ws:// address."""

    def __init__(self, address: str, *args, **kwargs) -> None:
        super().__init__("wss://" + address.removeprefix("ws://"), *args, **kwargs)
        self.address = address


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def point_okx_at(ws_url: str, rest_url: str, max_queue: int | None) -> None:
    public = OKX.websocket_endpoints[0]
    options = dict(public.options)
    if max_queue is not None:
        options["max_queue"] = max_queue
    OKX.websocket_endpoints = [dataclasses.replace(public, address=ws_url, options=options)]
    OKX.rest_endpoints = [
        dataclasses.replace(endpoint, address=rest_url, sandbox=None)
        for endpoint in OKX.rest_endpoints
    ]
    OKX.api = f"{rest_url}/api/v5/"
    feed_module.WSAsyncConn = PlainWebSocket


def require_loopback_only() -> None:
    addresses = [OKX.api]
    for endpoint in [*OKX.websocket_endpoints, *OKX.rest_endpoints]:
        addresses += [endpoint.address, endpoint.sandbox]
    for address in filter(None, addresses):
        if not is_loopback(urlsplit(address).hostname):
            raise SystemExit(f"refusing to start: {address} is not a loopback address")


def set_instruments(symbols: list[str]) -> None:
    """The instrument list as OKX's /api/v5/public/instruments?instType=SPOT gives it."""
    records = []
    for symbol in symbols:
        base, quote = symbol.split("-")
        records.append(
            {
                "instType": "SPOT",
                "instId": symbol,
                "baseCcy": base,
                "quoteCcy": quote,
                "tickSz": "0.1",
            }
        )
    mapping, info = OKX._parse_symbol_data([{"code": "0", "data": records}])
    Symbols.set(OKX.id, mapping, info)


def note_commit_times(records: list) -> None:
    write_batch = TradePostgres.write_batch

    async def write_batch_noting_commit_time(self, updates: list) -> None:
        await write_batch(self, updates)
        committed = time.time()
        records.extend((committed, committed - update[4]["timestamp"]) for update in updates)

    TradePostgres.write_batch = write_batch_noting_commit_time


def wait_for_port(url: str, timeout: float = 30) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((parts.hostname, parts.port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws-url", required=True)
    parser.add_argument("--rest-url", required=True)
    parser.add_argument("--symbol", default="BTC-USDT")
    parser.add_argument("--max-queue", type=int, default=None)
    parser.add_argument("--pg-host", default="127.0.0.1", help="An address or a socket directory.")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")  # the password: PGPASSWORD
    parser.add_argument("--pg-database", required=True)
    parser.add_argument("--latency-out", type=Path)
    parser.add_argument("--duration", type=float, help="Stop after this many seconds.")
    parser.add_argument("--log", type=Path, default=Path("cryptofeed.log"))
    args = parser.parse_args()

    point_okx_at(args.ws_url, args.rest_url, args.max_queue)
    require_loopback_only()
    if not (args.pg_host.startswith("/") or is_loopback(args.pg_host)):
        raise SystemExit(f"refusing to start: PostgreSQL at {args.pg_host} is not on loopback")
    set_instruments([args.symbol])
    records: list = []
    if args.latency_out:
        note_commit_times(records)
    wait_for_port(args.ws_url)

    log = {"filename": str(args.log), "level": "WARNING"}
    handler = FeedHandler(config={"uvloop": True, "log": log})
    backend = TradePostgres(
        host=args.pg_host, port=args.pg_port, user=args.pg_user, db=args.pg_database
    )
    handler.add_feed(OKX(channels=[TRADES], symbols=[args.symbol], callbacks={TRADES: backend}))

    def stop(*_) -> None:
        raise SystemExit

    loop = asyncio.new_event_loop()  # uvloop's policy no longer makes one on demand
    asyncio.set_event_loop(loop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    if args.duration:
        loop.call_later(args.duration, stop)
    handler.run(install_signal_handlers=False)
    if args.latency_out:
        args.latency_out.write_text(json.dumps(records))


if __name__ == "__main__":
    main()
