"""A full `collect` run with every log switch on leaves no secret in any log file or output."""

import json
import subprocess
import sys
from urllib.parse import urlsplit

import orjson
import pytest
from django.conf import settings

from collectors.simulators.okx import OkxSimulator
from tests.helpers import ROOT, service_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SECRETS = {
    "DB_PASSWORD": "db-Pa55word-e81c",
    "REDIS_PASSWORD": "redis-Pa55word-5d2a",
    "URL_PASSWORD": "url-Pa55word-0b7f",
    "OKX_API_KEY": "4f1c9a2e-7d3b-4e8a-9c6f-2b5d8e1a7c3f",
    "OKX_SECRET_KEY": "B7D3E9F1A2C4B6D8E0F2A4C6B8D0E2F4",
    "OKX_PASSPHRASE": "phrase-Pa55-9e4d",
    "SIGN": "s1gnature+Base64/Value+Of+A+Login==",
    "SECRET_KEY": "django-secret-key-that-must-never-appear-in-a-log-3f9c2a7e1b8d4c6f",
}


def send_frame(simulator: OkxSimulator, frame: bytes) -> None:
    """Push one frame to every connected client (no fault echoes credentials, so this one
    stands for a frame that carries them)."""
    simulator.in_loop(lambda: [client.send_many([frame]) for client in simulator.clients()])


def credential_frame() -> bytes:
    return orjson.dumps(
        {
            "arg": {"channel": "trades", "instId": "BTC-USDT"},
            "data": {
                "apiKey": SECRETS["OKX_API_KEY"],
                "passphrase": SECRETS["OKX_PASSPHRASE"],
                "sign": SECRETS["SIGN"],
            },
        }
    )


def config_file(tmp_path, simulator) -> str:
    url = urlsplit(simulator.public_url)
    public = f"ws://okx-user:{SECRETS['URL_PASSWORD']}@{url.netloc}{url.path}"
    config = {
        "exchange": "okx",
        "connection": {"public_ws_url": public, "rest_url": simulator.rest_url},
        "data_collection": {"buffer_size": 100},
        "trading_pairs": [{"symbol": "BTC-USDT", "data_types": ["trade", "ticker"]}],
    }
    path = tmp_path / "okx.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_a_collector_run_with_debug_and_verbose_logging_leaks_no_secret(tmp_path, simulator):
    db = settings.DATABASES["default"]
    redis_url = urlsplit(settings.REDIS_URL)
    logs = tmp_path / "logs"
    env = service_env(
        DATABASE_URL=f"postgresql://{db['USER']}:{SECRETS['DB_PASSWORD']}@{db['HOST']}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=f"redis://default:{SECRETS['REDIS_PASSWORD']}@{redis_url.netloc}{redis_url.path}",
        DEBUG="true",
        LOG_LEVEL="DEBUG",
        LOG_FILE_OUTPUT="true",
        LOG_DIRECTORY=str(logs),
        COLLECTORS_LOG_LEVEL="DEBUG",
        COLLECTORS_LOG_VERBOSE="true",
        WEBSOCKET_LOG_LEVEL="DEBUG",
        WEBSOCKET_LOG_VERBOSE="true",
        LOG_TRACE_PER_SECOND="100",
        OKX_API_KEY=SECRETS["OKX_API_KEY"],
        OKX_SECRET_KEY=SECRETS["OKX_SECRET_KEY"],
        OKX_PASSPHRASE=SECRETS["OKX_PASSPHRASE"],
        SECRET_KEY=SECRETS["SECRET_KEY"],
    )
    console = (tmp_path / "console.txt").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "collect", "--config", config_file(tmp_path, simulator)],
        cwd=ROOT,
        env=env,
        stdout=console,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: simulator.stats()["active_subscriptions"] >= 2, 60, message="subscriptions"
        )
        wait_until(lambda: simulator.stats()["trades_sent"]["BTC-USDT"] >= 20, 30, message="trades")
        send_frame(simulator, credential_frame())
        send_frame(simulator, f"login apiKey={SECRETS['OKX_API_KEY']}".encode())
        wait_until(lambda: "not JSON" in read_logs(logs), 30, message="the bad frames logged")
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0
        console.close()

    files = sorted(logs.glob("*.log"))
    assert [path.name.split("-")[0] for path in files] == ["collect"]
    written = read_logs(logs)
    output = (tmp_path / "console.txt").read_text()
    for name, secret in SECRETS.items():
        assert secret not in written, f"{name} in a log file"
        assert secret not in output, f"{name} on the console"
    # Everything that could have leaked was logged, redacted.
    assert " DEBUG " in written
    assert "websocket_clients.frames" in written
    assert "data_collectors.points" in written
    assert "connected to ws://127.0.0.1" in written  # the credentials left out at the source
    assert '"passphrase":"***"' in written
    assert '"sign":"***"' in written
    assert "last error: public frame: not JSON: 'login apiKey=***'" in output  # the summary


def read_logs(directory) -> str:
    return "".join(path.read_text() for path in sorted(directory.glob("*.log")))
