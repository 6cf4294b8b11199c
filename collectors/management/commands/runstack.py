"""`manage.py runstack`: the whole platform on this machine with one command.

It runs each part as its own process, with the same commands the README and
docker-compose.yml use: a simulator for each exchange configured in
config/*-simulator.json, the web server, a collector worker, a default worker, beat and
Flower. It uses PostgreSQL and Redis on 127.0.0.1 when they
answer (or DATABASE_URL / REDIS_URL when set); otherwise it runs on the embedded
defaults, where the collectors run in one plain process instead of Celery workers.

What it chose is recorded in the checkout's .env (settings.ENV_FILE), so manage.py
commands in any other shell use the same database and Redis. It supervises its parts
as a process manager does: a part that exits is restarted after a growing pause, and
only a part that keeps failing fast stops the platform.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tcp_dashboard.env import explicit_environ, update_env_file

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
DATABASE = "tcp_dashboard"
SQLITE_FILE = "tcp_dashboard.sqlite3"  # the settings' default name, in VAR_DIR
SIMULATOR_CONFIGS = "config/*-simulator.json"  # one exchange each, pointed at its simulator


def postgres_answers(server: str) -> bool:
    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=2, autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
            ).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")
        return True
    except psycopg.Error:
        return False


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        return bool(client.ping())
    except redis.RedisError:
        return False


def choose_services(log) -> dict[str, str]:
    """The environment for the parts: explicit URLs win, then local servers, then defaults.

    What an earlier run recorded in .env is chosen again, not taken as given: the
    services that answer now decide.
    """
    explicit = explicit_environ()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if "DATABASE_URL" in explicit:
        env["DATABASE_URL"] = explicit["DATABASE_URL"]
    elif postgres_answers(LOCAL_POSTGRES):
        env["DATABASE_URL"] = f"{LOCAL_POSTGRES}/{DATABASE}"
    else:
        log(f"no PostgreSQL at {LOCAL_POSTGRES}: using an SQLite file")
        env["DATABASE_URL"] = f"sqlite:///{Path(settings.VAR_DIR).resolve() / SQLITE_FILE}"
    # An explicitly empty REDIS_URL means: no Redis, even if one answers locally.
    if "REDIS_URL" in explicit:
        env["REDIS_URL"] = explicit["REDIS_URL"]
    else:
        env["REDIS_URL"] = LOCAL_REDIS if redis_answers(LOCAL_REDIS) else ""
    if not env["REDIS_URL"]:
        log(
            "no Redis: collectors run in one process (manage.py collect) "
            "instead of a Celery collector worker; no workers, beat or Flower"
        )
    env["VAR_DIR"] = str(Path(settings.VAR_DIR).resolve())
    return env


def recorded(env: dict[str, str]) -> dict[str, str]:
    """What .env gets: the database and Redis chosen, and VAR_DIR unless it is the default
    (a host path there would reach docker compose's containers, which read .env too)."""
    chosen = {name: env[name] for name in ("DATABASE_URL", "REDIS_URL")}
    if Path(env["VAR_DIR"]) != (Path(settings.BASE_DIR) / "var").resolve():
        chosen["VAR_DIR"] = env["VAR_DIR"]
    return chosen


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def service_lines(env: dict[str, str]) -> list[str]:
    """One line each for the database, the broker and Redis the parts use, without passwords."""
    database = env["DATABASE_URL"]
    if database.startswith("sqlite"):
        database_line = f"database: SQLite file {urlsplit(database).path[1:]}"
    else:
        database_line = f"database: PostgreSQL {without_password(database)}"
    redis_url = env.get("REDIS_URL", "")
    broker = env.get("CELERY_BROKER_URL") or redis_url
    broker_line = (
        f"broker: {without_password(broker)}"
        if broker
        else f"broker: files in {Path(env['VAR_DIR']) / 'celery'} (no Redis)"
    )
    redis_line = (
        f"Redis: {without_password(redis_url)} (leases, heartbeats, live data)"
        if redis_url
        else "Redis: none (collector status kept in a file under VAR_DIR)"
    )
    return [database_line, broker_line, redis_line]


@dataclass(slots=True, frozen=True)
class Simulated:
    """An exchange run against its simulator: its configuration, pointed at the port."""

    exchange: str
    port: int
    config: Path  # the configuration file, rewritten for the port
    symbols: list[str]  # its enabled trading pairs
    source: Path | None = None  # the file in config/ it was made from


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.hostname}:{port}").geturl()


def simulated_exchanges(first_port: int) -> list[Simulated]:
    """Each config/*-simulator.json, on its own port from `first_port` up."""
    found = []
    for port, source in enumerate(sorted(Path().glob(SIMULATOR_CONFIGS)), start=first_port):
        config = json.loads(source.read_text())
        connection = config["connection"]
        for key in ("public_ws_url", "business_ws_url", "rest_url"):
            if connection.get(key):
                connection[key] = with_port(connection[key], port)
        path = Path(settings.VAR_DIR) / f"{source.stem}-{port}.json"
        path.write_text(json.dumps(config, indent=2))
        pairs = config.get("trading_pairs", [])
        symbols = [pair["symbol"] for pair in pairs if pair.get("enabled", True)]
        found.append(Simulated(config["exchange"], port, path, symbols, source))
    return found


