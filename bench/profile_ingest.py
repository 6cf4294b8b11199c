"""Where one collector's time goes per trade message: receive -> parse -> validate -> sink.

Two parts:

- stages: each stage of the path run alone over the same OKX trade frames (shaped as the
  simulator writes them, one trade each, stamped as if sent at 30,000 a second, so about
  30 share each millisecond), timed in CPU time of the thread doing it (time.thread_time), best
  of --repeat runs, so other processes on a shared machine change the figures little:
  frame read (ReadAheadSocket over a socket pair), JSON parse, the session's handle (parse,
  bounds, points; the bounds and the point check also alone), the link's dispatch (dedupe,
  deliver), building rows, the sink's enqueue, and writing 5,000-row batches to PostgreSQL
  as the sink does (COPY straight into raw_trades) and as it does after meeting a stored
  trade (through the staging table): CPU of this process and wall time.
- live: the OKX simulator (own process) at full speed -> one collector -> sink ->
  PostgreSQL, as bench/ingest.py runs it: trades/s stored per window (best and median of
  --windows), and the CPU seconds per stored trade of the link thread, the sink's writer
  thread, the whole process and the simulator's process, read from /proc. --cprofile also
  profiles both threads in their CPU time and sums the profile by stage (cProfile's own
  cost inflates small calls: read the shares, not the absolute times).

    .venv/bin/python bench/profile_ingest.py [--only stages|live] [--messages 50000]
        [--repeat 5] [--windows 3] [--seconds 10] [--cprofile]

On a machine shared with other work the live rate moves with the load; the stage times
and the CPU per stored trade are the figures to compare between versions.

Uses (and drops) its own database, tcp_bench_profile, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import contextlib
import cProfile
import os
import pstats
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import drop_database, recreate_database, use_database  # noqa: E402
from frames import client, feed, frame  # noqa: E402
from simulated import Simulator, collecting, full_speed_sink, symbol  # noqa: E402

DB_NAME = "tcp_bench_profile"
use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402

from collectors.frames import ReadAheadSocket  # noqa: E402

SYMBOL = "BTC-USDT"
COPY_BATCH = 5000
STAMP_RATE = 30_000  # trades a second the stage frames are stamped at (full speed)


def trade_frames(count: int, rate: int = STAMP_RATE) -> list[bytes]:
    """OKX trade pushes as the simulator writes them, one trade each, stamped with the
    millisecond it would send them in at `rate` a second (ending now)."""
    now = time.time_ns() // 1_000_000
    frames = []
    for n in range(count):
        px = f"{42000 + (n * 7919) % 5000}.{n % 10}"
        sz = f"0.{(n * 104729) % 99999 + 1:05d}"
        side = "buy" if n % 3 else "sell"
        frames.append(
            f'{{"arg":{{"channel":"trades","instId":"{SYMBOL}"}},"data":[{{"instId":"{SYMBOL}",'
            f'"tradeId":"{1_700_000_000 + n}","px":"{px}","sz":"{sz}","side":"{side}",'
            f'"ts":"{now - (count - n) * 1000 // rate}","count":"1","source":"0"}}]}}'.encode()
        )
    return frames


def collector_and_link():
    """A collector for SYMBOL and a link of its public endpoint, neither started."""
    from simulated import collector_config

    from collectors.factory import ExchangeFactory
    from collectors.link import Link

    collector = ExchangeFactory.create_collector(collector_config(1, SYMBOL))
    endpoint = collector.adapter.endpoints()[0]
    link = Link(collector, endpoint)
    link.session = collector.adapter.session(endpoint)
    return collector, link


def best_cpu(run: Callable[[], None], repeat: int) -> float:
    """The least CPU time of this thread one run of `run` took, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        run()
        times.append(time.thread_time() - started)
    return min(times)


def read_frames(frames: list[bytes]) -> float:
    """Thread CPU seconds to read the frames through a ReadAheadSocket over a socket pair."""
    ours, theirs = socket.socketpair()
    sender = feed(theirs, b"".join(frame(payload) for payload in frames))
    reader = ReadAheadSocket(ours)
    ws = client(reader)
    started = time.thread_time()
    for _ in range(len(frames)):
        reader.read_message(ws)
    elapsed = time.thread_time() - started
    sender.join()
    ours.close()
    theirs.close()
    return elapsed


def receive_all(frames: list[bytes], spill_dir: Path) -> float:
    """Thread CPU seconds of a link's receive loop over the frames, sent on a socket pair,
    into a sink that is not started (so nothing is written): the link thread's whole path."""
    from collectors.storage.sink import StorageSink

    collector, link = collector_and_link()
    collector.sink = StorageSink(
        name="bench-profile", max_memory_rows=10 * len(frames), spill_dir=spill_dir
    )
    ours, theirs = socket.socketpair()
    link.reader = ReadAheadSocket(ours)
    link.ws = client(link.reader)
    link.ws.settimeout(1.0)
    data = b"".join(frame(payload) for payload in frames)

    def send_and_close() -> None:
        theirs.sendall(data)
        theirs.close()

    sender = threading.Thread(target=send_and_close, daemon=True)
    sender.start()
    started = time.thread_time()
    with contextlib.suppress(ConnectionError):  # the sender closed: every frame was read
        link.receive()
    elapsed = time.thread_time() - started
    sender.join()
    ours.close()
    assert link.stats.points == len(frames), link.stats.points
    return elapsed


