"""The spec's logging configuration: defaults, the file, the environment, and what they make."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tcp_dashboard.logs.config import SPEC_DEFAULTS, build_logging, read_options
from tcp_dashboard.logs.handlers import process_role
from tests.helpers import ROOT
from tests.test_settings import bare_env


def write(tmp_path, data) -> str:
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_with_nothing_set_the_spec_example_is_the_configuration():
    options = read_options(None, {})
    assert options.level == "INFO"
    assert options.format == "detailed"
    assert (options.console_output, options.file_output, options.cleanup) == (True, True, True)
    assert (options.max_files, options.log_directory) == (30, "./logs")
    assert (options.data_collectors.level, options.data_collectors.verbose) == ("INFO", False)
    assert (options.websocket_clients.level, options.websocket_clients.verbose) == ("DEBUG", True)


def test_the_file_changes_what_it_names_and_the_environment_wins_over_it(tmp_path):
    path = write(
        tmp_path,
        {
            "logging": {"level": "WARNING", "format": "json", "max_files": 5},
            "components": {"websocket_clients": {"verbose": False}},
        },
    )
    options = read_options(path, {"LOG_MAX_FILES": "7", "COLLECTORS_LOG_VERBOSE": "yes"})
    assert (options.level, options.format, options.max_files) == ("WARNING", "json", 7)
    assert options.websocket_clients == type(options.websocket_clients)("DEBUG", False)
    assert options.data_collectors.verbose is True
    assert options.file_output is True  # not in the file: the spec's default


def test_the_shipped_file_is_the_spec_example_and_gives_the_defaults():
    path = ROOT / "config" / "logging.json"
    assert json.loads(path.read_text()) == SPEC_DEFAULTS
    assert read_options(str(path), {}) == read_options(None, {})


def test_the_older_variable_names_still_work():
    options = read_options(None, {"LOG_DIR": "/srv/logs", "WEBSOCKET_LOG_LEVEL": "warning"})
    assert options.log_directory == "/srv/logs"
    assert options.websocket_clients.level == "WARNING"
    assert read_options(None, {"LOG_DIR": "/a", "LOG_DIRECTORY": "/b"}).log_directory == "/b"


@pytest.mark.parametrize(
    ("data", "environ", "message"),
    [
        ({"logging": {"levle": "INFO"}}, {}, "unknown field levle"),
        ({"components": {"database": {}}}, {}, "unknown field database"),
        ({"logging": {"level": "LOUD"}}, {}, "logging.level must be one of"),
        ({"logging": {"max_files": 0}}, {}, "logging.max_files must be a whole number"),
        ({"logging": {"file_output": "yes"}}, {}, "logging.file_output must be true or false"),
        (
            {"logging": {"format": "xml"}},
            {},
            "logging.format must be one of detailed, simple, json",
        ),
        ([], {}, "must be a JSON object"),
        ({}, {"LOG_CONSOLE_OUTPUT": "maybe"}, "LOG_CONSOLE_OUTPUT must be true or false"),
        ({}, {"LOG_MAX_FILES": "many"}, "LOG_MAX_FILES must be a whole number"),
    ],
)
def test_a_wrong_field_or_variable_is_named(tmp_path, data, environ, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        read_options(write(tmp_path, data), environ)


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ImproperlyConfigured, match=r"LOGGING_CONFIG_FILE .*nothing\.json"):
        read_options(str(tmp_path / "nothing.json"), {})
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ImproperlyConfigured, match="not JSON"):
        read_options(str(tmp_path / "broken.json"), {})


def test_the_console_shows_the_level_and_the_files_get_what_components_let_through(tmp_path):
    config = build_logging(read_options(None, {}), var_dir=tmp_path, role="web")
    assert config["handlers"]["console"]["level"] == "INFO"
    assert "level" not in config["handlers"]["file"]
    assert config["handlers"]["file"]["directory"] == str(tmp_path / "logs")
    assert config["loggers"]["websocket"]["level"] == "DEBUG"
    assert config["loggers"]["websocket_clients.frames"]["level"] == "DEBUG"
    assert config["loggers"]["data_collectors.points"]["level"] == "WARNING"
    assert config["root"] == {"handlers": ["console", "file"], "level": "INFO"}
    for handler in config["handlers"].values():
        assert handler["filters"] == ["redact"]

    console_only = build_logging(
        read_options(None, {"LOG_FILE_OUTPUT": "false"}), var_dir=tmp_path, role="web"
    )
    assert console_only["handlers"]["console"]["level"] == "NOTSET"
    nothing = read_options(None, {"LOG_FILE_OUTPUT": "false", "LOG_CONSOLE_OUTPUT": "false"})
    assert build_logging(nothing, var_dir=tmp_path, role="web")["handlers"] == {
        "none": {"class": "logging.NullHandler"}
    }


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/app/.venv/bin/gunicorn", "tcp_dashboard.wsgi"], "web"),
        (
            ["/x/celery", "-A", "tcp_dashboard", "worker", "-Q", "collectors", "-n", "c@%h"],
            "worker_collectors",
        ),
        (["/x/celery/__main__.py", "-A", "tcp_dashboard", "beat"], "beat"),
        (["manage.py", "collect", "--config", "x.json"], "collect"),
        (["-c"], "python"),
    ],
)
def test_each_process_names_its_role(argv, role):
    assert process_role(argv, {}) == role
    assert process_role(argv, {"LOG_PROCESS_ROLE": "my role"}) == "my_role"


def test_a_process_logs_as_the_file_says_in_json_to_its_own_file(tmp_path):
    path = write(
        tmp_path,
        {"logging": {"format": "json", "log_directory": "app-logs", "level": "WARNING"}},
    )
    script = (
        "import django, logging; django.setup();"
        "logging.getLogger('marketdata').info('not at INFO');"
        "logging.getLogger('marketdata').warning('to %s', 'postgresql://u:pw-123456@h/db')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=bare_env(
            tmp_path,
            DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.base",
            LOGGING_CONFIG_FILE=path,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    files = list(Path(tmp_path / "var" / "app-logs").glob("python-*.log"))
    assert len(files) == 1
    entries = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [(e["level"], e["logger"], e["message"]) for e in entries] == [
        ("WARNING", "marketdata", "to postgresql://***@h/db")
    ]
    assert set(entries[0]) == {"time", "level", "logger", "message", "process", "thread", "role"}
    assert json.loads(done.stderr)["message"] == "to postgresql://***@h/db"
