"""Helpers the tests share: polling with a deadline, free ports, child-process settings,
collector configurations pointed at a simulator."""

import asyncio
import os
import socket
import time
from pathlib import Path

from django.conf import settings

from collectors.types import DataType, ExchangeCollectorConfig

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def free_port() -> int:
    """A loopback port nothing listens on (as of now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process that talks to the test database and Redis."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.base",
        DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        DB_POOL="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def make_config(simulator, symbol="BTC-USDT", data_types=(DataType.TRADE,), **params):
    custom = {
        "public_ws_url": simulator.public_url,
        "business_ws_url": simulator.business_url,
        "rest_url": simulator.rest_url,
        "ping_interval": 2.0,
        "pong_timeout": 1.0,
        "reconnect_delay": 0.1,
        "max_reconnect_attempts": 5,
        "max_silence_duration": 5.0,
        "buffer_size": 100,
        "channels": {
            "trades": "trades",
            "orderbook": "books5",
            "ticker": "tickers",
            "candle": "candle1m",
        },
    }
    custom.update(params)
    return ExchangeCollectorConfig("okx", symbol, list(data_types), custom_params=custom)


def run(coroutine):
    return asyncio.run(coroutine)


def candle_json(candle) -> list:
    return [
        candle.timestamp.isoformat(),
        *(str(getattr(candle, name).normalize()) for name in CANDLE_DECIMALS),
        candle.trade_count,
        candle.is_final,
    ]


CANDLE_DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "vwap")
