"""Sign-in lockout: repeated failures lock out the username and the address, on the
admin's and the dashboard's login pages alike; others are not affected."""

import subprocess
import sys

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.test import Client
from django.urls import reverse

from tests.helpers import ROOT, service_env

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-1"
PAGES = {"admin": "admin:login", "dashboard": "dashboard:login"}


@pytest.fixture
def users(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
    make = get_user_model().objects.create_user
    return [make(name, password=PASSWORD, is_staff=True) for name in ("alice", "bob", "carol")]


def sign_in(page: str, username: str, password: str, address: str) -> int:
    client = Client(REMOTE_ADDR=address)
    response = client.post(reverse(PAGES[page]), {"username": username, "password": password})
    if response.status_code == 302:
        return 200 if client.session.get("_auth_user_id") else 302
    return response.status_code


@pytest.mark.parametrize("page", PAGES)
def test_after_the_failure_limit_even_the_right_password_is_refused(users, page):
    answers = [sign_in(page, "alice", "wrong", "10.0.0.1") for _ in range(3)]
    assert answers[:2] == [200, 200]  # the form again, with its error
    assert answers[2] == 429
    assert sign_in(page, "alice", PASSWORD, "10.0.0.1") == 429


@pytest.mark.parametrize("page", PAGES)
def test_a_lockout_holds_for_the_user_elsewhere_and_for_the_address(users, page):
    for _ in range(3):
        sign_in(page, "alice", "wrong", "10.0.0.1")
    assert sign_in(page, "alice", PASSWORD, "10.0.0.2") == 429  # the user, from anywhere
    assert sign_in(page, "bob", PASSWORD, "10.0.0.1") == 429  # the address, for anyone
    assert sign_in(page, "carol", PASSWORD, "10.0.0.3") == 200  # others sign in


def test_counting_by_address_only_leaves_the_user_free_elsewhere(users, settings):
    settings.AXES_LOCKOUT_PARAMETERS = ["ip_address"]
    for _ in range(3):
        sign_in("admin", "alice", "wrong", "10.0.0.1")
    assert sign_in("admin", "alice", PASSWORD, "10.0.0.1") == 429
    assert sign_in("admin", "alice", PASSWORD, "10.0.0.2") == 200


def test_failures_on_both_pages_count_together(users):
    sign_in("admin", "alice", "wrong", "10.0.0.1")
    sign_in("dashboard", "alice", "wrong", "10.0.0.4")
    sign_in("admin", "alice", "wrong", "10.0.0.5")
    assert sign_in("dashboard", "alice", PASSWORD, "10.0.0.6") == 429


def test_the_lockout_ends_after_its_cool_off(users, settings):
    settings.AXES_COOLOFF_TIME = 0.001 / 3600  # hours: a millisecond
    for _ in range(3):
        sign_in("admin", "alice", "wrong", "10.0.0.1")
    assert sign_in("admin", "alice", PASSWORD, "10.0.0.1") == 200


def test_a_forged_forwarded_address_does_not_escape_the_lockout(users):
    client = Client(REMOTE_ADDR="10.0.0.9")
    for number in range(3):
        client.post(
            reverse("admin:login"),
            {"username": f"nobody{number}", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=f"192.0.2.{number}",
        )
    response = client.post(
        reverse("admin:login"),
        {"username": "carol", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="192.0.2.200",
    )
    assert response.status_code == 429


def test_the_defaults_are_documented_settings(settings):
    assert settings.AXES_FAILURE_LIMIT == settings.LOGIN_FAILURE_LIMIT == 5
    assert settings.AXES_LOCKOUT_PARAMETERS == ["username", "ip_address"]
    assert settings.AXES_COOLOFF_TIME == 15 / 60
    assert settings.AXES_VERBOSE is False


def test_a_password_check_without_a_request_still_works(users):
    assert authenticate(username="alice", password=PASSWORD) == users[0]
    assert authenticate(username="alice", password="wrong") is None


def test_the_start_up_prints_no_lockout_banner(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=service_env(LOG_LEVEL="INFO"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "AXES" not in done.stdout + done.stderr
