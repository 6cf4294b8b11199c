"""Outage benchmark: a database cut with a full spill directory, under a steady trade flow.

The OKX simulator (own process) sends trades at --rate a second per instrument; `manage.py
collect` (own process) stores them through a TCP proxy to PostgreSQL, its spill directory
on a 1 MB tmpfs (mounted here; as a non-root user, a read-only directory instead). After
--warmup seconds the proxy cuts the database for --cut seconds; the spill directory fills
up, the collector stops reading and drops its connection, and after the database is back
the REST gap-fill of each reconnect fetches what the exchange still has. Then the
instruments are paused, the collector catches up and is stopped.

Prints, per instrument, with trade ids (the simulator's are consecutive) from the first
one stored (the simulator makes trades only once a client subscribed) to the last one
generated:
  generated   trades the exchange made in that range
  sent        trades it wrote to the collector's WebSocket
  stored      trades in raw_trades
  gap-filled  data points the collector had beyond the messages it received (the
              simulator sends one trade a message): fetched over REST by a gap-fill
  lost        generated but not stored
and the collect command's own summary, storage line and exit code.

The simulator keeps buffering for a client that stopped reading, so by default nothing
needs a gap-fill; --exchange-drops has it drop the connection halfway through the cut,
as a real exchange drops a slow client, and the gap-fill (OKX: the recent trades and up
to 20 pages of 100 older ones, TRADE_BACKFILL_PAGES) fetches what it can.

    .venv/bin/python bench/outage.py [--rate 3000] [--cut 60] [--instruments 1]

Uses (and drops) its own database, tcp_bench_outage (BENCH_DATABASE_NAME), on the
PostgreSQL server at BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import SERVER, drop_database, recreate_database, use_database  # noqa: E402
from simulated import Simulator, symbol  # noqa: E402

DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "tcp_bench_outage")
use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from tcp_proxy import TcpProxy  # noqa: E402


def rest(simulator: Simulator, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{simulator.rest_url}{path}", data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def newest_trade_id(simulator: Simulator, inst_id: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        answer = rest(simulator, f"/api/v5/market/trades?instId={inst_id}&limit=1")
        if answer["data"]:
            return int(answer["data"][0]["tradeId"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"the simulator made no {inst_id} trade in 30 s")
        time.sleep(0.2)


@contextlib.contextmanager
def spill_directory():
    """A 1 MB tmpfs; a read-only directory where mounting is not allowed."""
    with tempfile.TemporaryDirectory(prefix="outage-spill-") as directory:
        mounted = False
        if os.geteuid() == 0:
            command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", directory]
            mounted = subprocess.run(command, check=False).returncode == 0
        if mounted:
            kind = "1 MB tmpfs"
        else:
            os.chmod(directory, 0o500)
            kind = "read-only directory"
        try:
            yield Path(directory), kind
        finally:
            if mounted:
                subprocess.run(["umount", "-l", directory], check=False)
            else:
                os.chmod(directory, 0o700)


def collect_config(simulator: Simulator, instruments: list[str], path: Path) -> Path:
    config = {
        "exchange": "okx",
        "connection": {
            "public_ws_url": simulator.public_ws_url,
            "rest_url": simulator.rest_url,
            "reconnect_delay": 1.0,
        },
        "data_collection": {"buffer_size": 5000},
        "trading_pairs": [{"symbol": inst_id, "data_types": ["trade"]} for inst_id in instruments],
    }
    path.write_text(json.dumps(config))
    return path


def first_stored_id(inst_id: str) -> int:
    """The simulator makes trades only once someone subscribed: the first is the first."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT min(trade_id::numeric) FROM raw_trades WHERE symbol = %s", [inst_id])
        return int(cursor.fetchone()[0])


def stored_count(instruments: list[str]) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM raw_trades WHERE symbol = ANY(%s)", [instruments])
        return cursor.fetchone()[0]


def wait_until_quiet(instruments: list[str], quiet: float, limit: float = 300) -> None:
    """Until nothing was stored for `quiet` seconds: the collector has caught up."""
    deadline = time.monotonic() + limit
    count, since = stored_count(instruments), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(1)
        now = stored_count(instruments)
        if now != count:
            count, since = now, time.monotonic()


def stored_ids(inst_id: str, first: int, last: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT trade_id) FROM raw_trades WHERE symbol = %s"
            " AND trade_id::numeric BETWEEN %s AND %s",
            [inst_id, first, last],
        )
        return cursor.fetchone()[0]


