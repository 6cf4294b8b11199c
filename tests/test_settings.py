"""Settings come from the environment, fail clearly when wrong, and run with nothing set."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from tcp_dashboard.env import database_from_url, env_bool, env_number
from tests.helpers import ROOT


def run_manage(args: list[str], env: dict[str, str], timeout: float = 60):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bare_env(tmp_path, **extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: none of the project's variables."""
    keep = {"PATH", "HOME", "LANG", "SYSTEMROOT"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env["VAR_DIR"] = str(tmp_path / "var")
    env.update(extra)
    return env


def test_a_postgresql_url_becomes_a_pooled_database():
    db = database_from_url(
        "postgresql://trader:s%40cret@db.internal:6543/market?sslmode=require",
        pool={"min_size": 10, "max_size": 30},
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "trader",
        "s@cret",
        "db.internal",
        "6543",
        "market",
    )
    assert db["OPTIONS"] == {"sslmode": "require", "pool": {"min_size": 10, "max_size": 30}}


def test_an_sqlite_url_becomes_a_file_database():
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"


def test_an_unknown_database_scheme_is_refused_by_name():
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://localhost/db")


def test_bad_booleans_and_numbers_name_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG")
    monkeypatch.setenv("DB_POOL_SIZE", "ten")
    with pytest.raises(ImproperlyConfigured, match="DB_POOL_SIZE"):
        env_number("DB_POOL_SIZE", 10, cast=int)
    monkeypatch.setenv("DB_POOL_SIZE", "-1")
    with pytest.raises(ImproperlyConfigured, match="at least"):
        env_number("DB_POOL_SIZE", 10, minimum=1, cast=int)


def test_the_database_pool_follows_the_spec_timeout_and_recycle_and_the_role_maximum():
    from django.conf import settings

    assert settings.DB_POOL_TIMEOUT == 30.0
    assert settings.DB_POOL_RECYCLE == 3600.0
    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert settings.DB_POOL_ROLE == "command"  # the test run
    assert pool["max_size"] == 20  # DB_POOL_MAX_COMMAND of the test settings
    assert pool["min_size"] == settings.DB_POOL_SIZE
    assert pool["max_lifetime"] == 3600.0


def test_a_celery_worker_of_the_collectors_queue_sizes_its_pool_as_a_collector_worker(tmp_path):
    script = (
        "import sys; sys.argv = ['celery', '-A', 'tcp_dashboard', 'worker', '-Q', 'collectors'];"
        "import django; django.setup(); from django.conf import settings;"
        "pool = settings.DATABASES['default']['OPTIONS']['pool'];"
        "print(settings.DB_POOL_ROLE, pool['min_size'], pool['max_size'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tcp_dashboard.settings.base",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1/none",
        "DB_POOL_SIZE": "1",
        "DB_POOL_MAX_COLLECTORS": "7",
    }
    env.pop("DB_POOL_MAX_COMMAND", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.stdout.split() == ["collectors", "1", "7"], result.stderr


def test_the_retired_overflow_setting_is_refused_with_what_replaces_it(tmp_path):
    result = run_manage(["check"], bare_env(tmp_path, DB_MAX_OVERFLOW="20"))
    assert result.returncode != 0
    assert "DB_POOL_MAX_WEB" in result.stderr


def test_it_runs_on_embedded_defaults_with_nothing_set(tmp_path):
    env = bare_env(tmp_path)
    result = run_manage(["migrate", "--noinput"], env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "tcp_dashboard.sqlite3").exists()
    script = (
        "import django; django.setup(); from django.conf import settings;"
        "print(settings.CELERY_BROKER_URL, settings.DATABASES['default']['ENGINE'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "tcp_dashboard.settings.base"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["filesystem://", "django.db.backends.sqlite3"]


def test_a_task_round_trips_on_the_serverless_broker(tmp_path):
    env = bare_env(tmp_path, DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.base")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tcp_dashboard", "worker", "--pool", "solo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        script = (
            "from tcp_dashboard.celery import app; import django; django.setup();"
            "from marketdata.tasks import ping; print(ping.delay().get(timeout=60)['pong'])"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert result.stdout.strip() == "True", result.stderr


def test_production_settings_pass_the_deploy_check(tmp_path):
    env = bare_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.production",
        SECRET_KEY="k" * 20 + "3f9c2a7e1b8d4c6f0a5e9b2d7c1f4a8e6b3d0c9f",
        ALLOWED_HOSTS="dashboard.example.com",
    )
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = bare_env(tmp_path, DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.production")
    result = run_manage(["check"], env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_wsgi_process_freezes_its_start_up_objects_with_every_view_loaded(tmp_path):
    script = (
        "import gc, sys\n"
        "import tcp_dashboard.wsgi\n"
        "print(gc.get_freeze_count(), 'marketdata.api.views' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    frozen, views_loaded = done.stdout.split()
    assert int(frozen) > 50_000  # Django, DRF and the project's modules
    assert views_loaded == "True"
