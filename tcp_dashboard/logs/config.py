"""The spec's logging configuration, read into Django's LOGGING (docs/logging.md).

    {"logging": {"level", "format", "console_output", "file_output", "cleanup",
                 "max_files", "log_directory"},
     "components": {"data_collectors": {"level", "verbose"},
                    "websocket_clients": {"level", "verbose"}}}

The spec's example is the default; a JSON file named by LOGGING_CONFIG_FILE changes any
field, and environment variables (ENVIRONMENT below) change it again. The console shows
`level` and above when log files are written; what components log below it (DEBUG,
frame and data-point traces) goes to the files only, so a terminal stays readable.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tcp_dashboard.env import FALSE_WORDS, TRUE_WORDS

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("detailed", "simple", "json")
COMPONENTS = ("data_collectors", "websocket_clients")
SPEC_DEFAULTS: dict[str, Any] = {
    "logging": {
        "level": "INFO",
        "format": "detailed",
        "console_output": True,
        "file_output": True,
        "cleanup": True,
        "max_files": 30,
        "log_directory": "./logs",
    },
    "components": {
        "data_collectors": {"level": "INFO", "verbose": False},
        "websocket_clients": {"level": "DEBUG", "verbose": True},
    },
}
# (section, field) -> environment variables, the first one set wins.
ENVIRONMENT: dict[tuple[str, str], tuple[str, ...]] = {
    ("logging", "level"): ("LOG_LEVEL",),
    ("logging", "format"): ("LOG_FORMAT",),
    ("logging", "console_output"): ("LOG_CONSOLE_OUTPUT",),
    ("logging", "file_output"): ("LOG_FILE_OUTPUT",),
    ("logging", "cleanup"): ("LOG_CLEANUP",),
    ("logging", "max_files"): ("LOG_MAX_FILES",),
    ("logging", "log_directory"): ("LOG_DIRECTORY", "LOG_DIR"),
    ("data_collectors", "level"): ("COLLECTORS_LOG_LEVEL",),
    ("data_collectors", "verbose"): ("COLLECTORS_LOG_VERBOSE",),
    ("websocket_clients", "level"): ("WEBSOCKET_LOG_LEVEL",),
    ("websocket_clients", "verbose"): ("WEBSOCKET_LOG_VERBOSE",),
}
FIELD_TYPES = {**{field: type(v) for field, v in SPEC_DEFAULTS["logging"].items()}, "verbose": bool}
BOOLEANS = ("console_output", "file_output", "cleanup")
FORMAT_STRINGS = {
    "detailed": "%(asctime)s %(levelname)s %(name)s [%(process)d:%(threadName)s] %(message)s",
    "simple": "%(asctime)s %(levelname)s %(message)s",
}
# Loggers of each component; the trace logger is on when the component is verbose.
COMPONENT_LOGGERS = {"data_collectors": ("collectors",), "websocket_clients": ("websocket",)}
TRACE_LOGGERS = {
    "data_collectors": "data_collectors.points",
    "websocket_clients": "websocket_clients.frames",
}


@dataclass(frozen=True)
class Component:
    level: str
    verbose: bool


@dataclass(frozen=True)
class LogOptions:
    level: str
    format: str
    console_output: bool
    file_output: bool
    cleanup: bool
    max_files: int
    log_directory: str
    data_collectors: Component
    websocket_clients: Component

    def component(self, name: str) -> Component:
        return getattr(self, name)


def read_options(path: str | None, environ=os.environ) -> LogOptions:
    """The spec's defaults, then the file at `path`, then the environment."""
    merged = copy.deepcopy(SPEC_DEFAULTS)
    if path:
        merge_file(merged, read_json(path), path)
    for (section, field), names in ENVIRONMENT.items():
        for name in names:
            if environ.get(name, "").strip():
                where = merged["logging"] if section == "logging" else merged["components"][section]
                where[field] = convert(environ[name].strip(), FIELD_TYPES[field], name)
                break
    return validated(merged)


def read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise ImproperlyConfigured(f"LOGGING_CONFIG_FILE {path}: {error.strerror}") from None
    except ValueError as error:
        raise ImproperlyConfigured(f"LOGGING_CONFIG_FILE {path}: not JSON: {error}") from None


def merge_file(merged: dict, data: Any, path: str) -> None:
    where = f"LOGGING_CONFIG_FILE {path}"
    expect_keys(data, merged, where)
    expect_keys(data.get("logging", {}), merged["logging"], f"{where}: logging")
    merged["logging"].update(data.get("logging", {}))
    components = data.get("components", {})
    expect_keys(components, merged["components"], f"{where}: components")
    for name, fields in components.items():
        expect_keys(fields, merged["components"][name], f"{where}: components.{name}")
        merged["components"][name].update(fields)


