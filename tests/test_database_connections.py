"""The stack's processes share a small PostgreSQL: one pool per process, sized by its role.

A private PostgreSQL cluster with max_connections=30 (the shared server's setting cannot be
changed) takes the stack's real Celery processes (a collector worker collecting from the
simulator, a prefork task worker, beat) and every periodic task, each sent several times.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg
import pytest

from marketdata.backups.encryption import generate_key
from tcp_dashboard.settings.pools import ROLE_MAXIMUM, pool_options, pool_role
from tests.collectors.hosting.processes import QUIET_WORKER, celery_processes, empty_redis
from tests.helpers import ROOT, free_port, service_env, wait_until

MAX_CONNECTIONS = 30
INITDB_OPTIONS = ["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]
RESERVED = 3  # superuser_reserved_connections: never given to the application


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    assert found, "PostgreSQL server binaries are expected under /usr/lib/postgresql/*/bin"
    return Path(found[-1])


def as_postgres(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture
def small_postgres():
    """A private cluster on a free port with max_connections=30; its server URL."""
    directory = Path(tempfile.mkdtemp(prefix="tcp-small-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    data, port = directory / "data", free_port()
    binaries = postgres_bin()
    subprocess.run(
        as_postgres([str(binaries / "initdb"), "-D", str(data), *INITDB_OPTIONS]),
        check=True,
        capture_output=True,
    )
    options = (
        f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={directory}"
        f" -c max_connections={MAX_CONNECTIONS} -c fsync=off -c log_connections=on"
    )
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "server.log")]
    subprocess.run(as_postgres([*pg_ctl, "-o", options, "-w", "start"]), check=True)
    server = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE tcp_small")
        yield server, directory / "server.log"
    finally:
        subprocess.run(as_postgres([*pg_ctl, "-m", "fast", "-w", "stop"]), check=False)
        shutil.rmtree(directory, ignore_errors=True)


class ConnectionWatch:
    """Samples how many client connections the database has, until stopped; keeps the most."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                self.most = max(self.most, count)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def connections_opened(server_log: Path) -> int:
    """Connections the server accepted into the stack's database so far (log_connections)."""
    return server_log.read_text().count("database=tcp_small")


def simulator_config(simulator, path: Path) -> Path:
    config = json.loads((ROOT / "config" / "okx-simulator.json").read_text())
    config["connection"].update(
        public_ws_url=simulator.public_url,
        business_ws_url=simulator.business_url,
        rest_url=simulator.rest_url,
    )
    config["data_collection"]["health_check_interval"] = 2.0
    path.write_text(json.dumps(config))
    return path


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_it_sizes_each_process_pool_by_the_role_of_the_process():
    assert pool_role("web") == "web"
    assert pool_role("worker-collectors") == "collectors"
    assert pool_role("worker_collectors") == "collectors"
    assert pool_role("worker_default") == "tasks"
    assert pool_role("collect") == "collectors"
    assert pool_role("worker-default") == "tasks"
    assert pool_role("beat") == "beat"
    assert pool_role("flower") == "command"
    assert pool_role("migrate") == "command"
    options = pool_options("tasks", {}, idle=1, timeout=30, recycle=3600)
    assert (options["min_size"], options["max_size"]) == (1, ROLE_MAXIMUM["tasks"])
    options = pool_options("web", {"DB_POOL_MAX_WEB": "3"}, idle=5, timeout=30, recycle=3600)
    assert (options["min_size"], options["max_size"]) == (3, 3)


def test_the_stack_runs_every_periodic_task_on_a_server_with_30_connections(
    small_postgres, simulator, tmp_path
):
    server, server_log = small_postgres
    url = f"{server}/tcp_small"
    overrides = {
        "DATABASE_URL": url,
        "DB_POOL": "1",
        "BACKUP_ENCRYPTION_KEY": generate_key(),
        "BACKUP_DIR": str(tmp_path / "backups"),
        "ARCHIVE_DIR": str(tmp_path / "archive"),
        "BACKUP_PG_BIN_DIR": str(postgres_bin()),
    }
    env = service_env(**overrides)
    manage(env, "migrate", "--noinput")
    manage(env, "load_exchange_config", str(simulator_config(simulator, tmp_path / "okx.json")))
    with psycopg.connect(url) as conn:
        tasks = [row[0] for row in conn.execute("SELECT task FROM django_celery_beat_periodictask")]
    assert {"collectors.health_check", "marketdata.rollup_candles", "marketdata.backup"} <= set(
        tasks
    )

    from tcp_dashboard.celery import app

    with empty_redis(), celery_processes(tmp_path) as running, ConnectionWatch(url) as watch:
        node = "collectors@small-pg"
        collectors = ["worker", "-Q", "collectors", "-n", node, "--pool", "threads"]
        running.spawn("collectors", [*collectors, "--concurrency", "4", *QUIET_WORKER], **overrides)
        # The task worker as make run and docker-compose start it: prefork, default concurrency.
        default = ["worker", "-Q", "default", "-n", "default@small-pg"]
        running.spawn("default", [*default, *QUIET_WORKER], **overrides)
        schedule = str(tmp_path / "beat-schedule")
        running.spawn("beat", ["beat", "-s", schedule, "--loglevel", "INFO"], **overrides)
        running.wait_ready(node, "default@small-pg", timeout=90)
        # Collecting: the health check started the configured pairs on the collector worker.
        app.send_task("collectors.health_check").get(timeout=60)

        def trades_stored():
            with psycopg.connect(url) as conn:
                return conn.execute("SELECT count(*) FROM raw_trades").fetchone()[0] > 0

        wait_until(trades_stored, timeout=60, message="trades stored in the small server")
        # One pool per process for its whole life: once each task process has run a task,
        # 40 more tasks open (almost) no connection; a pool per task opened 40 or more.
        for result in [app.send_task("marketdata.ping") for _ in range(10)]:
            assert result.get(timeout=60)["database"] is True
        before = connections_opened(server_log)
        for result in [app.send_task("marketdata.ping") for _ in range(40)]:
            assert result.get(timeout=60)["database"] is True
        assert connections_opened(server_log) - before < 5
        # Every periodic task, three rounds, each round all at once while collectors write;
        # the restore drill after its round's backup (a drill needs a finished backup).
        drills = [task for task in tasks if task == "marketdata.restore_drill"]
        others = [task for task in tasks if task not in drills]
        failed = []
        for _ in range(3):
            for batch in (others, drills):
                sent = [(task, app.send_task(task)) for task in batch]
                for task, result in sent:
                    result.get(timeout=240, propagate=False)
                    if result.state != "SUCCESS":
                        failed.append((task, result.state, result.result))
        assert not failed
        assert all(process.poll() is None for process in running.running.values())

    logs = "".join(running.log(label) for label in ("collectors", "default", "beat"))
    assert "couldn't get a connection" not in logs
    assert "too many clients" not in server_log.read_text()
    assert "too many clients" not in logs
    # The formula of docs/deployment.md for these processes: a collector worker (its pool
    # and its sink), two task processes, beat; plus this test's own watcher and setup.
    formula = ROLE_MAXIMUM["collectors"] + 1 + 2 * ROLE_MAXIMUM["tasks"] + ROLE_MAXIMUM["beat"]
    print(f"most connections at once: {watch.most} (formula: {formula})")
    assert 0 < watch.most <= formula + 2
    assert formula + 2 <= MAX_CONNECTIONS - RESERVED
