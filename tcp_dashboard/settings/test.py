"""Test settings: the base settings against real PostgreSQL and Redis on loopback.

Both can be pointed elsewhere with DATABASE_URL and REDIS_URL.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tcp_dashboard")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DB_POOL_SIZE", "2")
# The test run is one process whose threads (live servers, concurrent clients) share its pool.
os.environ.setdefault("DB_POOL_MAX_COMMAND", "20")
# The test run, and the processes it starts, log to the console (captured by pytest) at
# INFO, with no files and no frame traces, unless a test asks for them.
os.environ.setdefault("LOG_FILE_OUTPUT", "false")
os.environ.setdefault("WEBSOCKET_LOG_LEVEL", "INFO")
os.environ.setdefault("WEBSOCKET_LOG_VERBOSE", "false")

from tcp_dashboard.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