def expect_keys(data: Any, known: dict, where: str) -> None:
    if not isinstance(data, dict):
        raise ImproperlyConfigured(f"{where} must be a JSON object")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ImproperlyConfigured(
            f"{where}: unknown field {', '.join(unknown)} (known: {', '.join(known)})"
        )


def convert(text: str, kind: type, name: str) -> Any:
    if kind is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false, not {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a whole number, not {text!r}") from None
    return text


def validated(merged: dict) -> LogOptions:
    general = merged["logging"]
    checks = [
        ("logging.level", general["level"], check_level),
        ("logging.format", general["format"], check_format),
        ("logging.max_files", general["max_files"], check_max_files),
        ("logging.log_directory", general["log_directory"], check_text),
        *[(f"logging.{field}", general[field], check_bool) for field in BOOLEANS],
    ]
    for name in COMPONENTS:
        fields = merged["components"][name]
        checks += [
            (f"components.{name}.level", fields["level"], check_level),
            (f"components.{name}.verbose", fields["verbose"], check_bool),
        ]
    values = {}
    for where, value, check in checks:
        values[where] = check(where, value)
    return LogOptions(
        level=values["logging.level"],
        format=values["logging.format"],
        console_output=general["console_output"],
        file_output=general["file_output"],
        cleanup=general["cleanup"],
        max_files=general["max_files"],
        log_directory=general["log_directory"],
        **{
            name: Component(
                values[f"components.{name}.level"], merged["components"][name]["verbose"]
            )
            for name in COMPONENTS
        },
    )


def check_level(where: str, value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in LEVELS:
        raise ImproperlyConfigured(f"{where} must be one of {', '.join(LEVELS)}, not {value!r}")
    return value.upper()


def check_format(where: str, value: Any) -> str:
    if value not in FORMATS:
        raise ImproperlyConfigured(f"{where} must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def check_max_files(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(f"{where} must be a whole number of at least 1, not {value!r}")
    return value


def check_text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ImproperlyConfigured(f"{where} must be a directory path, not {value!r}")
    return value


def check_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{where} must be true or false, not {value!r}")
    return value


def log_directory(options: LogOptions, var_dir: Path) -> Path:
    """`log_directory`; a relative one is under VAR_DIR, which every process may write."""
    directory = Path(options.log_directory).expanduser()
    return directory if directory.is_absolute() else var_dir / directory


def build_logging(
    options: LogOptions, *, var_dir: Path, role: str, max_file_mb: float = 100
) -> dict:
    """Django's LOGGING for these options."""
    formatter = (
        {"()": "tcp_dashboard.logs.handlers.JsonFormatter", "role": role}
        if options.format == "json"
        else {"format": FORMAT_STRINGS[options.format]}
    )
    handlers: dict[str, dict] = {}
    if options.console_output:
        handlers["console"] = {
            "class": "logging.StreamHandler",
            "formatter": "main",
            "filters": ["redact"],
            # With files, lower levels go to the files only; without, show what comes.
            "level": options.level if options.file_output else "NOTSET",
        }
    if options.file_output:
        handlers["file"] = {
            "()": "tcp_dashboard.logs.handlers.ProcessFileHandler",
            "directory": str(log_directory(options, var_dir)),
            "role": role,
            "max_files": options.max_files,
            "cleanup": options.cleanup,
            "max_bytes": int(max_file_mb * (1 << 20)),
            "formatter": "main",
            "filters": ["redact"],
        }
    if not handlers:  # else Python's last-resort handler prints warnings, unredacted
        handlers["none"] = {"class": "logging.NullHandler"}
    loggers: dict[str, dict] = {
        # Django's own handlers would bypass the redaction filter: use the root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        # The simulators' server library: a line per connection at INFO, every frame in
        # full at DEBUG. Warnings and errors only.
        "websockets": {
            "level": options.level if options.level in ("ERROR", "CRITICAL") else "WARNING"
        },
    }
    for name in COMPONENTS:
        component = options.component(name)
        for logger in COMPONENT_LOGGERS[name]:
            loggers[logger] = {"level": component.level}
        loggers[TRACE_LOGGERS[name]] = {"level": "DEBUG" if component.verbose else "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "tcp_dashboard.logs.redaction.RedactSecrets"}},
        "formatters": {"main": formatter},
        "handlers": handlers,
        "root": {"handlers": list(handlers), "level": options.level},
        "loggers": loggers,
    }
