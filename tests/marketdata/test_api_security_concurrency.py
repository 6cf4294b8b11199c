"""A per-user limit holds when many threads ask at once, across web server processes."""

import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from collectors.management.commands.runstack import web_server
from tests.helpers import ROOT, free_port, service_env, wait_until

LIMIT = 40
THREADS = 24
REQUESTS = 200


@pytest.fixture
def server(tmp_path, redis_client):
    """The web server as `make run` starts it, with two worker processes."""
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            web_server(f"127.0.0.1:{port}", workers=2),
            cwd=ROOT,
            env=service_env(
                DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.test",
                API_THROTTLE_USER=f"{LIMIT}/hour",
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(answers, 60, 0.2, message="the web server to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def status_of(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.django_db(transaction=True)
def test_parallel_threads_get_no_more_than_the_limit_through(server):
    user = get_user_model().objects.create_user("racer", password="a-long-password")
    token = Token.objects.create(user=user).key
    url = f"{server}/api/v1/trades/"
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda _: status_of(url, token), range(REQUESTS)))
    assert answers.count(200) == LIMIT
    assert answers.count(429) == REQUESTS - LIMIT
