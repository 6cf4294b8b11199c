"""Production settings: the base settings, hardened; `manage.py check --deploy` is clean."""

from django.core.exceptions import ImproperlyConfigured

from tcp_dashboard.env import env_bool, env_number, env_str
from tcp_dashboard.logs.handlers import process_role
from tcp_dashboard.settings.base import *  # noqa: F403
from tcp_dashboard.settings.flower import flower_auth_problem

SECRET_KEY = env_str("SECRET_KEY")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set to at least 50 random characters")
DEBUG = False

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Container health checks talk plain HTTP from inside the host.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 31536000, cast=int)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Static files are collected (`collectstatic`) into STATIC_ROOT and served with hashed names.
WHITENOISE_USE_FINDERS = False
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# .env.example's example passwords are refused (docker-compose.yml reads .env).
if DATABASES["default"].get("PASSWORD") == "change-me":  # noqa: F405
    raise ImproperlyConfigured(
        "the database password is still .env.example's example (POSTGRES_PASSWORD=change-me): "
        "choose a real one"
    )
# Flower runs behind the proxy (docker-compose.yml, deploy/Caddyfile) with its own login:
# the process that starts it refuses to without real credentials.
FLOWER_BASIC_AUTH = env_str("FLOWER_BASIC_AUTH")
if process_role() == "flower" and flower_auth_problem(FLOWER_BASIC_AUTH):
    raise ImproperlyConfigured(flower_auth_problem(FLOWER_BASIC_AUTH))
