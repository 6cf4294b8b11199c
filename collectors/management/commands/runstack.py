"""`manage.py runstack`: the whole platform on this machine with one command.

It runs each part as its own process, with the same commands the README and
docker-compose.yml use: a simulator for each exchange configured in
config/*-simulator.json, the web server, a collector worker, a default worker, beat and
Flower. It uses PostgreSQL and Redis on 127.0.0.1 when they
answer (or DATABASE_URL / REDIS_URL when set); otherwise it runs on the embedded
defaults, where the collectors run in one plain process instead of Celery workers.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
DATABASE = "tcp_dashboard"
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
    """The environment for the parts: explicit URLs win, then local servers, then defaults."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if "DATABASE_URL" not in env:
        if postgres_answers(LOCAL_POSTGRES):
            env["DATABASE_URL"] = f"{LOCAL_POSTGRES}/{DATABASE}"
        else:
            log(f"no PostgreSQL at {LOCAL_POSTGRES}: using the SQLite file in {settings.VAR_DIR}")
    # An explicitly empty REDIS_URL means: no Redis, even if one answers locally.
    if "REDIS_URL" not in env:
        if redis_answers(LOCAL_REDIS):
            env["REDIS_URL"] = LOCAL_REDIS
        else:
            env["REDIS_URL"] = ""
    if not env["REDIS_URL"]:
        log(
            "no Redis: collectors run in one process (manage.py collect) "
            "instead of a Celery collector worker; no workers, beat or Flower"
        )
    return env


@dataclass(slots=True, frozen=True)
class Simulated:
    """An exchange run against its simulator: its configuration, pointed at the port."""

    exchange: str
    port: int
    config: Path  # the configuration file, rewritten for the port
    symbols: list[str]  # its enabled trading pairs


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
        found.append(Simulated(config["exchange"], port, path, symbols))
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
    env: dict[str, str], addr: str, rate: float, simulated: list[Simulated]
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
    return [
        *found,
        ("collector-worker", collector_worker),
        ("worker", [*celery, "worker", "-Q", "default", "-n", "default@%h", "--loglevel", "INFO"]),
        ("beat", [*celery, "beat", "--loglevel", "INFO"]),
        ("flower", [*celery, "flower", "--address=127.0.0.1", "--port=5555"]),
    ]


class Command(BaseCommand):
    help = "Run the simulator, web server, collectors, workers, beat and Flower together."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Web server address.")
        parser.add_argument("--rate", type=float, default=5.0, help="Simulated trades/s.")
        parser.add_argument(
            "--simulator-port", type=int, default=8765, help="The first simulator's; then up."
        )

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

    def handle(self, *args, addr: str, rate: float, simulator_port: int, **options):
        os.chdir(Path(settings.BASE_DIR))
        env = choose_services(self.log)
        self.setup(env, "migrate", "--noinput")
        simulated = simulated_exchanges(simulator_port)
        for exchange in simulated:
            self.setup(env, "load_exchange_config", str(exchange.config))
        password = self.setup(env, "ensure_admin").splitlines()[-1]
        running: dict[str, subprocess.Popen] = {}
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        try:
            for name, command in parts(env, addr, rate, simulated):
                running[name] = subprocess.Popen(command, env=env)
                self.log(f"started {name}: {' '.join(command[1:])}")
            if env.get("REDIS_URL"):
                # Reconcile now rather than at beat's first tick, so data arrives within seconds.
                for exchange in simulated:
                    for symbol in exchange.symbols:
                        self.setup(env, "collectors", "start", f"{exchange.exchange}:{symbol}")
                self.log("Flower: http://127.0.0.1:5555/")
            self.log(f"dashboard: http://{addr}/ (sign in as admin)")
            self.log(f"admin: http://{addr}/admin/  user admin  password {password}")
            while not stopping:
                exited = [name for name, process in running.items() if process.poll() is not None]
                if exited:
                    self.log(f"{', '.join(exited)} stopped; stopping the rest")
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop(running)

    def stop(self, running: dict[str, subprocess.Popen]) -> None:
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for name, process in running.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{name} did not stop in time: killing it")
                process.kill()
                process.wait()
        self.log("stopped")
