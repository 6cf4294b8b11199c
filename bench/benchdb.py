"""What the benchmarks share: a throw-away database on the local server, ports, memory."""

import os
import socket
import time
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