def run(args) -> None:
    instruments = [symbol("okx", base) for base in ("BTC", "ETH", "SOL")[: args.instruments]]
    server = urlsplit(SERVER)
    host, port, user = server.hostname or "127.0.0.1", server.port or 5432, server.username
    with (
        Simulator(args.rate, instruments) as simulator,
        TcpProxy(host, port) as proxy,
        spill_directory() as (spill, kind),
        tempfile.TemporaryDirectory() as work,
    ):
        print(
            f"{len(instruments)} instruments at {args.rate:g} trades/s each; spill directory:"
            f" {kind}; memory bound {args.memory_rows:,} rows; database cut for {args.cut:g}s"
        )
        config = collect_config(simulator, instruments, Path(work) / "okx.json")
        sent_before = rest(simulator, "/_sim/stats")["trades_sent"]
        env = dict(
            os.environ,
            DATABASE_URL=f"postgresql://{user}@127.0.0.1:{proxy.port}/{DB_NAME}",
            COLLECTOR_SPILL_DIR=str(spill),
            COLLECTOR_MAX_MEMORY_ROWS=str(args.memory_rows),
            DB_POOL="0",
        )
        collect = subprocess.Popen(
            [sys.executable, "manage.py", "collect", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(args.warmup)
            print(f"cutting the database for {args.cut:g}s")
            proxy.cut()
            if args.exchange_drops:
                time.sleep(args.cut / 2)
                print("the exchange drops the connection (its client stopped reading)")
                rest(simulator, "/_sim/fault", {"kind": "drop"})
                time.sleep(args.cut / 2)
            else:
                time.sleep(args.cut)
            proxy.restore()
            print(f"database back; {args.after:g}s more, then the instruments pause")
            time.sleep(args.after)
            for inst_id in instruments:
                rest(simulator, "/_sim/fault", {"kind": "pause", "inst_id": inst_id})
            last = {inst_id: newest_trade_id(simulator, inst_id) for inst_id in instruments}
            print("paused; waiting until nothing more is stored")
            wait_until_quiet(instruments, args.settle)
            collect.send_signal(signal.SIGTERM)
            output, _ = collect.communicate(timeout=120)
        finally:
            if collect.poll() is None:
                collect.kill()
                collect.wait()
        sent_after = rest(simulator, "/_sim/stats")["trades_sent"]
    print(f"collect exit code {collect.returncode}; its summary:")
    telling = ("not reading", "room again", "cannot spill", "could not be kept", "dropping")
    for line in output.splitlines():
        if not line[:4].isdigit() and not line[:1].isspace():  # not a log line
            print(f"  {line}")
        elif any(words in line for words in telling):
            print(f"  log: {line[:300]}")
    pauses = sum("not reading from the exchange" in line for line in output.splitlines())
    drops = sum("dropping the connection" in line for line in output.splitlines())
    spill_failures = sum("cannot spill" in line for line in output.splitlines())
    print(
        f"log: {spill_failures} spill failure lines, {pauses} receive pauses,"
        f" {drops} connections dropped for storage"
    )
    first = {inst_id: first_stored_id(inst_id) for inst_id in instruments}
    counts = {
        match[1]: max(0, int(match[3]) - int(match[2]))
        for match in re.finditer(r"^okx:(\S+): (\d+) messages, (\d+) data points", output, re.M)
    }
    for inst_id in instruments:
        generated = last[inst_id] - first[inst_id] + 1
        sent = sent_after[inst_id] - sent_before.get(inst_id, 0)
        stored = stored_ids(inst_id, first[inst_id], last[inst_id])
        print(
            f"{inst_id}: generated {generated:,}, sent {sent:,}, stored {stored:,},"
            f" gap-filled {counts.get(inst_id, 0):,}, lost {generated - stored:,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=3000.0, help="Trades/s per instrument.")
    parser.add_argument("--instruments", type=int, choices=[1, 2, 3], default=1)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--cut", type=float, default=60.0)
    parser.add_argument("--after", type=float, default=30.0)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="Seconds without a new row: caught up."
    )
    parser.add_argument(
        "--exchange-drops",
        action="store_true",
        help="Halfway through the cut, the simulator drops its connections, as an exchange"
        " drops a client that stopped reading (the simulator itself keeps buffering).",
    )
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=50_000,
        help="COLLECTOR_MAX_MEMORY_ROWS of the collect process (the default is 200,000).",
    )
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