def with_stored_symbols(simulated: list[Simulated], dumped: str) -> list[Simulated]:
    """Each simulator serves every pair stored for its exchange (the operator may have
    added some in the admin since the file was first loaded), the file's too."""
    stored = {config["exchange"]: config["trading_pairs"] for config in json.loads(dumped)}
    found = []
    for exchange in simulated:
        symbols = [pair["symbol"] for pair in stored.get(exchange.exchange, [])]
        extra = [symbol for symbol in symbols if symbol not in exchange.symbols]
        found.append(
            Simulated(
                exchange.exchange,
                exchange.port,
                exchange.config,
                exchange.symbols + extra,
                exchange.source,
            )
        )
    return found


def web_server(bind: str, workers: int = 2) -> list[str]:
    """The web server: gunicorn's own ASGI workers, for the dashboard's live streams (async
    views, docs/dashboard.md). Open streams get 5 s to end on a stop; browsers reconnect."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return [
        gunicorn,
        "tcp_dashboard.asgi:application",
        "--worker-class",
        "asgi",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--graceful-timeout",
        "5",
        "--no-control-socket",
    ]


def parts(
    env: dict[str, str],
    addr: str,
    rate: float,
    simulated: list[Simulated],
    flower_port: int = 5555,
) -> list[tuple[str, list[str]]]:
    manage = [sys.executable, "manage.py"]
    celery = [sys.executable, "-m", "celery", "-A", "tcp_dashboard"]
    found = []
    for exchange in simulated:
        simulator = [*manage, "simulate_exchange", exchange.exchange, "--port", str(exchange.port)]
        simulator += ["--rate", f"{rate:g}", "--seed", "1"]
        simulator += ["--instruments", ",".join(exchange.symbols)]
        found.append((f"{exchange.exchange}-simulator", simulator))
    found.append(("web", web_server(addr)))
    if not env.get("REDIS_URL"):
        return [*found, ("collectors", [*manage, "collect"])]
    collector_worker = [*celery, "worker", "-Q", "collectors", "-n", "collectors@%h"]
    collector_worker += ["--pool", "threads", "--concurrency", "4", "--loglevel", "INFO"]
    flower = [*celery, "flower", "--address=127.0.0.1", f"--port={flower_port}"]
    return [
        *found,
        ("collector-worker", collector_worker),
        ("worker", [*celery, "worker", "-Q", "default", "-n", "default@%h", "--loglevel", "INFO"]),
        ("beat", [*celery, "beat", "--loglevel", "INFO"]),
        ("flower", flower),
    ]


# Supervision: how a process manager (systemd, supervisord) treats a part that exits.
FIRST_BACKOFF = 1.0  # seconds before the first restart; doubled for each recent exit
MAX_BACKOFF = 30.0
GIVE_UP_EXITS = 5  # this many exits of one part within GIVE_UP_WINDOW stop the platform
GIVE_UP_WINDOW = 60.0


@dataclass(slots=True)
class Child:
    """One part of the stack, its process and its recent exits."""

    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    exits: deque = field(default_factory=deque)  # time.monotonic() of recent exits
    restart_at: float | None = None
    restarts: int = 0

    def exited(self) -> bool:
        return (
            self.restart_at is None
            and self.process is not None
            and (self.process.poll() is not None)
        )


PR_SET_PDEATHSIG = 1


def terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for a SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def backoff(recent_exits: int) -> float:
    """Seconds before restarting a part that exited `recent_exits` times lately (1, 2, 4, ...)."""
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, recent_exits - 1))


class Supervisor:
    """Starts the parts, restarts one that exits, gives up on one that keeps failing fast."""

    def __init__(self, children: list[Child], env: dict[str, str], log) -> None:
        self.children = children
        self.env = env
        self.log = log
        self.failed: str = ""  # why it gave up, if it did
        self.restarted: list[str] = []  # the parts restarted since the caller last looked

    def spawn(self, child: Child) -> None:
        # Its own process group: a Ctrl-C reaches runstack, which stops the parts in order.
        # And a SIGTERM when runstack dies, however it dies, so no part outlives it.
        child.process = subprocess.Popen(
            child.command, env=self.env, process_group=0, preexec_fn=terminate_with_parent
        )
        child.restart_at = None

    def start_all(self) -> None:
        for child in self.children:
            self.spawn(child)
            self.log(
                f"started {child.name} (pid {child.process.pid}): {' '.join(child.command[1:])}"
            )

    def step(self, now: float) -> bool:
        """Look after the parts once; False when it gave up and everything must stop."""
        for child in self.children:
            if child.exited():
                code = child.process.returncode
                child.exits.append(now)
                while child.exits and now - child.exits[0] > GIVE_UP_WINDOW:
                    child.exits.popleft()
                if len(child.exits) >= GIVE_UP_EXITS:
                    self.failed = (
                        f"{child.name} exited {len(child.exits)} times within "
                        f"{GIVE_UP_WINDOW:g}s (last exit code {code}); giving up: stopping "
                        "everything (see its output above)"
                    )
                    self.log(self.failed)
                    return False
                delay = backoff(len(child.exits))
                child.restart_at = now + delay
                self.log(
                    f"{child.name} (pid {child.process.pid}) exited with code {code}; "
                    f"restarting it in {delay:g}s"
                )
            elif child.restart_at is not None and now >= child.restart_at:
                self.spawn(child)
                child.restarts += 1
                self.log(
                    f"restarted {child.name} (pid {child.process.pid}, restart {child.restarts})"
                )
                self.restarted.append(child.name)
        return True

    def running(self) -> dict[str, subprocess.Popen]:
        return {c.name: c.process for c in self.children if c.process is not None}


class Command(BaseCommand):
    help = (
        "Run the simulator, web server, collectors, workers, beat and Flower together, "
        "restarting any that exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Web server address.")
        parser.add_argument("--rate", type=float, default=5.0, help="Simulated trades/s.")
        parser.add_argument(
            "--simulator-port", type=int, default=8765, help="The first simulator's; then up."
        )
        parser.add_argument("--flower-port", type=int, default=5555, help="Flower's port.")

    def log(self, message: str) -> None:
        self.stdout.write(f"runstack: {message}")
        self.stdout.flush()

    def setup(self, env: dict[str, str], *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], env=env, capture_output=True, text=True
        )
        if done.returncode:
            raise CommandError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip()

    def reconcile(self, env: dict[str, str]) -> str:
        """One health check now; what it did, or why it could not (beat's next one will)."""
        try:
            return self.setup(env, "collectors", "reconcile").splitlines()[0]
        except CommandError as error:
            return f"health check failed, beat's next one retries: {str(error).splitlines()[-1]}"

    def record(self, env: dict[str, str]) -> None:
        """Write what was chosen into .env, for manage.py commands in other shells."""
        if settings.ENV_FILE is None:
            self.log("ENV_FILE is empty: not recording the chosen services")
            return
        chosen = recorded(env)
        update_env_file(settings.ENV_FILE, chosen)
        self.log(
            f"recorded {', '.join(chosen)} in {settings.ENV_FILE}: manage.py commands in "
            "other shells of this checkout use the same services"
        )

    def handle(
        self, *args, addr: str, rate: float, simulator_port: int, flower_port: int, **options
    ):
        os.chdir(Path(settings.BASE_DIR))
        env = choose_services(self.log)
        for line in service_lines(env):
            self.log(line)
        self.setup(env, "migrate", "--noinput")
        self.record(env)
        simulated = simulated_exchanges(simulator_port)
        for exchange in simulated:
            said = self.setup(env, "load_exchange_config", "--keep-existing", str(exchange.config))
            self.log(said.replace(str(exchange.config), str(exchange.source or exchange.config)))
        simulated = with_stored_symbols(simulated, self.setup(env, "dump_exchange_config"))
        admin_line = self.setup(env, "ensure_admin").splitlines()[-1]
        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.append(True))
        children = [
            Child(name, command) for name, command in parts(env, addr, rate, simulated, flower_port)
        ]
        supervisor = Supervisor(children, env, self.log)
        try:
            supervisor.start_all()
            if env.get("REDIS_URL"):
                # Reconcile now rather than at beat's first tick, so data arrives within seconds.
                self.log(self.reconcile(env))
                self.log(f"Flower: http://127.0.0.1:{flower_port}/")
            self.log(f"dashboard: http://{addr}/ (sign in as admin)")
            self.log(f"admin: http://{addr}/admin/  {admin_line}")
            reconcile_at = None
            while not stopping and supervisor.step(now := time.monotonic()):
                if "collector-worker" in supervisor.restarted:
                    # The dead worker's leases expire after one TTL; reconcile then rather
                    # than at the next scheduled health check.
                    reconcile_at = now + float(settings.COLLECTOR_LEASE_TTL) + 1
                supervisor.restarted.clear()
                if reconcile_at is not None and now >= reconcile_at:
                    reconcile_at = None
                    self.log(f"after the collector worker's restart: {self.reconcile(env)}")
                time.sleep(0.5)
        finally:
            self.stop(supervisor.running())
        if supervisor.failed:
            raise CommandError(supervisor.failed)

    def stop(self, running: dict[str, subprocess.Popen]) -> None:
        """Stop the parts, the simulators last: collectors stop without losing their
        connections first, so what they received is stored and nothing reconnects."""
        simulators = {n: p for n, p in running.items() if n.endswith("-simulator")}
        others = {n: p for n, p in running.items() if n not in simulators}
        deadline = time.monotonic() + 60
        for group in (others, simulators):
            for process in group.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for name, process in group.items():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.log(f"{name} did not stop in time: killing it")
                    process.kill()
                    process.wait()
        self.log("stopped")
