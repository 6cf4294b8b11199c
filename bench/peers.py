"""This project's collector beside cryptofeed 2.4.1, storing the OKX simulator's trades.

Both store the trades of the project's OKX simulator in PostgreSQL, measured the same way,
in runs interleaved.

    .venv/bin/python bench/peers.py [--seconds 20] [--latency-seconds 20] [--rounds 2]

Prints, per round, for this project, cryptofeed as shipped and cryptofeed with a bounded
receive queue (websockets max_queue=16), in turn: trades/s stored at full speed over a
window of --seconds (--seconds 60 for the 60 s figure), the backlog and the tool process's
RSS at the end of that window, and p50/p99 from the exchange timestamp to the committed row
at 1,000 msg/s over --latency-seconds (default: --seconds, at most 20); then a table dated
with the machine (cores, CPU model, PostgreSQL), and the ratios.

cryptofeed. The first run creates var/bench-peers-venv (`python -m venv`, then pip install
cryptofeed[postgres]==2.4.1): a benchmark-only tool, never a dependency of the project. In it,
bench/peer_runners/cryptofeed_okx.py runs cryptofeed's OKX feed (trades of BTC-USDT) with
its TradePostgres backend into a `trades` table with the columns of cryptofeed's example
PostgreSQL schema. To reach the simulator the runner changes, in its own process only: the
OKX feed's public WebSocket address (to ws://127.0.0.1:P/ws/v5/public) and REST addresses (to
the simulator's; none is called); the instrument list, which cryptofeed downloads at start-up
from OKX's REST /api/v5/public/instruments (the simulator serves it too), set from one
local record; and the connection class, as cryptofeed refuses any address but wss:// and the
simulator has no TLS. "As shipped" keeps cryptofeed's websockets options (max_queue=None, no
bound); "bounded" adds max_queue=16 to the OKX endpoint's options, which cryptofeed passes to
websockets' connect().

Nothing reaches the internet, in two ways: the runner refuses to start unless every address
the OKX feed holds is a loopback one; and before the measured runs, the cryptofeed side runs
once with a simulator under `unshare --net` (a network namespace with nothing but a loopback
interface; PostgreSQL through its Unix socket) and must store trades there.

Each figure, measured the same way for both tools. Every run starts a fresh simulator and a
fresh process for the tool, with both tools' tables emptied and a checkpoint written (else
a run pays for the autovacuum and the WAL of a full-speed run before it, of either tool);
this project's collector runs in a child process of this script with the sink
bench/ingest.py uses for the same run.
- trades/s stored: rows in the tool's table (count(*)) at the start and the end of the window,
  which opens 2 s after the first row is stored; the simulator at full speed.
- backlog: trades the simulator has sent (its /_sim/stats) minus rows stored, at the end of
  the window (what is in socket buffers and the tool's queues, not yet committed), and how
  fast it grew over the window (rows/s; about 0 when the tool keeps up).
- RSS: the tool process's VmRSS at the end of the window.
- p50/p99: for each row committed in the window, time.time() once its transaction has
  committed minus the trade's exchange timestamp (the simulator stamps trades with their send
  time), the simulator at 1,000 msg/s. This project's sink reports its commits (on_commit);
  for cryptofeed the runner wraps TradePostgres.write_batch (the commit happens inside it)
  and notes the time when it returns: the same moment as this project's figure, where a
  column default of clock_timestamp() would stamp the row before its commit.

Uses (and drops) its own database, tcp_bench_peers, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432). Every process it starts
is stopped at the end of its run; the runs' logs go to a temporary directory, removed at the
end.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import (  # noqa: E402
    SERVER,
    drop_database,
    free_port,
    recreate_database,
    rss_mb,
    use_database,
)
from simulated import (  # noqa: E402
    Simulator,
    collecting,
    collector_config,
    full_speed_sink,
    latency_sink,
    percentiles,
)

DB_NAME = "tcp_bench_peers"
use_database(DB_NAME, DB_POOL="0")

import django  # noqa: E402

SYMBOL = "BTC-USDT"
CRYPTOFEED = "cryptofeed[postgres]==2.4.1"
PEER_VENV = ROOT / "var" / "bench-peers-venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
RUNNER = Path(__file__).resolve().parent / "peer_runners" / "cryptofeed_okx.py"
LATENCY_RATE = 1000
WARM_UP = 2.0
START_TIMEOUT = 60.0
STOP_GRACE = 10.0
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# The columns (and types) of cryptofeed's example schema for its trades table.
CRYPTOFEED_TABLE = """
CREATE TABLE trades (
    id serial PRIMARY KEY,
    timestamp timestamp,
    receipt_timestamp timestamp,
    exchange varchar(32),
    symbol varchar(32),
    side varchar(8),
    amount numeric(64, 32),
    price numeric(64, 32),
    trade_id varchar(64),
    order_type varchar(32)
)
"""


@dataclass(frozen=True)
class Tool:
    name: str
    heading: str
    table: str
    cryptofeed: bool = False
    max_queue: int | None = None

    def command(self, simulator: Simulator, latency_out: Path | None, log: Path) -> list[str]:
        if not self.cryptofeed:
            command = [sys.executable, str(Path(__file__).resolve())]
            command += ["--project-port", str(simulator.port)]
            return command + (["--latency-out", str(latency_out)] if latency_out else [])
        return cryptofeed_command(
            simulator.public_ws_url, simulator.rest_url, self.max_queue, latency_out, log
        )


PROJECT = Tool("this project", "this project", "raw_trades")
SHIPPED = Tool("cryptofeed as shipped", "cryptofeed as shipped", "trades", cryptofeed=True)
BOUNDED = Tool(
    "cryptofeed, max_queue=16",
    "cryptofeed, bounded receive queue (websockets `max_queue=16`)",
    "trades",
    cryptofeed=True,
    max_queue=16,
)
TOOLS = (PROJECT, SHIPPED, BOUNDED)


@dataclass
class Results:
    stored_per_s: list[float] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)
    backlog_growth: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    def add(self, run: dict) -> None:
        if "p50 ms" in run:
            self.p50_ms.append(run["p50 ms"])
            self.p99_ms.append(run["p99 ms"])
            return
        self.stored_per_s.append(run["stored_per_s"])
        self.backlog.append(run["backlog"])
        self.backlog_growth.append(run["backlog_growth"])
        self.rss_mb.append(run["rss_mb"])


def describe(tool: Tool, rate: float, seconds: float, run: dict) -> str:
    if rate:
        return (
            f"{rate:,.0f} msg/s, {seconds:g} s, {tool.name}: p50 {run['p50 ms']:.1f} ms,"
            f" p99 {run['p99 ms']:.1f} ms over {run['rows']:,} rows"
        )
    return (
        f"full speed, {seconds:g} s, {tool.name}: {run['stored_per_s']:,.0f} trades/s stored;"
        f" at the end backlog {run['backlog']:,} rows ({run['backlog_growth']:+,.0f} rows/s"
        f" over the window), RSS {run['rss_mb']:,.0f} MB"
    )


def database_server() -> dict:
    parts = urlsplit(SERVER)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
    }


def cryptofeed_command(
    ws_url: str,
    rest_url: str,
    max_queue: int | None,
    latency_out: Path | None,
    log: Path,
    pg_host: str | None = None,
) -> list[str]:
    server = database_server()
    command = [str(PEER_PYTHON), str(RUNNER), "--ws-url", ws_url, "--rest-url", rest_url]
    command += ["--symbol", SYMBOL, "--pg-host", pg_host or server["host"]]
    command += ["--pg-port", str(server["port"]), "--pg-user", server["user"]]
    command += ["--pg-database", DB_NAME, "--log", str(log)]
    if max_queue is not None:
        command += ["--max-queue", str(max_queue)]
    if latency_out is not None:
        command += ["--latency-out", str(latency_out)]
    return command


def child_env(workdir: Path) -> dict:
    env = dict(os.environ, COLLECTOR_SPILL_DIR=str(workdir / "spill"))
    password = database_server()["password"]
    if password:
        env["PGPASSWORD"] = password  # for cryptofeed's asyncpg, kept off its command line
    return env


def install_cryptofeed() -> None:
    """cryptofeed in a virtual environment of its own, made on the first run."""
    stamp = PEER_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == CRYPTOFEED:
        return
    print(f"installing {CRYPTOFEED} into {PEER_VENV.relative_to(ROOT)} ...", flush=True)
    if not PEER_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, CRYPTOFEED], check=True)
    stamp.write_text(CRYPTOFEED)


def peer_versions() -> str:
    names = ["cryptofeed", "websockets", "asyncpg", "uvloop"]
    code = (
        f"import importlib.metadata as m; print(', '.join(n + ' ' + m.version(n) for n in {names}))"
    )
    return subprocess.run(
        [str(PEER_PYTHON), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def machine(conn: psycopg.Connection) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    postgres = conn.execute("SHOW server_version").fetchone()[0]
    python = ".".join(map(str, sys.version_info[:3]))
    cpu = models[0] if models else "CPU model unknown"
    return f"{os.cpu_count()} cores, {cpu}; PostgreSQL {postgres}; Python {python}"


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def start(command: list[str], workdir: Path, log: Path, cwd: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env(workdir),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group, SIGKILL after STOP_GRACE seconds."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        os.killpg(process.pid, signum)
        try:
            process.wait(STOP_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def failed(what: str, log: Path) -> RuntimeError:
    tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    return RuntimeError("\n".join([what, f"last lines of {log}:", *tail]))


def wait_for_rows(conn: psycopg.Connection, table: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + START_TIMEOUT
    while not count(conn, table):
        if process.poll() is not None:
            raise failed(f"the process stopped (exit code {process.returncode})", log)
        if time.monotonic() > deadline:
            raise failed(f"nothing stored within {START_TIMEOUT:.0f} s", log)
        time.sleep(0.1)


def measure(tool: Tool, rate: float, seconds: float, workdir: Path, conn) -> dict:
    """One run of one tool; its figures."""
    # Every tool's table emptied and a checkpoint written: no run pays for the autovacuum
    # or the WAL of the run before it, whichever tool that was.
    conn.execute(f"TRUNCATE {', '.join(sorted({t.table for t in TOOLS}))} RESTART IDENTITY")
    conn.execute("CHECKPOINT")
    key = f"{tool.table}-{tool.max_queue}-{rate:g}"
    log = workdir / f"{key}.log"
    latency_out = workdir / f"{key}.json" if rate else None
    if latency_out:
        latency_out.unlink(missing_ok=True)
    with Simulator(rate=rate, instruments=[SYMBOL]) as simulator:
        command = tool.command(simulator, latency_out, log.with_suffix(".cryptofeed.log"))
        process = start(command, workdir, log, workdir)
        try:
            wait_for_rows(conn, tool.table, process, log)
            time.sleep(WARM_UP)
            t0, sent0, stored0 = time.time(), simulator.trades_sent(SYMBOL), count(conn, tool.table)
            time.sleep(seconds)
            t1, sent1, stored1 = time.time(), simulator.trades_sent(SYMBOL), count(conn, tool.table)
            end = {
                "stored_per_s": (stored1 - stored0) / (t1 - t0),
                "backlog": sent1 - stored1,
                "backlog_growth": ((sent1 - stored1) - (sent0 - stored0)) / (t1 - t0),
                "rss_mb": rss_mb(process.pid),
            }
        finally:
            stop(process)
    if latency_out is None:
        return end
    if not latency_out.exists():
        raise failed("no latencies written", log)
    records = json.loads(latency_out.read_text())
    latencies = [latency for committed, latency in records if t0 <= committed <= t1]
    return {**end, **percentiles(latencies)}


def loopback_check(workdir: Path, conn: psycopg.Connection) -> int:
    """Run the cryptofeed side with a simulator in a network namespace that has only a
    loopback interface; the trades it stored there."""
    sockets = conn.execute("SHOW unix_socket_directories").fetchone()[0]
    socket_dir = next((d.strip() for d in sockets.split(",") if d.strip()), "")
    if not socket_dir:
        raise RuntimeError("the loopback check needs PostgreSQL's Unix socket; it has none")
    port = free_port()
    log = workdir / "loopback-check.log"
    simulator = Simulator.command(port, LATENCY_RATE, [SYMBOL])
    ws_url, rest_url = f"ws://127.0.0.1:{port}/ws/v5/public", f"http://127.0.0.1:{port}"
    own_log = log.with_suffix(".cryptofeed.log")
    runner = cryptofeed_command(ws_url, rest_url, None, None, own_log, pg_host=socket_dir)
    script = "\n".join(
        [
            "ip link set lo up || exit 1",
            f"{shlex.join(simulator)} >/dev/null 2>&1 &",
            "simulator=$!",
            f"{shlex.join(runner)} --duration 3",
            "status=$?",
            'kill "$simulator"; wait "$simulator"',
            'exit "$status"',
        ]
    )
    namespace = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--user", "--net"]
    conn.execute("TRUNCATE trades RESTART IDENTITY")
    process = start([*namespace, "sh", "-c", script], workdir, log, ROOT)
    try:
        process.wait(START_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise failed("the loopback check did not finish", log) from None
    finally:
        stop(process)
    stored = count(conn, "trades")
    if process.returncode or not stored:
        raise failed(f"the loopback check failed (exit {process.returncode}, {stored} rows)", log)
    return stored


def project_side(port: int, latency_out: Path | None) -> None:
    """This project's collector and sink (a child process), running until SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the threads started below too
    django.setup()
    records: list[tuple[float, float]] = []

    def committed(points, commit_time: float) -> None:
        records.extend((commit_time, commit_time - p.timestamp.timestamp()) for p in points)

    sink = latency_sink("bench-peers", committed) if latency_out else full_speed_sink("bench-peers")
    with collecting(collector_config(port, SYMBOL), sink):
        signal.sigwait(STOP_SIGNALS)
    if latency_out:
        latency_out.write_text(json.dumps(records))


