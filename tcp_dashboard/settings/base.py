"""Settings for every environment, read from environment variables.

With nothing set, the project runs on embedded defaults: an SQLite file for the
database and a broker on the local file system, so it starts with no services.
`.env.example` documents every variable.
"""

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from tcp_dashboard.env import (
    database_from_url,
    env_bool,
    env_file_path,
    env_list,
    env_number,
    env_str,
    load_env_file,
    may_create_sqlite,
    sqlite_open_existing,
)
from tcp_dashboard.logs.config import build_logging
from tcp_dashboard.logs.config import read_options as read_log_options
from tcp_dashboard.logs.handlers import process_role
from tcp_dashboard.settings.pools import pool_options, pool_role

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# What `make run` chose (DATABASE_URL, REDIS_URL, VAR_DIR), for every command in this
# checkout; real environment variables win. ENV_FILE names another file ("" for none).
ENV_FILE = env_file_path(BASE_DIR)
load_env_file(ENV_FILE)
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-set-SECRET_KEY-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "collectors",
    "marketdata",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tcp_dashboard.unavailable.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tcp_dashboard.urls"
WSGI_APPLICATION = "tcp_dashboard.wsgi.application"
# The web server runs the ASGI application (gunicorn's ASGI workers): the dashboard's live
# streams are async views (docs/dashboard.md).
ASGI_APPLICATION = "tcp_dashboard.asgi.application"
# The dashboard's own sign-in page; the admin keeps its own.
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:board"
LOGOUT_REDIRECT_URL = "dashboard:login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database. Each process keeps one connection pool (psycopg's) for its whole life, sized by
# what the process is (tcp_dashboard/settings/pools.py): DB_POOL_MAX_<ROLE> connections at
# most, DB_POOL_SIZE kept open while idle. The spec's pool_size, pool_timeout and
# pool_recycle are DB_POOL_SIZE, DB_POOL_TIMEOUT and DB_POOL_RECYCLE; a deployment's total
# is a sum over its processes (docs/deployment.md, "Database connections").
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'tcp_dashboard.sqlite3'}")
# A database that does not answer costs a web request seconds, not minutes (a 503). The web
# (gunicorn, runserver) ends statements after DATABASE_STATEMENT_TIMEOUT seconds and waits
# at most DB_POOL_TIMEOUT for a pooled connection; workers and commands run long
# statements (retention, rebuilds, migrations), so theirs have no statement timeout and
# the spec's 30 s pool wait unless set. A server that stops answering mid-query is given up
# on DATABASE_CONNECT_TIMEOUT seconds after the statement timeout (tcp_dashboard.postgresql).
WEB_PROCESS = process_role() in ("web", "runserver")
DATABASE_CONNECT_TIMEOUT = env_number("DATABASE_CONNECT_TIMEOUT", 3, minimum=2, cast=int)
DATABASE_STATEMENT_TIMEOUT = env_number("DATABASE_STATEMENT_TIMEOUT", 10.0 if WEB_PROCESS else 0)
DATABASE_READ_TIMEOUT = (
    DATABASE_STATEMENT_TIMEOUT + DATABASE_CONNECT_TIMEOUT if DATABASE_STATEMENT_TIMEOUT else None
)
DB_POOL = env_bool("DB_POOL", True)
DB_POOL_SIZE = env_number("DB_POOL_SIZE", 1, minimum=0, cast=int)
DB_POOL_TIMEOUT = env_number("DB_POOL_TIMEOUT", 5.0 if WEB_PROCESS else 30.0, minimum=0.1)
DB_POOL_RECYCLE = env_number("DB_POOL_RECYCLE", 3600.0, minimum=1)
DB_POOL_ROLE = env_str("DB_POOL_ROLE", "") or pool_role(process_role())
if "DB_MAX_OVERFLOW" in os.environ:
    raise ImproperlyConfigured(
        "DB_MAX_OVERFLOW is gone: a process's largest pool is set per role with "
        "DB_POOL_MAX_WEB, DB_POOL_MAX_COLLECTORS, DB_POOL_MAX_TASKS, DB_POOL_MAX_BEAT and "
        "DB_POOL_MAX_COMMAND (docs/deployment.md); remove DB_MAX_OVERFLOW from the environment"
    )