def stages(messages: int, repeat: int) -> dict[str, float]:
    """Microseconds of CPU per message for each stage, run alone (best of `repeat`)."""
    import orjson
    from django.conf import settings

    from collectors.collector import RecentTrades
    from collectors.storage.backends import backend_for
    from collectors.storage.rows import point_to_row
    from collectors.storage.sink import StorageSink
    from collectors.types import validate_market_data_point

    frames = trade_frames(messages)
    collector, link = collector_and_link()
    session = link.session
    handled = [session.handle(payload) for payload in frames]
    points = [point for one in handled for point in one.points]
    assert len(points) == messages and not any(one.errors for one in handled)
    parsed = [orjson.loads(payload)["data"][0] for payload in frames]
    from decimal import Decimal

    checks = [
        (int(item["ts"]), Decimal(item["px"]), Decimal(item["sz"]), item, len(payload))
        for item, payload in zip(parsed, frames, strict=True)
    ]
    received = session.bounds.clock()
    rows = [point_to_row(point) for point in points]
    results: dict[str, float] = {}

    results["frame read (ReadAheadSocket)"] = min(read_frames(frames) for _ in range(repeat))
    results["JSON parse (orjson.loads)"] = best_cpu(
        lambda: [orjson.loads(payload) for payload in frames], repeat
    )

    def handle_all() -> None:
        for payload in frames:
            link.handle(payload)

    results["session.handle: parse, bounds, points"] = best_cpu(handle_all, repeat)
    check = session.bounds.trade
    results["  of which bounds (Bounds.trade)"] = best_cpu(
        lambda: [check(ts, px, sz, item, received, size) for ts, px, sz, item, size in checks],
        repeat,
    )
    results["  of which point check (validate_market_data_point)"] = best_cpu(
        lambda: [validate_market_data_point(point) for point in points], repeat
    )

    def dispatch_all() -> None:
        collector.recent_trades = RecentTrades()
        for one in handled:
            link.after_frame(one)

    collector.sink = None
    results["link dispatch: dedupe, deliver (no sink)"] = best_cpu(dispatch_all, repeat)
    results["building rows (point_to_row)"] = best_cpu(
        lambda: [point_to_row(point) for point in points], repeat
    )
    spill_dir = Path(tempfile.mkdtemp(prefix="bench-profile-"))

    def put_all() -> None:
        sink = StorageSink(name="bench-profile", max_memory_rows=10 * messages, spill_dir=spill_dir)
        for one in handled:
            sink.put(one.points)

    results["sink.put: rows and enqueue"] = best_cpu(put_all, repeat)
    results["all of it: the link's receive loop, socket pair -> sink.put"] = min(
        receive_all(frames, spill_dir) for _ in range(repeat)
    )

    backend = backend_for(settings.DATABASES["default"], "bench-profile")
    backend.connect()

    def straight(batch: list) -> None:  # the sink's path: COPY into raw_trades
        backend.write_batch(batch, [])

    def staged(batch: list) -> None:  # the path after a stored trade: through staging
        with backend.transaction():
            backend.write(batch, [], isolated=False)

    try:
        for name, write in (("COPY into raw_trades", straight), ("COPY via staging", staged)):
            copy_cpu, copy_wall = [], []
            for _ in range(repeat):
                backend._conn.execute("TRUNCATE raw_trades")
                started, wall = time.thread_time(), time.perf_counter()
                for first in range(0, len(rows), COPY_BATCH):
                    write(rows[first : first + COPY_BATCH])
                copy_cpu.append(time.thread_time() - started)
                copy_wall.append(time.perf_counter() - wall)
            results[f"{name}, {COPY_BATCH} a batch: CPU here"] = min(copy_cpu)
            results[f"{name}, {COPY_BATCH} a batch: wall"] = min(copy_wall)
    finally:
        backend.close()
    return {name: seconds * 1e6 / messages for name, seconds in results.items()}


# the live run -----------------------------------------------------------------------

STAGE_RULES = [  # (stage, substrings of "file:function"), first match wins
    ("frame read", ("frames.py", "method 'recv' of '_socket")),
    ("JSON parse", ("orjson.loads",)),
    ("bounds and point check", ("bounds.py", "types.py:validate", "types.py:_plainly")),
    ("building points", ("exchanges/", "types.py:trade_point", "timedelta")),
    ("link loop, dedupe, deliver", ("collector.py", "link.py", "traces.py", "logging")),
    ("building rows", ("rows.py", "times.py", "orjson.dumps")),
    ("sink enqueue", ("sink.py:put", "sink.py:_accept", "sink.py:_should_spill")),
    ("COPY, insert, commit", ("psycopg", "backends.py", "sink.py")),
]


