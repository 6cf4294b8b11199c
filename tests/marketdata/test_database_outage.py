"""The web tier while PostgreSQL does not answer: the real web server (gunicorn, as `make run`
starts it) reaches the test database through a TCP proxy that is cut (connections reset and
refused) or stalled (connections open, nothing forwarded). Every endpoint answers 503 within
a bound derived from the configured timeouts, health says the database is down, and all
answer again once it is back."""

import http.client
import subprocess
import sys
import time

import orjson
import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.authtoken.models import Token

from collectors.management.commands.runstack import web_server
from tcp_dashboard.postgresql.base import DeadlineConnection, answer_within
from tests.helpers import free_port, service_env, wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

CONNECT_TIMEOUT = 2  # seconds: libpq's least
STATEMENT_TIMEOUT = 1
POOL_TIMEOUT = 2
# The longest any answer may take: a request that waits out a stalled query, then a
# connection, then the pool, finishes in well under this; one that hangs does not.
BOUND = 3 * (CONNECT_TIMEOUT + STATEMENT_TIMEOUT + POOL_TIMEOUT)

PAIR = "exchange=okx&symbol=BTC-USDT"
API_READS = [
    "/api/v1/trades/",
    f"/api/v1/candles/?{PAIR}&timeframe=1m",
    "/api/v1/market-data/?data_type=ticker",
    f"/api/v1/orderbook/latest/?{PAIR}",
    f"/api/v1/ticker/latest/?{PAIR}",
    "/api/v1/collectors/",
    "/api/v1/collectors/okx:BTC-USDT/health/",
]
PAGES = ["/admin/", "/admin/collectors/tradingpair/", "/", "/collectors/"]


class WebServer:
    def __init__(self, port: int, process: subprocess.Popen, log) -> None:
        self.port, self.process, self.log = port, process, log

    def ask(self, path: str, *, method: str = "GET", headers: dict | None = None):
        """(status, content type, body); raises TimeoutError if no answer within BOUND."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=BOUND)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def health(self) -> tuple[int, dict]:
        status, _, body = self.ask("/api/v1/health/")
        return status, orjson.loads(body)


@pytest.fixture
def proxy():
    database = settings.DATABASES["default"]
    with TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432)) as proxy:
        yield proxy


@pytest.fixture(params=["pooled", "unpooled"])
def web(request, proxy, tmp_path):
    database = settings.DATABASES["default"]
    port = free_port()
    env = service_env(
        DATABASE_URL=f"postgresql://{database['USER']}@127.0.0.1:{proxy.port}/{database['NAME']}",
        DB_POOL="1" if request.param == "pooled" else "0",
        DB_POOL_SIZE="2",
        DB_POOL_MAX_WEB="4",
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
        DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        DATABASE_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT),
        VAR_DIR=str(tmp_path / "var"),
    )
    log = (tmp_path / "web.log").open("wb")
    command = web_server(f"127.0.0.1:{port}", workers=1)
    process = subprocess.Popen(
        command, env=env, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT
    )
    server = WebServer(port, process, log)
    try:
        wait_until(lambda: answers(server), timeout=60, message="the web server")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def answers(server: WebServer) -> bool:
    try:
        server.ask("/healthz")
    except OSError:
        assert server.process.poll() is None, "the web server exited"
        return False
    return True


@pytest.fixture
def staff_headers():
    user = get_user_model().objects.create_user("operator", is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(user)
    token = Token.objects.create(user=user).key
    return {
        "api": {"Authorization": f"Token {token}"},
        "browser": {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"},
    }


def every_answer(web: WebServer, headers: dict) -> list[tuple[str, int, str, bytes]]:
    answers = [(path, *web.ask(path, headers=headers["api"])) for path in API_READS]
    restart = "/api/v1/collectors/okx:BTC-USDT/restart/"
    answers.append((restart, *web.ask(restart, method="POST", headers=headers["api"])))
    answers += [(path, *web.ask(path, headers=headers["browser"])) for path in PAGES]
    browsable = {**headers["browser"], "Accept": "text/html"}  # the browsable API
    answers.append(("/api/v1/trades/ (browser)", *web.ask("/api/v1/trades/", headers=browsable)))
    return answers


def database_check(web: WebServer, headers: dict) -> dict:
    """The database's check as a signed-in operator sees it (while the database answers)."""
    _, _, body = web.ask("/api/v1/health/", headers=headers["api"])
    answer = orjson.loads(body)
    if "checks" not in answer:  # signing in failed: the database does not answer yet
        return {"ok": False, "detail": answer.get("detail", "")}
    return answer["checks"]["database"]


def outage(proxy: TcpProxy, kind: str) -> None:
    if kind == "stall":
        proxy.stall()
    else:
        proxy.cut()