_pool = pool_options(
    DB_POOL_ROLE, os.environ, idle=DB_POOL_SIZE, timeout=DB_POOL_TIMEOUT, recycle=DB_POOL_RECYCLE
)
DATABASES = {"default": database_from_url(DATABASE_URL, pool=_pool if DB_POOL else None)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Only migrate and runstack create the file; any other command on a missing one fails
    # with a message (manage.py) instead of leaving an empty file behind.
    if not may_create_sqlite(sys.argv):
        sqlite_open_existing(DATABASES["default"])
else:
    DATABASES["default"]["ENGINE"] = "tcp_dashboard.postgresql"
    _options = DATABASES["default"]["OPTIONS"]
    _options.setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    # A network that silently drops packets fails an idle connection in 25 s, not hours.
    for _key, _value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
    ):
        _options.setdefault(_key, _value)
    if DATABASE_STATEMENT_TIMEOUT:
        _statement = f"-c statement_timeout={int(DATABASE_STATEMENT_TIMEOUT * 1000)}"
        _options["options"] = f"{_options.get('options', '')} {_statement}".strip()
if not DB_POOL:
    # Without the pool, keep connections open for pool_recycle seconds instead.
    DATABASES["default"]["CONN_MAX_AGE"] = DB_POOL_RECYCLE
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before the password is checked.
    "tcp_dashboard.lockout.SignInLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve the admin's static files straight from the apps when they are not collected.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_AUTOREFRESH = DEBUG