def stage_of(key: tuple) -> str:
    filename, _, function = key
    where = f"{filename}:{function}"
    for stage, marks in STAGE_RULES:
        if any(mark in where for mark in marks):
            return stage
    return "other"


class ThreadProfiles:
    """cProfile in every thread started while it is on."""

    def __init__(self) -> None:
        self.profiles: dict[str, cProfile.Profile] = {}

    def __enter__(self) -> "ThreadProfiles":
        def start(frame, event, arg) -> None:
            profile = cProfile.Profile(time.thread_time)  # CPU, not waits
            self.profiles[threading.current_thread().name] = profile
            profile.enable()

        threading.setprofile(start)
        return self

    def __exit__(self, *exc_info) -> None:
        threading.setprofile(None)

    def by_stage(self, names: Callable[[str], bool]) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, profile in self.profiles.items():
            if not names(name):
                continue
            with contextlib.suppress(Exception):
                profile.disable()
            for key, (_, _, tottime, _, callers) in pstats.Stats(profile).stats.items():
                stage = stage_of(key)
                if stage != "other" or key[0] != "~":
                    totals[stage] = totals.get(stage, 0.0) + tottime
                    continue
                for caller, (_, _, spent, _) in callers.items():  # a builtin: its callers'
                    stage = stage_of(caller)
                    totals[stage] = totals.get(stage, 0.0) + spent
        return totals


def cpu_seconds(stat_path: str) -> float:
    """CPU seconds (user and system) from a /proc stat file."""
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(thread: threading.Thread) -> float:
    return cpu_seconds(f"/proc/self/task/{thread.native_id}/stat")


def live(windows: int, seconds: float, profile: bool) -> dict:
    sink = full_speed_sink("bench-profile")
    profiles = ThreadProfiles()
    rates, per_trade = [], {"link thread": [], "sink writer": [], "process": [], "simulator": []}
    with (
        Simulator(0, [symbol("okx", "BTC")], "okx") as simulator,
        profiles if profile else contextlib.nullcontext(),
        collecting(simulator.config(symbol("okx", "BTC")), sink) as collector,
    ):
        time.sleep(2)  # warm up
        link = next(t for t in threading.enumerate() if t.name.startswith(collector.name))
        writer = next(t for t in threading.enumerate() if t.name == "storage-bench-profile")
        for _ in range(windows):
            stored0, t0, cpu0 = sink.stats()["trades_inserted"], time.time(), time.process_time()
            link0, writer0 = thread_cpu(link), thread_cpu(writer)
            simulator0 = cpu_seconds(f"/proc/{simulator.process.pid}/stat")
            time.sleep(seconds)
            stored = sink.stats()["trades_inserted"] - stored0
            rates.append(stored / (time.time() - t0))
            per_trade["link thread"].append((thread_cpu(link) - link0) / stored)
            per_trade["sink writer"].append((thread_cpu(writer) - writer0) / stored)
            per_trade["process"].append((time.process_time() - cpu0) / stored)
            simulator1 = cpu_seconds(f"/proc/{simulator.process.pid}/stat")
            per_trade["simulator"].append((simulator1 - simulator0) / stored)
    stats = sink.stats()
    results = {
        "trades/s stored, best window": max(rates),
        "trades/s stored, median window": statistics.median(rates),
        "trades/s stored, each window": ", ".join(f"{rate:,.0f}" for rate in rates),
    }
    for name, values in per_trade.items():
        results[f"CPU us per stored trade, {name} (least)"] = 1e6 * min(values)
    results["pending rows at the end"] = stats["pending_rows"]
    results["rows received, rejected"] = f"{stats['rows_received']}, {stats['rows_rejected']}"
    if profile:
        totals = profiles.by_stage(lambda name: name.startswith(("okx", "storage-")))
        whole = sum(totals.values()) or 1.0
        for stage, spent in sorted(totals.items(), key=lambda item: -item[1]):
            results[f"profile share: {stage}"] = f"{100 * spent / whole:.1f}%"
    return results


def show(results: dict) -> None:
    for name, value in results.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else value
        print(f"  {name}: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["stages", "live"])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    recreate_database(DB_NAME)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        if args.only in (None, "stages"):
            print(
                f"stages alone, CPU us per trade message (best of {args.repeat}, "
                f"{args.messages:,} messages):"
            )
            show(stages(args.messages, args.repeat))
        if args.only in (None, "live"):
            print(f"live, one OKX collector at full speed ({args.windows} x {args.seconds:g} s):")
            show(live(args.windows, args.seconds, args.cprofile))
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