@pytest.mark.parametrize("kind", ["cut", "stall"])
def test_every_endpoint_answers_503_in_time_while_the_database_does_not_answer(
    web, proxy, staff_headers, kind
):
    before = {path: status for path, status, _, _ in every_answer(web, staff_headers)}
    assert all(status < 500 for status in before.values()), before

    outage(proxy, kind)
    during = every_answer(web, staff_headers)

    assert {path: status for path, status, _, _ in during} == dict.fromkeys(before, 503)
    for path, _, content_type, body in during:
        if path.startswith("/api/"):
            assert content_type == "application/json", path
            assert orjson.loads(body)["detail"].startswith("The service is temporarily"), path
        else:
            assert content_type.startswith("text/html"), path
            assert b"The database does not answer" in body, path
        assert str(proxy.port).encode() not in body

    proxy.restore()
    wait_until(
        lambda: database_check(web, staff_headers)["ok"], timeout=60, message="the database back"
    )
    after = {path: status for path, status, _, _ in every_answer(web, staff_headers)}
    assert after == before


@pytest.mark.parametrize("kind", ["cut", "stall"])
def test_health_says_the_database_is_down_in_time_and_checks_nothing_else_on_it(
    web, proxy, staff_headers, kind
):
    assert database_check(web, staff_headers) == {"ok": True, "detail": "answers"}
    outage(proxy, kind)
    for _ in range(3):  # each pooled connection in turn, then new ones
        # Signing in needs the database: the anonymous answer names the failing checks.
        status, body = web.health()
        assert status == 503
        assert body["status"] == "unhealthy"
        assert body["checks"]["names"] == ["database", "collectors", "backups", "storage"]
        assert body["checks"]["failing"] == 4
        time.sleep(settings.API_HEALTH_CACHE_SECONDS)  # the next call checks anew
    assert web.ask("/api/v1/health/", headers=staff_headers["api"])[0] == 503
    proxy.restore()
    wait_until(
        lambda: database_check(web, staff_headers)["ok"], timeout=60, message="the database back"
    )


def test_a_statement_slower_than_the_statement_timeout_is_a_503(web, staff_headers):
    """The database answers, slowly: a lock held elsewhere keeps the trades query waiting
    until the server ends it at the statement timeout."""
    database = settings.DATABASES["default"]
    holder = psycopg.connect(
        host=database["HOST"], port=database["PORT"], user=database["USER"], dbname=database["NAME"]
    )
    try:
        holder.execute("LOCK TABLE raw_trades IN ACCESS EXCLUSIVE MODE")
        status, _, body = web.ask("/api/v1/trades/", headers=staff_headers["api"])
    finally:
        holder.close()
    assert status == 503
    assert orjson.loads(body)["detail"].startswith("The service is temporarily")
    assert web.ask("/api/v1/trades/", headers=staff_headers["api"])[0] == 200


def test_a_connection_gives_up_on_a_stalled_server_and_closes(proxy):
    database = settings.DATABASES["default"]
    connection = DeadlineConnection.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=database["USER"],
        dbname=database["NAME"],
        connect_timeout=CONNECT_TIMEOUT,
        autocommit=True,
    )
    with answer_within(connection, 1):
        assert connection.execute("SELECT 1").fetchone() == (1,)
        proxy.stall()
        with pytest.raises(psycopg.OperationalError, match="did not answer within 1 s"):
            connection.execute("SELECT 1")
    assert connection.closed
    with pytest.raises(psycopg.OperationalError, match="timeout expired"):
        DeadlineConnection.connect(
            host="127.0.0.1", port=proxy.port, user=database["USER"], connect_timeout=2
        )


def settings_of(role: str) -> list:
    script = (
        "import django, json; django.setup(); from django.conf import settings as s;"
        "print(json.dumps([s.DATABASE_STATEMENT_TIMEOUT, s.DB_POOL_TIMEOUT,"
        " s.DATABASES['default']['OPTIONS'].get('options', ''),"
        " s.DATABASES['default']['OPTIONS']['connect_timeout']]))"
    )
    env = {
        key: value
        for key, value in service_env(LOG_PROCESS_ROLE=role).items()
        if key not in ("DATABASE_STATEMENT_TIMEOUT", "DB_POOL_TIMEOUT", "DATABASE_CONNECT_TIMEOUT")
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout.splitlines()[-1])


def test_only_the_web_gets_a_statement_timeout_and_a_short_pool_wait():
    assert settings_of("web") == [10.0, 5.0, "-c statement_timeout=10000", 3]
    # workers and commands run long statements: retention, rebuilds, migrations
    assert settings_of("worker-default") == [0, 30.0, "", 3]
    assert settings_of("migrate") == [0, 30.0, "", 3]
