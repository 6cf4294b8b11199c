"""The checkout's .env: what `make run` chose, read by every manage.py command, never
overriding a real environment variable; and no command but migrate creates an SQLite file."""

import os
import subprocess
import sys

import pytest

from tcp_dashboard import env as env_module
from tcp_dashboard.env import load_env_file, read_env_file, update_env_file
from tests.helpers import ROOT


def manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def newcomer_env(tmp_path, **extra: str) -> dict[str, str]:
    """A second shell: none of the project's variables, only where the .env file is."""
    keep = {"PATH", "HOME", "LANG"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env["ENV_FILE"] = str(tmp_path / ".env")
    env.update(extra)
    return env


def test_the_file_is_read_with_comments_quotes_and_export(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# a comment\n\nexport A=1\nB = 'two words'\nC=\"x=y\"\nD=\n")
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_a_line_that_is_not_name_equals_value_is_named(tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    path = tmp_path / ".env"
    path.write_text("A=1\nthis is not a setting\n")
    with pytest.raises(ImproperlyConfigured, match="line 2"):
        read_env_file(path)


def test_a_real_environment_variable_wins_over_the_file(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("RUN12_SET_IN_SHELL=file\nRUN12_ONLY_IN_FILE=file\n")
    monkeypatch.setenv("RUN12_SET_IN_SHELL", "shell")
    monkeypatch.delenv("RUN12_ONLY_IN_FILE", raising=False)
    try:
        assert load_env_file(path) == {"RUN12_ONLY_IN_FILE": "file"}
        assert os.environ["RUN12_SET_IN_SHELL"] == "shell"
        assert os.environ["RUN12_ONLY_IN_FILE"] == "file"
    finally:
        os.environ.pop("RUN12_ONLY_IN_FILE", None)


def test_updating_keeps_the_operators_own_lines_and_rewrites_only_the_chosen_ones(tmp_path):
    path = tmp_path / ".env"
    path.write_text("# mine\nSECRET_KEY=mine\n")
    update_env_file(path, {"DATABASE_URL": "sqlite:///old.sqlite3", "REDIS_URL": "redis://x"})
    update_env_file(path, {"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": ""})
    assert read_env_file(path) == {
        "SECRET_KEY": "mine",
        "DATABASE_URL": "postgresql://u@h/db",
        "REDIS_URL": "",
    }
    text = path.read_text()
    assert text.startswith("# mine\nSECRET_KEY=mine\n# Chosen by `make run`")
    assert text.count("Chosen by `make run`") == 1
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_variable_the_operator_wrote_counts_as_set_and_is_not_rewritten(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("DATABASE_URL=postgresql://mine@db/prod\n")
    update_env_file(path, {"DATABASE_URL": "sqlite:///chosen.sqlite3", "REDIS_URL": ""})
    assert read_env_file(path)["DATABASE_URL"] == "postgresql://mine@db/prod"
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(env_module, "chosen_from_file", set())
    load_env_file(path)
    # The operator's line is as good as an exported variable; runstack's own choice is not.
    assert env_module.explicit_environ()["DATABASE_URL"] == "postgresql://mine@db/prod"
    assert "REDIS_URL" not in env_module.explicit_environ()


def test_a_command_in_another_shell_uses_the_database_the_file_names(tmp_path):
    database = tmp_path / "chosen.sqlite3"
    env = newcomer_env(tmp_path, VAR_DIR=str(tmp_path / "var"))
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{database}\nREDIS_URL=\n")
    assert manage(["migrate", "--noinput", "--skip-checks"], env).returncode == 0
    assert manage(["createsuperuser", "--noinput", "--username", "admin", "--email", ""], env)
    done = manage(["drf_create_token", "admin"], env)
    assert done.returncode == 0, done.stderr
    assert "Generated token" in done.stdout
    assert not (tmp_path / "var" / "tcp_dashboard.sqlite3").exists()


def test_without_a_database_a_command_says_so_and_creates_no_empty_file(tmp_path):
    env = newcomer_env(tmp_path, VAR_DIR=str(tmp_path / "var"))
    done = manage(["drf_create_token", "admin"], env)
    assert done.returncode == 1
    assert "No database at" in done.stderr
    assert "make run" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "var" / "tcp_dashboard.sqlite3").exists()


def test_migrate_still_creates_the_sqlite_file(tmp_path):
    env = newcomer_env(tmp_path, VAR_DIR=str(tmp_path / "var"))
    done = manage(["migrate", "--noinput", "--skip-checks"], env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "tcp_dashboard.sqlite3").exists()