def ratio(peer: list[float], ours: list[float]) -> str:
    if not peer or not ours or not statistics.median(ours):
        return "n/a"
    return f"{statistics.median(peer) / statistics.median(ours):.2f}"


def span(values: list[float], digits: int = 1) -> str:
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def report(results: dict[Tool, Results], seconds: float, rounds: int) -> None:
    print()
    print(f"| | {' | '.join(tool.heading for tool in TOOLS)} |")
    print(f"|---{'|---' * len(TOOLS)}|")
    rows = {
        f"trades/s stored, {seconds:g} s windows (median of {rounds})": lambda r: (
            f"{statistics.median(r.stored_per_s):,.0f}"
        ),
        "backlog / RSS at the end; backlog growth (largest of the rounds)": lambda r: (
            f"{max(r.backlog):,} rows / {max(r.rss_mb):,.0f} MB,"
            f" {max(r.backlog_growth):+,.0f} rows/s"
        ),
        f"p50 / p99, exchange timestamp -> committed row, at {LATENCY_RATE:,} msg/s": lambda r: (
            f"{span(r.p50_ms)} / {span(r.p99_ms)} ms"
        ),
    }
    for name, cell in rows.items():
        print(f"| {name} | {' | '.join(cell(results[tool]) for tool in TOOLS)} |")
    ours = results[PROJECT]
    print()
    print("ratios, cryptofeed / this project (medians; above 1: cryptofeed stores more, holds")
    print("more memory, waits longer):")
    for tool in (SHIPPED, BOUNDED):
        peer = results[tool]
        print(
            f"  {tool.name}: trades/s stored {ratio(peer.stored_per_s, ours.stored_per_s)},"
            f" RSS {ratio(peer.rss_mb, ours.rss_mb)}, p50 {ratio(peer.p50_ms, ours.p50_ms)},"
            f" p99 {ratio(peer.p99_ms, ours.p99_ms)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="Window; 60 for the long one.")
    parser.add_argument(
        "--latency-seconds", type=float, help="Latency window; default --seconds, at most 20."
    )
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each tool, interleaved.")
    parser.add_argument("--project-port", type=int, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--latency-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.project_port:
        project_side(args.project_port, args.latency_out)
        return
    if args.latency_seconds is None:
        args.latency_seconds = min(args.seconds, 20)
    if args.rounds < 1 or args.seconds <= 0 or args.latency_seconds <= 0:
        parser.error("--rounds must be at least 1, --seconds and --latency-seconds above 0")
    install_cryptofeed()
    workdir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        recreate_database(DB_NAME)
        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        connections.close_all()
        with psycopg.connect(f"{SERVER}/{DB_NAME}", autocommit=True) as conn:
            conn.execute(CRYPTOFEED_TABLE)
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            print(f"side by side with cryptofeed, {now}")
            print(f"machine: {machine(conn)}")
            print(f"peer: {peer_versions()}")
            stored = loopback_check(workdir, conn)
            print(
                f"loopback check: cryptofeed stored {stored:,} trades in a network namespace"
                " with only a loopback interface (unshare --net)"
            )
            results = {tool: Results() for tool in TOOLS}
            for number in range(1, args.rounds + 1):
                print(f"round {number} of {args.rounds}:", flush=True)
                for rate, seconds in ((0, args.seconds), (LATENCY_RATE, args.latency_seconds)):
                    for tool in TOOLS:
                        run = measure(tool, rate, seconds, workdir, conn)
                        results[tool].add(run)
                        print(f"  {describe(tool, rate, seconds, run)}", flush=True)
            report(results, args.seconds, args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
