"""Database connection pools sized by what a process is (docs/deployment.md, "Database
connections"): each process keeps one pool for its whole life, as large as its role needs."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

# The most connections one process of each role may hold at once, by default.
#   web:        a web server worker process (its requests, the dashboard's live hub)
#   collectors: a collector worker (4 control-task threads, the live candles; its storage
#               sink holds one more connection of its own, outside the pool)
#   tasks:      one process of a task worker (a prefork child runs one task at a time)
#   beat:       Celery beat (its schedule)
#   command:    anything else: manage.py commands, Flower, the test run
ROLE_MAXIMUM = {"web": 4, "collectors": 6, "tasks": 2, "beat": 2, "command": 5}
# The setting that overrides each role's maximum.
ROLE_SETTING = {
    "web": "DB_POOL_MAX_WEB",
    "collectors": "DB_POOL_MAX_COLLECTORS",
    "tasks": "DB_POOL_MAX_TASKS",
    "beat": "DB_POOL_MAX_BEAT",
    "command": "DB_POOL_MAX_COMMAND",
}
# Seconds an extra connection (above the idle size) stays open unused before it closes.
MAX_IDLE = 60.0


def pool_role(process: str) -> str:
    """The pool role of a process, from its role name (tcp_dashboard.logs.handlers, which
    writes `worker_collectors` for `celery worker -Q collectors`)."""
    process = process.replace("_", "-")
    if process == "web":
        return "web"
    if process == "collect" or process.startswith("worker-collectors"):
        return "collectors"
    if process.startswith("worker"):
        return "tasks"
    if process == "beat":
        return "beat"
    return "command"


def pool_options(
    role: str, environ: Mapping[str, str], *, idle: int, timeout: float, recycle: float
) -> dict:
    """psycopg_pool.ConnectionPool keywords for a process of `role`.

    DB_POOL_MAX_<ROLE> overrides the role's maximum; `idle` connections stay open while
    the process is idle (never more than the maximum).
    """
    if role not in ROLE_MAXIMUM:
        raise ImproperlyConfigured(
            f"DB_POOL_ROLE must be one of {', '.join(ROLE_MAXIMUM)}, not {role!r}"
        )
    name = ROLE_SETTING[role]
    raw = environ.get(name)
    try:
        maximum = ROLE_MAXIMUM[role] if raw is None else int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if maximum < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1, not {raw!r}")
    return {
        "min_size": min(idle, maximum),
        "max_size": maximum,
        "timeout": timeout,
        "max_lifetime": recycle,
        "max_idle": MAX_IDLE,
    }
