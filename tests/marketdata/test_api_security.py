"""Across the API: per-user throttling, no CORS, and error bodies that reveal nothing."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import OperationalError
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketdata.api.errors import exception_handler

pytestmark = pytest.mark.django_db

URL = "/api/v1/trades/"


def client_for(name: str) -> APIClient:
    user = get_user_model().objects.create_user(name, password="a-long-password")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def low_rates(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/minute", "anon": "2/minute"},
    }
    yield
    cache.clear()


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
