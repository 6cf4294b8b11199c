"""Django's PostgreSQL backend, except that a server which stops answering is given up on.

The statement timeout (DATABASE_STATEMENT_TIMEOUT) ends a slow query in the server, but a
stalled network or server never delivers that error: the client would wait for ever.
Every connection this backend makes, pooled or not, is a DeadlineConnection, whose waits
for the server end after DATABASE_READ_TIMEOUT seconds with OperationalError (a 503 in the
web), closing the connection, which is left mid-conversation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql.psycopg_any import IsolationLevel
from psycopg import errors

__all__ = ["DatabaseWrapper", "DeadlineConnection", "answer_within"]


class DeadlineConnection(psycopg.Connection):
    # Seconds to wait for each answer; None: DATABASE_READ_TIMEOUT, which may be None too
    # (wait as long as the server takes).
    read_timeout: float | None = None

    def wait(self, gen, interval: float = 0.1, timeout: float | None = None) -> Any:
        deadline = self.read_timeout or settings.DATABASE_READ_TIMEOUT
        if timeout is not None or not deadline:  # the caller's own deadline, or none
            return super().wait(gen, interval=interval, timeout=timeout)
        try:
            return super().wait(gen, interval=interval, timeout=deadline)
        except errors._WaitTimeout:  # psycopg's own, raised by its wait functions
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {deadline:g} s"
            ) from None


@contextmanager
def answer_within(connection: Any, seconds: float) -> Iterator[None]:
    """For the block, a DB-API connection (a cursor's `.connection`) waits at most `seconds`
    for each answer; other kinds of connection (SQLite) are left as they are."""
    if not isinstance(connection, DeadlineConnection):
        yield
        return
    before = connection.read_timeout
    connection.read_timeout = seconds
    try:
        yield
    finally:
        connection.read_timeout = before


class DatabaseWrapper(postgresql.DatabaseWrapper):
    @property
    def pool(self):
        options = self.settings_dict["OPTIONS"]
        if options.get("pool") and self.alias not in self._connection_pools:
            pool = options["pool"] if isinstance(options["pool"], dict) else {}
            options["pool"] = {**pool, "connection_class": DeadlineConnection}
        return super().pool

    def get_new_connection(self, conn_params: dict) -> DeadlineConnection:
        if self.pool is not None:  # the pool makes DeadlineConnections
            return super().get_new_connection(conn_params)
        # As Django connects without a pool, with this module's connection class.
        level = self.settings_dict["OPTIONS"].get("isolation_level")
        try:
            self.isolation_level = IsolationLevel(
                IsolationLevel.READ_COMMITTED if level is None else level
            )
        except ValueError:
            raise ImproperlyConfigured(
                f"Invalid transaction isolation level {level} specified. "
                "Use one of the psycopg.IsolationLevel values."
            ) from None
        connection = DeadlineConnection.connect(**conn_params)
        if level is not None:
            connection.isolation_level = self.isolation_level
        return connection
