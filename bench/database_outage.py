"""Database outage benchmark: how long the web tier takes to answer while PostgreSQL does not.

The web server as `make run` starts it (gunicorn, ASGI workers, the pooled connections and
the web's default timeouts) reaches its database through a loopback TCP proxy
(tests/tcp_proxy.py), which is cut (connections reset, new ones refused) and then stalled
(connections open, nothing forwarded). For each, the seconds `health/` and `trades/` take
to answer, with their status, then how long after the database is back they answer 200.

    .venv/bin/python bench/database_outage.py [--requests 4]

Uses (and drops) its own database, tcp_bench_outage, on the PostgreSQL server at
BENCH_DATABASE_SERVER (default postgresql://postgres@127.0.0.1:5432).
"""

import argparse
import http.client
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchdb import SERVER, WebServer, drop_database, recreate_database, use_database  # noqa: E402

DB_NAME = "tcp_bench_outage"
use_database(DB_NAME, DB_POOL_SIZE="2")

import django  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from tcp_proxy import TcpProxy  # noqa: E402

PATIENCE = 120.0  # seconds: an answer slower than this counts as a hang


def ask(port: int, path: str, token: str) -> tuple[int | str, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        connection.request("GET", path, headers={"Authorization": f"Token {token}"})
        status: int | str = connection.getresponse().status
    except TimeoutError:
        status = "no answer"
    finally:
        connection.close()
    return status, time.monotonic() - started


def back_after(port: int, token: str) -> float:
    started = time.monotonic()
    while ask(port, "/api/v1/trades/", token)[0] != 200:
        time.sleep(0.2)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4, help="Requests per endpoint.")
    args = parser.parse_args()
    recreate_database(DB_NAME)
    try:
        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("bench", password="a-long-password")
        token = Token.objects.create(user=user).key
        server = urlsplit(SERVER)
        user = server.netloc.rpartition("@")[0]
        with TcpProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
            login = f"{user}@" if user else ""
            url = f"{server.scheme}://{login}127.0.0.1:{proxy.port}/{DB_NAME}"
            web = WebServer(workers=1, DATABASE_URL=url)
            try:
                print("the web server with its default database timeouts (README, Configuration)")
                for kind in ("cut", "stall"):
                    assert ask(web.port, "/api/v1/trades/", token)[0] == 200
                    if kind == "stall":
                        proxy.stall()
                    else:
                        proxy.cut()
                    for path in ("/api/v1/health/", "/api/v1/trades/"):
                        answers = [ask(web.port, path, token) for _ in range(args.requests)]
                        shown = ", ".join(f"{status} in {took:.1f} s" for status, took in answers)
                        print(f"{kind:5}  {path:16}  {shown}")
                    proxy.restore()
                    print(f"{kind:5}  200 again {back_after(web.port, token):.1f} s after restore")
            finally:
                web.stop()
    finally:
        drop_database(DB_NAME)


if __name__ == "__main__":
    main()
