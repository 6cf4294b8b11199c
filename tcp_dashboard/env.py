"""Reading settings from environment variables, with errors that name the variable."""

import os
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.getenv(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.getenv(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_number(name: str, default: float, *, minimum: float = 0, cast=float):
    value = os.getenv(name)
    if value is None:
        return default
    try:
        number = cast(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value!r}")
    return number


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def database_from_url(url: str, *, pool: dict | None = None) -> dict:
    """Django DATABASES entry for a postgresql:// or sqlite:/// URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db
        name = unquote(parts.path[1:]) if parts.path.startswith("/") else parts.path
        if not name:
            raise ImproperlyConfigured("DATABASE_URL sqlite:/// needs a file path")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            # WAL lets the admin read while a collector writes.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    if parts.scheme in {"postgres", "postgresql"}:
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if pool:
            options["pool"] = pool
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL must start with postgresql:// or sqlite:///, not {parts.scheme!r}://"
    )


# The checkout's .env file ----------------------------------------------------------------
# `make run` records what it chose (database, Redis) in the checkout's .env, so every
# manage.py command in that checkout, in any shell, uses the same services. Real
# environment variables always win over the file; ENV_FILE names another file, and an
# empty ENV_FILE reads none. The file may hold an operator's own lines too (docker
# compose reads it): those are above CHOSEN_MARKER, and runstack takes them as given;
# it rewrites only what is below the marker.

CHOSEN_MARKER = "# Chosen by `make run` (manage.py runstack), which rewrites the lines below."
CHOSEN_NOTE = (
    "# Your own settings go above that line; real environment variables win over this file.\n"
)
chosen_from_file: set[str] = set()  # the names this process took from runstack's lines


def env_file_path(base_dir: Path) -> Path | None:
    """The .env file settings read: ENV_FILE, else the checkout's .env; None when disabled."""
    value = os.environ.get("ENV_FILE")
    if value is None:
        return base_dir / ".env"
    return Path(value) if value else None


def parse_env_line(line: str) -> tuple[str, str] | None:
    """(name, value) of a NAME=value line; None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    name, sep, value = line.removeprefix("export ").partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name.isidentifier():
        raise ValueError(line[:40])
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return name, value


def read_env_sections(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(the operator's variables, runstack's chosen ones) of the file; empty if it is absent."""
    own: dict[str, str] = {}
    chosen: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return own, chosen
    section = own
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() == CHOSEN_MARKER:
            section = chosen
            continue
        try:
            parsed = parse_env_line(line)
        except ValueError as error:
            raise ImproperlyConfigured(f"{path}, line {number}: not NAME=value: {error}") from None
        if parsed is not None:
            section[parsed[0]] = parsed[1]
    return own, chosen


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; blank lines, comments and `export ` prefixes are allowed."""
    own, chosen = read_env_sections(path)
    return {**chosen, **own}


def load_env_file(path: Path | None) -> dict[str, str]:
    """Put the file's variables into os.environ where they are not set already."""
    if path is None:
        return {}
    own, chosen = read_env_sections(path)
    taken = {}
    for name, value in {**chosen, **own}.items():
        if name not in os.environ:
            os.environ[name] = value
            taken[name] = value
            if name not in own:
                chosen_from_file.add(name)
    return taken


def explicit_environ() -> dict[str, str]:
    """os.environ without what runstack chose last time: what the caller and the
    operator's own lines of .env really set."""
    return {name: value for name, value in os.environ.items() if name not in chosen_from_file}


def update_env_file(path: Path, values: dict[str, str]) -> None:
    """Rewrite runstack's lines with these variables, keeping the operator's lines above
    the marker (a variable set there is not written again)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    own_lines = lines[: lines.index(CHOSEN_MARKER)] if CHOSEN_MARKER in lines else lines
    own, _ = read_env_sections(path)
    chosen = [f"{name}={value}" for name, value in values.items() if name not in own]
    body = "\n".join(own_lines).rstrip("\n")
    text = (body + "\n" if body else "") + CHOSEN_MARKER + "\n" + CHOSEN_NOTE
    text += "".join(line + "\n" for line in chosen)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o600)  # it may hold database passwords
    os.replace(temporary, path)


# SQLite files are created by the commands that set them up, never by the first reader ------

CREATING_COMMANDS = {"migrate", "runstack"}


def may_create_sqlite(argv: list[str]) -> bool:
    """Of manage.py's commands, only migrate and runstack may create an SQLite file: any
    other on a missing file would make an empty one and then fail on a missing table.
    Other programs (celery, gunicorn, scripts) are left as Django makes them."""
    if not argv or Path(argv[0]).name != "manage.py":
        return True
    return len(argv) > 1 and argv[1] in CREATING_COMMANDS


def sqlite_open_existing(database: dict) -> None:
    """Open the entry's SQLite file read-write without creating it (a URI with mode=rw)."""
    uri = f"file:{quote(str(Path(database['NAME']).resolve()))}?mode=rw"
    database["OPTIONS"]["database"] = uri


def missing_sqlite_file(database: dict) -> Path | None:
    if not database["ENGINE"].endswith("sqlite3"):
        return None
    path = Path(database["NAME"])
    return None if path.exists() else path
