"""With DEBUG on and the database down, neither the 503 page nor Django's technical error
page shows a password or key."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, free_port
from tests.test_settings import bare_env

SECRETS = {
    "DB_PASSWORD": "db-Pa55word-for-the-page",
    "REDIS_PASSWORD": "redis-Pa55word-for-the-page",
    "SECRET_KEY": "page-secret-key-3f9c2a7e1b8d4c6f0a5e9b2d7c1f4a8e6b3d0c9f12345678",
    "BACKUP_ENCRYPTION_KEY": "KxXAyzaIiLZLaFxCSjFh_lhuHhhdM-OwkpTiyEK0iXc=",
    "LOGIN_PASSWORD": "the-admin-password-typed-in",
}

SCRIPT = """
import json, sys, django
django.setup()
from django.conf import settings
from django.test import Client
accept, password, technical = sys.argv[1:]
if technical == "yes":  # without the 503 middleware, the error reaches Django's debug page
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "Unavailable" not in m]
client = Client(raise_request_exception=False)
response = client.post(
    "/admin/login/",
    {"username": "admin", "password": password},
    HTTP_ACCEPT=accept,
)
print(json.dumps({"status": response.status_code, "body": response.content.decode()}))
"""


def outage_page(tmp_path, accept: str, technical: bool) -> tuple[dict, str]:
    env = bare_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.base",
        DEBUG="true",
        ALLOWED_HOSTS="testserver",
        DB_POOL="false",
        DATABASE_URL=f"postgresql://trader:{SECRETS['DB_PASSWORD']}@127.0.0.1:{free_port()}/x",
        REDIS_URL=f"redis://default:{SECRETS['REDIS_PASSWORD']}@127.0.0.1:{free_port()}/0",
        SECRET_KEY=SECRETS["SECRET_KEY"],
        BACKUP_ENCRYPTION_KEY=SECRETS["BACKUP_ENCRYPTION_KEY"],
        LOG_FILE_OUTPUT="false",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            accept,
            SECRETS["LOGIN_PASSWORD"],
            "yes" if technical else "no",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_a_database_outage_with_debug_on_is_a_503_page_without_secrets(tmp_path, accept):
    page, log = outage_page(tmp_path, accept, technical=False)
    assert page["status"] == 503
    for name, secret in SECRETS.items():
        assert secret not in page["body"], f"{name} on the 503 page"
        assert secret not in log, f"{name} in the log"


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_page_of_a_database_outage_shows_no_secret(tmp_path, accept):
    page, log = outage_page(tmp_path, accept, technical=True)
    assert page["status"] == 500
    body = page["body"]
    assert "OperationalError" in body  # it is the technical page, with its settings
    assert "DATABASE_URL" in body and "REDIS_URL" in body and "CELERY_BROKER_URL" in body
    for name, secret in SECRETS.items():
        assert secret not in body, f"{name} on the error page"
        assert secret not in log, f"{name} in the log"
    assert "postgresql://***@127.0.0.1" in body
