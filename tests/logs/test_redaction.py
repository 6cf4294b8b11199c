"""Secrets are removed from text and from log records, whatever their form; the rest is kept."""

import logging
import subprocess
import sys

import pytest

from tcp_dashboard.logs.redaction import RedactSecrets, redact, secrets_of
from tests.helpers import ROOT
from tests.test_settings import bare_env


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "connected to ws://user:pass-word@ws.okx.com:8443/ws/v5/public",
            "connected to ws://***@ws.okx.com:8443/ws/v5/public",
        ),
        (
            "DATABASE_URL=postgresql://tcp:Sup3r%40secret@postgres:5432/tcp_dashboard",
            "DATABASE_URL=postgresql://***@postgres:5432/tcp_dashboard",
        ),
        (
            "broker redis://:redis-pw@127.0.0.1:6379/0 down",
            "broker redis://***@127.0.0.1:6379/0 down",
        ),
        ("amqp://guest:guest@localhost//", "amqp://***@localhost//"),
        (
            '{"op":"login","args":[{"apiKey":"k-123","passphrase":"pp","timestamp":"1","sign":"c2ln=="}]}',
            '{"op":"login","args":[{"apiKey":"***","passphrase":"***","timestamp":"1","sign":"***"}]}',
        ),
        (
            "{'password': 'hunter2', 'user': 'trader'}",
            "{'password': '***', 'user': 'trader'}",
        ),
        ("GET /x?token=abc123&limit=5&signature=f00", "GET /x?token=***&limit=5&signature=***"),
        ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "Authorization: ***"),
        ("'HTTP_AUTHORIZATION': 'Bearer eyJhbGciOi.x.y'", "'HTTP_AUTHORIZATION': '***'"),
        ("Cookie: sessionid=abcd1234; csrftoken=efgh5678", "Cookie: ***; csrftoken=***"),
        (
            "OK-ACCESS-KEY: 42 OK-ACCESS-SIGN: c2ln OK-ACCESS-PASSPHRASE: pp",
            "OK-ACCESS-KEY: *** OK-ACCESS-SIGN: *** OK-ACCESS-PASSPHRASE: ***",
        ),
        ("sent Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b", "sent Token ***"),
        ('"secret_key": "cut off at the excerpt', '"secret_key": "***'),
        ("BACKUP_OLD_KEYS=abc,def", "BACKUP_OLD_KEYS=***"),
        ('{"token":123,"limit":5}', '{"token":***,"limit":5}'),
    ],
)
def test_secrets_are_masked_in_every_form_they_take(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "design=3 price=50000.5 side=buy size=0.1 signal=on",
        "okx:BTC-USDT: 1261 messages, 1255 data points, 2 errors",
        "https://www.okx.com/api/v5/market/books?instId=BTC-USDT&sz=400",
        'password authentication failed for user "tcp"',
        "tokens left: none",
    ],
)
def test_text_without_secrets_is_left_alone(text):
    assert redact(text) == text


def test_known_secret_values_are_masked_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("OKX_SECRET_KEY", "B7D3E9F1A2C4B6D8")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pg%2Fpass@h/db")
    found = secrets_of(
        {
            "OKX_SECRET_KEY": "B7D3E9F1A2C4B6D8",
            "DATABASE_URL": "postgresql://u:pg%2Fpass@h/db",
            "FLOWER_BASIC_AUTH": "admin:flower-pass",
            "DEBUG": "true",
            "LOG_FILE_OUTPUT": "false",
            "XAUTHORITY_FILE": "/home/x/.Xauthority",
        }
    )
    assert {"B7D3E9F1A2C4B6D8", "pg/pass", "pg%2Fpass", "flower-pass"} <= set(found)
    assert not {"true", "false", "/home/x/.Xauthority"} & set(found)


def test_a_record_is_redacted_with_its_arguments_exception_and_stack():
    try:
        raise ConnectionError("cannot reach redis://:hunter22@10.0.0.5:6379/0")
    except ConnectionError:
        record = logging.getLogger("x").makeRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "login with %s failed",
            ({"passphrase": "pp-secret"},),
            exc_info=__import__("sys").exc_info(),
        )
    record.stack_info = "frame: password=hunter22"
    assert RedactSecrets().filter(record) is True
    text = logging.Formatter().format(record)
    assert "hunter22" not in text
    assert "pp-secret" not in text
    assert "login with {'passphrase': '***'} failed" in text
    assert "redis://***@10.0.0.5:6379/0" in text


def test_a_record_whose_arguments_do_not_fit_is_kept_without_them():
    record = logging.makeLogRecord({"msg": "%s and %s", "args": ("one",), "levelno": 20})
    assert RedactSecrets().filter(record) is True
    assert record.getMessage() == "'%s and %s' (with arguments that do not fit it)"


SIGNALLED = """
import logging, signal, time
from tcp_dashboard.logs.redaction import KNOWN, RedactSecrets, redact

class Kept(logging.Handler):
    lines = []
    def emit(self, record):
        self.lines.append(record.getMessage())

handler = Kept()
handler.addFilter(RedactSecrets())
log = logging.getLogger("signalled")
log.addHandler(handler)
running = True

def tick(*_):
    log.warning("tick password=x")
    if running:  # the next one after this one: never nested
        signal.setitimer(signal.ITIMER_REAL, 0.0005)

signal.signal(signal.SIGALRM, tick)
signal.setitimer(signal.ITIMER_REAL, 0.0005)
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    KNOWN._built = 0.0  # rebuild the secrets pattern every time
    redact("x")
running = False
signal.setitimer(signal.ITIMER_REAL, 0)
print(len(handler.lines) > 100, set(handler.lines))
"""


def test_a_signal_handler_that_logs_while_the_secrets_are_gathered_does_not_hang(tmp_path):
    # Celery beat logs from its SIGTERM handler; a lock around the gathering hung it.
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED],
        cwd=ROOT,
        env=bare_env(tmp_path, SOME_API_KEY="a-secret-value-123"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "True {'tick password=***'}\n", done.stderr[-2000:]