# Redis carries the Celery broker, results and the collectors' heartbeats. With no
# REDIS_URL the broker and results live in files under VAR_DIR (one machine only).
REDIS_URL = env_str("REDIS_URL", "")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND", REDIS_URL or f"file://{VAR_DIR / 'celery' / 'results'}"
)
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(VAR_DIR / "celery" / "broker"),
        "data_folder_out": str(VAR_DIR / "celery" / "broker"),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
    for _folder in ("broker", "processed", "results", "control"):
        (VAR_DIR / "celery" / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = env_number("CELERY_TASK_TIME_LIMIT", 600, minimum=1, cast=int)
CELERY_TASK_SOFT_TIME_LIMIT = env_number("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1, cast=int)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Processes of a task worker (prefork) unless its command line says --concurrency; each
# holds up to DB_POOL_MAX_TASKS database connections (docs/deployment.md).
CELERY_WORKER_CONCURRENCY = env_number("CELERY_WORKER_CONCURRENCY", 2, minimum=1, cast=int)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Every task's queue, by name: collectors run on their own workers ("collectors" queue).
CELERY_TASK_ROUTES = {
    "marketdata.*": {"queue": "default"},
    # Stop and restart are sent to the direct queue of the worker that runs the stream.
    "collectors.start": {"queue": "collectors"},
    "collectors.stop": {"queue": "collectors"},
    "collectors.restart": {"queue": "collectors"},
    "collectors.*": {"queue": "default"},
}
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Logging: the spec's logging configuration (docs/logging.md). Its example is the default;
# LOGGING_CONFIG_FILE names a JSON file in the same shape, and LOG_* variables override it.
# Every handler redacts secrets; each process writes its own files under VAR_DIR/logs.
LOGGING_CONFIG_FILE = env_str("LOGGING_CONFIG_FILE", "")
LOG_OPTIONS = read_log_options(LOGGING_CONFIG_FILE)
LOGGING = build_logging(
    LOG_OPTIONS,
    var_dir=VAR_DIR,
    role=process_role(),
    max_file_mb=env_number("LOG_MAX_FILE_MB", 100.0, minimum=0),
)
# Error pages and error e-mails redact URLs with credentials and every known secret.
DEFAULT_EXCEPTION_REPORTER = "tcp_dashboard.logs.reporter.RedactingExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "tcp_dashboard.logs.reporter.RedactingReporterFilter"

# The API (/api/v1/). Reads need a signed-in user unless API_PUBLIC_READ; control needs
# staff. Tokens for API clients (create them in the admin or with `manage.py
# drf_create_token USER`), sessions for the browsable API. No CORS headers are sent, so
# browsers on other origins cannot read answers.
API_PUBLIC_READ = env_bool("API_PUBLIC_READ", False)
# The longest start-to-end range one request may ask for, in days.
API_MAX_RANGE_DAYS = env_number("API_MAX_RANGE_DAYS", 366, minimum=1, cast=int)
# Rows per page by default, and the most a client may ask for with ?limit=.
API_PAGE_SIZE = env_number("API_PAGE_SIZE", 500, minimum=1, cast=int)
API_MAX_PAGE_SIZE = env_number("API_MAX_PAGE_SIZE", 5000, minimum=1, cast=int)
# Requests per user (anonymous: per address, when reads are public): N/second|minute|hour|day.
API_THROTTLE_USER = env_str("API_THROTTLE_USER", "1200/minute")
API_THROTTLE_ANON = env_str("API_THROTTLE_ANON", "120/minute")
# Anonymous callers of /api/v1/health/, per address (signed-in users count as API users).
API_THROTTLE_HEALTH = env_str("API_THROTTLE_HEALTH", "60/minute")
# Anonymous callers of the health answer share one check per this many seconds (0: each
# call checks), so many callers cost one check.
API_HEALTH_CACHE_SECONDS = env_number("API_HEALTH_CACHE_SECONDS", 2.0)

# Security against a hostile client (docs/security.md).
# Reverse proxies in front of the web server that append to X-Forwarded-For. The client's
# address, which throttles and the login lockout key on, is taken from that header only
# this many entries from its right; 0 (the default) ignores the header.
TRUSTED_PROXIES = env_number("TRUSTED_PROXIES", 0, cast=int)
# Sign-in lockout (django-axes) on the admin's and the dashboard's login pages: after
# LOGIN_FAILURE_LIMIT failed sign-ins for one username, or from one address, both are
# refused (429) until LOGIN_LOCKOUT_MINUTES pass without another failure; a success does
# not reset the count. `manage.py axes_reset` lifts every lockout.
LOGIN_FAILURE_LIMIT = env_number("LOGIN_FAILURE_LIMIT", 5, minimum=1, cast=int)
LOGIN_LOCKOUT_MINUTES = env_number("LOGIN_LOCKOUT_MINUTES", 15.0, minimum=0.01)
# What a lockout counts by: "username", "ip_address", or both (each on its own).
LOGIN_LOCKOUT_BY = env_list("LOGIN_LOCKOUT_BY", "username,ip_address")
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = LOGIN_LOCKOUT_MINUTES / 60  # hours
AXES_LOCKOUT_PARAMETERS = LOGIN_LOCKOUT_BY
AXES_CLIENT_IP_CALLABLE = "tcp_dashboard.clients.client_address"
AXES_RESET_ON_SUCCESS = False
AXES_USERNAME_FORM_FIELD = "username"
AXES_VERBOSE = False  # no start-up banner on the console
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
for _name in LOGIN_LOCKOUT_BY:
    if _name not in ("username", "ip_address"):
        raise ImproperlyConfigured(f"LOGIN_LOCKOUT_BY: {_name!r} is not username or ip_address")

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated API client gets 401 with WWW-Authenticate.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "marketdata.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "marketdata.api.renderers.ContentNegotiation",
    "DEFAULT_THROTTLE_CLASSES": [
        "marketdata.api.throttles.UserThrottle",
        "marketdata.api.throttles.AnonThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": API_THROTTLE_USER,
        "anon": API_THROTTLE_ANON,
        "health": API_THROTTLE_HEALTH,
    },
    # The throttles find the client with tcp_dashboard.clients (TRUSTED_PROXIES); DRF's own
    # lookup is told the same, for anything else that asks it.
    "NUM_PROXIES": TRUSTED_PROXIES,
    "EXCEPTION_HANDLER": "marketdata.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TCP Dashboard API",
    "DESCRIPTION": (
        "Market data collected from exchanges: trades, candles (stamped at the END of their "
        "interval), order books, tickers, collectors and health. Prices and sizes are decimal "
        "strings; times are ISO 8601 in UTC. Authenticate with `Authorization: Token <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page describe the API, they hold no data.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The docs page's scripts are served from here: these machines may have no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Caches hold the API's throttle counts: shared through Redis when there is one.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Candles (docs/aggregation-strategy.md). An interval is final GRACE seconds after its end;
# the rollup rebuilds closed candles of the last LOOKBACK seconds from raw_trades.
CANDLE_GRACE = env_number("CANDLE_GRACE", 2.0)
CANDLE_ROLLUP_LOOKBACK = env_number("CANDLE_ROLLUP_LOOKBACK", 900.0, minimum=1)
CANDLE_ROLLUP_TIMEFRAMES = env_list("CANDLE_ROLLUP_TIMEFRAMES", "1m,5m,15m,1h,4h,1d")
# Timeframes built live from each collector's trades.
CANDLE_LIVE_TIMEFRAMES = env_list("CANDLE_LIVE_TIMEFRAMES", "1s,1m,5m,15m,1h,4h,1d")

# Collectors.
# The oldest TLS version a connection to an exchange may use: 1.3 (the spec), or 1.2 for an
# exchange that has not moved yet. Plaintext ws:// and http:// go to loopback hosts only.
EXCHANGE_TLS_MIN_VERSION = env_str("EXCHANGE_TLS_MIN_VERSION", "1.3")
if EXCHANGE_TLS_MIN_VERSION not in ("1.2", "1.3"):
    raise ImproperlyConfigured(
        f"EXCHANGE_TLS_MIN_VERSION must be 1.3 or 1.2, not {EXCHANGE_TLS_MIN_VERSION!r}"
    )
# How long a collector may go without data is each exchange's max_silence_duration (the
# admin, the configuration file; 60 s by default): there is no environment default for it.
COLLECTOR_SPILL_DIR = Path(env_str("COLLECTOR_SPILL_DIR", str(VAR_DIR / "spill")))
# Seconds a collector's Redis lease lives without renewal; heartbeats (and renewals) every
# COLLECTOR_HEARTBEAT_INTERVAL seconds (at most half the lease).
COLLECTOR_LEASE_TTL = env_number("COLLECTOR_LEASE_TTL", 15.0, minimum=0.5)
COLLECTOR_HEARTBEAT_INTERVAL = env_number("COLLECTOR_HEARTBEAT_INTERVAL", 5.0, minimum=0.1)
# The storage sink commits what is pending as soon as its writer is free; this is only the
# longest its writer sleeps between looks (a ceiling, never a wait before writing).
COLLECTOR_FLUSH_INTERVAL = env_number("COLLECTOR_FLUSH_INTERVAL", 0.02, minimum=0.001)
# Rows the storage sink keeps in memory while the database is away; beyond, it spills to
# COLLECTOR_SPILL_DIR, and when that fails too the collectors stop reading (docs/collectors.md).
COLLECTOR_MAX_MEMORY_ROWS = env_number("COLLECTOR_MAX_MEMORY_ROWS", 200_000, minimum=2, cast=int)
# A collector that starts fills in the trades its market made since the newest one stored,
# if that one is at most this many seconds old (a failover, a restart); else it takes the
# exchange's recent trades only.
COLLECTOR_BACKFILL_WINDOW = env_number("COLLECTOR_BACKFILL_WINDOW", 900.0, minimum=0)
# Bounds a received value must keep to be stored or aggregated (collectors/bounds.py,
# docs/collectors.md): an exchange time at most this many seconds before / after the time
# it was received; book levels a side in one message, and kept in a local book; bytes of
# the exchange's item kept as raw_data. Out of bounds: counted as a bad message, not stored.
COLLECTOR_MAX_CLOCK_SKEW_PAST = env_number("COLLECTOR_MAX_CLOCK_SKEW_PAST", 7 * 86400.0, minimum=1)
COLLECTOR_MAX_CLOCK_SKEW_FUTURE = env_number("COLLECTOR_MAX_CLOCK_SKEW_FUTURE", 30.0, minimum=0)
COLLECTOR_MAX_BOOK_LEVELS = env_number("COLLECTOR_MAX_BOOK_LEVELS", 5000, minimum=25, cast=int)
COLLECTOR_MAX_RAW_BYTES = env_number("COLLECTOR_MAX_RAW_BYTES", 64 * 1024, minimum=1024, cast=int)

# Backups (docs/backups.md). Encrypted with BACKUP_ENCRYPTION_KEY, which is read from the
# environment when needed and never kept in settings; BACKUP_OLD_KEYS still decrypt.
BACKUP_DIR = Path(env_str("BACKUP_DIR", str(VAR_DIR / "backups")))
# Rotation: the newest backup of each of the last N days, ISO weeks and months that have one.
BACKUP_KEEP_DAILY = env_number("BACKUP_KEEP_DAILY", 7, cast=int)
BACKUP_KEEP_WEEKLY = env_number("BACKUP_KEEP_WEEKLY", 4, cast=int)
BACKUP_KEEP_MONTHLY = env_number("BACKUP_KEEP_MONTHLY", 12, cast=int)
# Health is unhealthy with no verified backup for this long, or no passed restore drill
# for BACKUP_DRILL_MAX_AGE_HOURS (0: drills are not required).
BACKUP_MAX_AGE_HOURS = env_number("BACKUP_MAX_AGE_HOURS", 48.0, minimum=1)
BACKUP_DRILL_MAX_AGE_HOURS = env_number("BACKUP_DRILL_MAX_AGE_HOURS", 192.0)
# pg_dump's gzip level for its custom format (0: none, 9: smallest and slowest).
BACKUP_COMPRESSION = env_number("BACKUP_COMPRESSION", 6, cast=int)
# Where pg_dump, pg_restore and psql are (empty: on PATH); they must be at least the
# server's major version.
BACKUP_PG_BIN_DIR = env_str("BACKUP_PG_BIN_DIR", "")
# Hard time limit of the backup and restore-drill tasks, in seconds.
BACKUP_TIME_LIMIT = env_number("BACKUP_TIME_LIMIT", 6 * 3600, minimum=120, cast=int)
# Rows per table the restore drill compares between the restored copy and the live tables.
BACKUP_DRILL_SAMPLE_ROWS = env_number("BACKUP_DRILL_SAMPLE_ROWS", 200, cast=int)
if BACKUP_COMPRESSION > 9:
    raise ImproperlyConfigured(f"BACKUP_COMPRESSION must be 0 to 9, not {BACKUP_COMPRESSION}")

# Data lifecycle (docs/data-lifecycle.md). Days each kind of data stays in the database
# (its hot window, editable per exchange in the admin); older days are written to Parquet
# files under ARCHIVE_DIR first (those kinds that are archived), then removed.
RETENTION_DAYS = {
    "trade": env_number("RETENTION_TRADE_DAYS", 30, minimum=1, cast=int),
    "orderbook": env_number("RETENTION_ORDERBOOK_DAYS", 2, minimum=1, cast=int),
    "ticker": env_number("RETENTION_TICKER_DAYS", 7, minimum=1, cast=int),
    "candle": env_number("RETENTION_CANDLE_DAYS", 7, minimum=1, cast=int),
    "balance": env_number("RETENTION_BALANCE_DAYS", 365, minimum=1, cast=int),
    "candles": env_number("RETENTION_CANDLES_DAYS", 730, minimum=1, cast=int),
    "candles_1s": env_number("RETENTION_CANDLES_1S_DAYS", 2, minimum=1, cast=int),
    "collector_status": env_number("RETENTION_COLLECTOR_STATUS_DAYS", 7, minimum=1, cast=int),
}
ARCHIVE_DIR = Path(env_str("ARCHIVE_DIR", str(VAR_DIR / "archive")))
# The retention task and command lower their process's CPU priority by this (os.nice),
# so collectors on the same machine keep their latency; 0 leaves it.
RETENTION_NICE = env_number("RETENTION_NICE", 10, cast=int)
# After each 10,000 rows it archives, retention rests this many times as long as they took.
ARCHIVE_PACE = env_number("ARCHIVE_PACE", 1.0)
# Daily partitions (PostgreSQL) are created this many days ahead.
PARTITIONS_AHEAD_DAYS = env_number("PARTITIONS_AHEAD_DAYS", 7, minimum=2, cast=int)
