"""Removing secrets from text before anyone sees it: log records, error pages, tool errors.

Three nets, each catching what the others may miss:
- credentials inside URLs (`postgresql://user:pw@host`, `redis://:pw@host`, `ws://key:secret@`),
- values of secret-looking fields, in JSON, Python reprs, query strings and headers
  (`"sign": "..."`, `passphrase=...`, `Authorization: Token ...`, `sessionid=...`),
- the values themselves of the secrets this process knows: environment variables named
  like a key, secret, password, token or passphrase, and the passwords in its URLs.
"""

from __future__ import annotations

import html
import logging
import os
import re
import time
from urllib.parse import quote, unquote

MASK = "***"

URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s/?#@'\"<>]+)@"
)
AUTHORIZATION = re.compile(
    r"(?P<name>(?<![\w-])[\w-]*(?:authorization|cookie))(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>(?:(?:token|bearer|basic|digest)\s+)?[^\s\"',;]+)",
    re.IGNORECASE,
)
SECRET_FIELD = re.compile(
    r"(?P<name>(?<![\w-])(?:[\w-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|private[_-]?key|encryption[_-]?key|old[_-]?keys|signature|session[_-]?id"
    r"|sessionid|credential)[\w-]*|(?:[\w-]*[_-])?sign|pwd))"
    r"(?P<sep>[\"']?\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?"
    r"|[^\s,;&)}\]\"']+(?:,[^\s,;&)}\]\"'=:]+)*)",  # a,b,c: a list of keys is one value
    re.IGNORECASE,
)
BARE_TOKEN = re.compile(r"\b(?P<scheme>Token|Bearer)\s+[A-Za-z0-9._~+/=-]{16,}")
SECRET_ENV_NAME = re.compile(r"KEY|SECRET|PASS|TOKEN|SIGNATURE|CREDENTIAL|AUTH", re.IGNORECASE)
NOT_SECRET_VALUE = re.compile(r"^(?:true|false|yes|no|on|off|none|\d+(?:\.\d+)?|/.*)$", re.I)
MIN_SECRET_LENGTH = 6
REFRESH_SECONDS = 5.0


def _mask_value(match: re.Match) -> str:
    value = match["value"]
    quote_char = value[0] if value[:1] in ("'", '"') else ""
    closing = quote_char if quote_char and len(value) > 1 and value.endswith(quote_char) else ""
    return f"{match['name']}{match['sep']}{quote_char}{MASK}{closing}"


def _mask_url(match: re.Match) -> str:
    return f"{match['scheme']}{MASK}@"


def without_credentials(url: str) -> str:
    """`url` with any user and password taken out (`ws://key:secret@host/` -> `ws://host/`),
    for log lines and messages that name an endpoint."""
    return URL_CREDENTIALS.sub(lambda match: match["scheme"], url)


def url_passwords(text: str) -> list[str]:
    found = []
    for match in URL_CREDENTIALS.finditer(text):
        user, _, password = match["userinfo"].partition(":")
        found += [part for part in (password, user if password else "") if len(part) >= 4]
    return found


def secrets_of(environ: dict[str, str], extra: list[str] = ()) -> list[str]:
    """The secret values named by an environment (and `extra`), in every form they may
    take in text: as is, URL-decoded, URL-encoded and HTML-escaped."""
    values = set()
    for name, value in environ.items():
        values.update(url_passwords(value))
        if SECRET_ENV_NAME.search(name) and not name.endswith(("_FILE", "_DIR", "_PATH", "_SOCK")):
            for part in re.split(r"[,\s]+", value):
                values.add(part)
                values.add(part.partition(":")[2])  # user:password pairs
    values.update(extra)
    forms = set()
    for value in values:
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH or NOT_SECRET_VALUE.match(value):
            continue
        forms.update({value, unquote(value), quote(value, safe=""), html.escape(value)})
    return sorted((form for form in forms if len(form) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class KnownSecrets:
    """The secrets of this process as one pattern, refreshed every few seconds (tests and
    the environment may change them). No lock: two threads may build it at once, to the
    same result, and a signal handler that logs while it is built must not deadlock."""

    def __init__(self) -> None:
        self._pattern: re.Pattern | None = None
        self._built = 0.0

    def pattern(self) -> re.Pattern | None:
        now = time.monotonic()
        if now - self._built > REFRESH_SECONDS:
            values = secrets_of(dict(os.environ), settings_secrets())
            self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
            self._built = now
        return self._pattern


def settings_secrets() -> list[str]:
    """Passwords Django settings hold (the test runner sets some without the environment)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return []
        found = [db.get("PASSWORD") or "" for db in settings.DATABASES.values()]
        for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            found += url_passwords(str(getattr(settings, name, "") or ""))
        return found
    except Exception:  # settings that cannot load must not stop a log line
        return []


KNOWN = KnownSecrets()


def redact(text: str) -> str:
    """`text` with every secret it holds replaced by ***."""
    if not text:
        return text
    text = AUTHORIZATION.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    text = SECRET_FIELD.sub(_mask_value, text)
    text = URL_CREDENTIALS.sub(_mask_url, text)
    text = BARE_TOKEN.sub(lambda m: f"{m['scheme']} {MASK}", text)
    known = KNOWN.pattern()
    if known is not None:
        text = known.sub(MASK, text)
    return text


class RedactSecrets(logging.Filter):
    """On every handler: the record's message, exception and stack, redacted."""

    formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad arguments must not stop the program, nor leak them raw
            message = f"{record.msg!r} (with arguments that do not fit it)"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.redacted = True
        return True
