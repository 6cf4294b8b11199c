"""What the benchmarks share: a throw-away database on the local server, ports, memory, the
OKX simulator and the web server, each in its own process."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "postgresql://postgres@127.0.0.1:5432")


def use_database(name: str, **env: str) -> None:
    """Point this process's Django settings at the throw-away database `name` on SERVER,
    with `env` set too; call before Django is set up."""
    os.environ["DATABASE_URL"] = f"{SERVER}/{name}"
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def recreate_database(name: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def drop_database(name: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def settle(name: str) -> None:
    """Do now what the server would do in the background after a bulk load (vacuum and
    analyze the trade tables, write a checkpoint), so that a measurement that follows one
    sees a settled database, not the autovacuum of the load before it."""
    with psycopg.connect(f"{SERVER}/{name}", autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) raw_trades, raw_trade_keys")
        conn.execute("CHECKPOINT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, what: str, timeout: float = 30) -> None:
    """Return once something accepts connections on 127.0.0.1:port; RuntimeError if nothing
    does within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class WebServer:
    """The web server as `make run` starts it (runstack.web_server), on a free port, with
    this process's environment (the bench database) plus `env`."""

    def __init__(self, workers: int = 2, **env: str) -> None:
        from collectors.management.commands.runstack import web_server

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            web_server(f"127.0.0.1:{self.port}", workers),
            cwd=Path(__file__).resolve().parent.parent,
            env=dict(os.environ, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the web server did not start")

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [self.process.pid, *map(int, children.read_text().split())]

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in self.pids())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def web_server_arguments(bind: str, workers: int) -> list[str]:
    from collectors.management.commands.runstack import web_server

    return web_server(bind, workers)[1:]
