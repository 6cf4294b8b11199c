"""`manage.py ensure_admin` prints a password only when it logs in, and never resets one."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from collectors.management.commands.ensure_admin import ensure_admin_user

pytestmark = pytest.mark.django_db


def logs_in(client, password: str) -> bool:
    return client.login(username="admin", password=password)


def test_the_first_run_creates_admin_with_a_password_that_logs_in(tmp_path, client):
    login = ensure_admin_user(tmp_path / "password.txt")
    assert login.line == f"user admin  password {login.password}"
    assert logs_in(client, login.password)


def test_a_later_run_prints_the_stored_password_after_checking_it(tmp_path, client):
    first = ensure_admin_user(tmp_path / "password.txt")
    again = ensure_admin_user(tmp_path / "password.txt")
    assert again.password == first.password
    assert logs_in(client, again.password)


def test_a_changed_password_is_not_printed_nor_reset(tmp_path, client):
    first = ensure_admin_user(tmp_path / "password.txt")
    user = get_user_model().objects.get(username="admin")
    user.set_password("the-operators-own-password")
    user.save()
    again = ensure_admin_user(tmp_path / "password.txt")
    assert again.password == ""
    assert first.password not in again.line
    assert "no longer logs in" in again.line
    assert "changepassword admin" in again.line
    assert logs_in(client, "the-operators-own-password")


def test_an_admin_made_elsewhere_keeps_its_password(tmp_path, client):
    get_user_model().objects.create_superuser("admin", "", "set-by-createsuperuser")
    login = ensure_admin_user(tmp_path / "password.txt")
    assert login.password == ""
    assert "set outside `make run`" in login.line
    assert logs_in(client, "set-by-createsuperuser")


def test_the_command_prints_one_line(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("user admin  password ")
