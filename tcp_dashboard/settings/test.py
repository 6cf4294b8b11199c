"""Test settings: the base settings against real PostgreSQL and Redis on loopback.

Both can be pointed elsewhere with DATABASE_URL and REDIS_URL.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tcp_dashboard")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DB_POOL_SIZE", "2")

from tcp_dashboard.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
