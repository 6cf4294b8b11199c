"""PostgreSQL for backups: where a database is, the client tools, and what its tables hold.

Passwords go to the client tools in PGPASSWORD, never on a command line (`ps` shows those).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from django.conf import settings
from psycopg import sql

from marketdata.backups.encryption import BackupError

# Rows are hashed from their text, so both ends must print values the same way.
STABLE_OUTPUT = [
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
]
SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"


@dataclass(frozen=True)
class Database:
    """A PostgreSQL database: a URL without its password, and the password apart."""

    url: str
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> Database:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise BackupError(
                f"backups need PostgreSQL: {parts.scheme or 'this'}:// databases are not "
                "supported (the embedded SQLite file is copied with `sqlite3 FILE .backup`)"
            )
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if parts.username:
            netloc = f"{quote(parts.username, safe='')}@{netloc}"
        password = "" if parts.password is None else unquote(parts.password)
        return cls(urlunsplit(("postgresql", netloc, parts.path, parts.query, "")), password)

    @classmethod
    def from_settings(cls, alias: str = "default") -> Database:
        db = settings.DATABASES[alias]
        if not db["ENGINE"].endswith("postgresql"):
            raise BackupError(
                "backups need PostgreSQL: DATABASE_URL is an SQLite file (the embedded "
                "default); copy it with `sqlite3 FILE .backup` or move to PostgreSQL"
            )
        options = {k: v for k, v in db.get("OPTIONS", {}).items() if isinstance(v, str)}
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(options.items()))
        netloc = db.get("HOST") or ""
        if db.get("PORT"):
            netloc = f"{netloc}:{db['PORT']}"
        if db.get("USER"):
            netloc = f"{quote(db['USER'], safe='')}@{netloc}"
        url = urlunsplit(("postgresql", netloc, "/" + quote(db["NAME"]), query, ""))
        return cls(url, db.get("PASSWORD") or "")

    @property
    def name(self) -> str:
        return unquote(urlsplit(self.url).path.lstrip("/")) or "postgres"

    def sibling(self, name: str) -> Database:
        """Another database on the same server, with the same credentials."""
        parts = urlsplit(self.url)
        return Database(urlunsplit(parts._replace(path="/" + quote(name))), self.password)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGDATABASE", "PGOPTIONS"):
            env.pop(name, None)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, **options) -> psycopg.Connection:
        kwargs = {"password": self.password} if self.password else {}
        return psycopg.connect(self.url, connect_timeout=10, **kwargs, **options)


def tool(name: str) -> str:
    """The path of a PostgreSQL client tool: in BACKUP_PG_BIN_DIR if set, else on PATH."""
    folder = settings.BACKUP_PG_BIN_DIR
    found = str(Path(folder) / name) if folder else shutil.which(name)
    if not found or not os.access(found, os.X_OK):
        where = f"in BACKUP_PG_BIN_DIR ({folder})" if folder else "on PATH"
        raise BackupError(
            f"{name} not found {where}: install the PostgreSQL client tools "
            "(Debian: postgresql-client) of the server's major version"
        )
    return found


def tool_version(path: str) -> str:
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def major_of(version_text: str) -> int:
    """15 for 'pg_dump (PostgreSQL) 15.20 (Debian ...)' or '15.20'."""
    found = re.search(r"\d+", version_text)
    if not found:
        raise BackupError(f"cannot read a PostgreSQL version from {version_text!r}")
    return int(found.group())


def check_dump_tool(tool_text: str, server_version_num: int) -> None:
    """pg_dump refuses a server of a newer major version than its own: say so first."""
    tool_major, server_major = major_of(tool_text), server_version_num // 10000
    if tool_major < server_major:
        raise BackupError(
            f"version mismatch: the server is PostgreSQL {server_major} but pg_dump is "
            f"{tool_major} ({tool_text}); install postgresql-client-{server_major} and point "
            "BACKUP_PG_BIN_DIR at its bin directory"
        )


def check_restore_tool(tool_text: str, dumped_with: str) -> None:
    """pg_restore cannot read archives written by a newer pg_dump."""
    tool_major, dump_major = major_of(tool_text), major_of(dumped_with)
    if tool_major < dump_major:
        raise BackupError(
            f"version mismatch: the backup was made by pg_dump {dump_major} ({dumped_with}) "
            f"but pg_restore is {tool_major} ({tool_text}); install "
            f"postgresql-client-{dump_major} and point BACKUP_PG_BIN_DIR at its bin directory"
        )


def server_version(conn: psycopg.Connection) -> tuple[str, int]:
    text = conn.execute("SELECT version()").fetchone()[0]
    return text, int(conn.execute("SHOW server_version_num").fetchone()[0])


@dataclass(frozen=True)
class TableStats:
    rows: int
    checksum: str
    first: str | None = None  # the earliest and latest "timestamp", ISO, for data tables
    last: str | None = None

    def as_dict(self) -> dict:
        found = {"rows": self.rows, "checksum": self.checksum}
        if self.first is not None:
            found.update(first=self.first, last=self.last)
        return found


def user_tables(conn: psycopg.Connection) -> list[tuple[str, str, bool]]:
    """(schema, table, has a timestamptz "timestamp" column) of every table outside the
    system schemas; a partitioned table counts once, with its partitions."""
    return conn.execute(
        f"""
        SELECT n.nspname, c.relname, EXISTS (
            SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attname = 'timestamp' AND NOT a.attisdropped
              AND a.atttypid = 'timestamptz'::regtype)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1, 2
        """
    ).fetchall()


def checksum_query(schema: str, table: str, timed: bool) -> sql.Composed:
    """Row count and an order-free checksum of a table: the sum of the first 64 bits of
    each row's MD5 (so no sort is needed), plus the time range for data tables."""
    target = sql.Identifier(schema, table)
    time_range = (
        sql.SQL(', min(t."timestamp"), max(t."timestamp")')
        if timed
        else sql.SQL(", NULL::timestamptz, NULL::timestamptz")
    )
    return sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint"
        "::numeric), 0)::text{} FROM {} AS t"
    ).format(time_range, target)


def table_stats(conn: psycopg.Connection) -> dict[str, TableStats]:
    """Every table's rows, checksum and time range, as `conn`'s transaction sees them."""
    for statement in STABLE_OUTPUT:
        conn.execute(statement)
    found = {}
    for schema, table, timed in user_tables(conn):
        rows, checksum, first, last = conn.execute(checksum_query(schema, table, timed)).fetchone()
        found[f"{schema}.{table}"] = TableStats(
            rows,
            checksum,
            first.isoformat() if first else None,
            last.isoformat() if last else None,
        )
    return found


def is_empty(database: Database) -> bool:
    """True when the database holds no table, view, sequence or function of its own."""
    with database.connect(autocommit=True) as conn:
        objects = conn.execute(
            f"""
            SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%'
                      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
                 + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_%')
            """
        ).fetchone()[0]
    return objects == 0


def create_database(server: Database, name: str) -> None:
    with server.sibling("postgres").connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(server: Database, name: str) -> None:
    with server.sibling("postgres").connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
