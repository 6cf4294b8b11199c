"""Across the API: per-user throttling, no CORS, and error bodies that reveal nothing."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.test import RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.api.errors import exception_handler
from marketdata.api.throttles import LOCAL
from tcp_dashboard.clients import client_address
from tests.helpers import free_port

pytestmark = pytest.mark.django_db

URL = "/api/v1/trades/"


def client_for(name: str) -> APIClient:
    user = get_user_model().objects.create_user(name, password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def low_rates(settings, redis_client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/minute", "anon": "2/minute"},
    }


def test_each_user_has_their_own_request_rate(low_rates):
    alice, bob = client_for("alice"), client_for("bob")
    assert [alice.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    throttled = alice.get(URL)
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert bob.get(URL).status_code == 200


def test_anonymous_public_reads_are_throttled_by_address(low_rates, settings):
    settings.API_PUBLIC_READ = True
    assert [APIClient().get(URL).status_code for _ in range(3)] == [200, 200, 429]


def test_a_new_forwarded_address_on_every_request_does_not_escape_the_limit(low_rates, settings):
    settings.API_PUBLIC_READ = True
    answers = [
        APIClient().get(URL, HTTP_X_FORWARDED_FOR=f"198.51.{n // 256}.{n % 256}").status_code
        for n in range(300)
    ]
    assert answers.count(200) == 2
    assert answers.count(429) == 298


def test_behind_one_trusted_proxy_each_client_has_its_own_limit(low_rates, settings):
    settings.API_PUBLIC_READ = True
    settings.TRUSTED_PROXIES = 1

    def get(forwarded: str) -> int:
        return APIClient().get(URL, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

    # The proxy appends the address it saw; what the client wrote before it is not trusted.
    assert [get(f"1.2.3.{n}, 203.0.113.7").status_code for n in range(3)] == [200, 200, 429]
    assert get("203.0.113.8").status_code == 200


def test_without_redis_the_limit_holds_in_the_process(low_rates, settings):
    settings.REDIS_URL = ""
    LOCAL.clear()
    alice = client_for("alice")
    assert [alice.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    LOCAL.clear()


def test_no_cors_headers_are_sent_to_other_origins():
    response = client_for("carol").get(URL, HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("access-control")]


def test_an_unexpected_error_is_a_bare_500_and_is_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="marketdata.api.errors"):
        response = exception_handler(RuntimeError("SELECT secret FROM settings"), {})
    assert response.status_code == 500
    assert response.data == {"detail": "Internal server error."}
    assert "SELECT secret" in caplog.text  # the details go to the log, not the client


def test_a_database_outage_is_a_503_without_details():
    error = OperationalError('connection to server at "10.0.0.5", port 5432 failed')
    response = exception_handler(error, {})
    assert response.status_code == 503
    assert "10.0.0.5" not in str(response.data)


def test_an_unknown_api_path_is_a_json_404_that_reveals_nothing():
    response = client_for("dave").get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such API path; see /api/v1/docs/"}


def test_the_browsable_api_answers_a_signed_in_browser():
    user = get_user_model().objects.create_user("erin", password="a-long-password")
    client = APIClient()
    client.force_login(user)
    response = client.get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"Trade List" in response.content


def test_when_redis_does_not_answer_the_limit_holds_in_the_process(low_rates, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    LOCAL.clear()
    alice = client_for("alice")
    assert [alice.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    LOCAL.clear()


@pytest.mark.parametrize(
    ("proxies", "forwarded", "client"),
    [
        (0, "203.0.113.7", "10.0.0.2"),  # no proxy: the header is the client's own words
        (1, "1.2.3.4, 203.0.113.7", "203.0.113.7"),  # what our proxy appended
        (2, "1.2.3.4, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        (2, "203.0.113.7", "10.0.0.2"),  # fewer entries than proxies: not from them
        (1, "not-an-address", "10.0.0.2"),
    ],
)
def test_the_client_address_trusts_only_the_configured_proxies(
    settings, proxies, forwarded, client
):
    settings.TRUSTED_PROXIES = proxies
    request = RequestFactory().get(URL, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == client
