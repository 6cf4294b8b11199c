"""Helpers the tests share: polling with a deadline, free ports, child-process settings,
collector configurations pointed at a simulator."""

import asyncio
import contextlib
import os
import socket
import threading
import time
import zlib
from pathlib import Path

import orjson
from django.conf import settings
from websockets.asyncio.server import serve

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


def simulator_connection(simulator) -> dict:
    """Connection settings for the OKX simulator, quick to notice and survive its faults."""
    return {
        "public_ws_url": simulator.public_url,
        "business_ws_url": simulator.business_url,
        "rest_url": simulator.rest_url,
        "ping_interval": 2.0,
        "pong_timeout": 1.0,
        "reconnect_delay": 0.1,
        "max_reconnect_attempts": 5,
    }


def make_config(simulator, symbol="BTC-USDT", data_types=(DataType.TRADE,), **params):
    custom = {
        **simulator_connection(simulator),
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


def signed_crc32(text: str) -> int:
    """CRC32 as a signed 32-bit number, as OKX writes its book checksums."""
    crc = zlib.crc32(text.encode())
    return crc - 2**32 if crc >= 2**31 else crc


class ReplayServer:
    """A loopback WebSocket server that replays recorded OKX pushes: each subscription to a
    channel of an instrument is acknowledged, then that instrument's frames follow."""

    def __init__(self, frames: dict[str, list[str]]) -> None:
        self.frames = frames
        self.connections = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self.url = ""

    def __enter__(self) -> "ReplayServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the replay server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._connection, "127.0.0.1", 0, ping_interval=None) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/v5/public"
            self._ready.set()
            await self._stop.wait()

    async def _connection(self, ws) -> None:
        self.connections += 1
        async for message in ws:
            if message == "ping":
                await ws.send("pong")
                continue
            request = orjson.loads(message)
            for arg in request.get("args", []):
                await ws.send(orjson.dumps({"event": request["op"], "arg": arg}).decode())
                if request["op"] == "subscribe":
                    for frame in self.frames.get(arg["instId"], []):
                        await ws.send(frame)


class SimulatedExchange:
    """A running exchange simulator and what the exchange-neutral tests ask of it: configs
    pointed at it, and the trades it made and sent as plain dicts (trade_id, price, size,
    side, ts in epoch ms)."""

    exchange = ""
    symbol = ""  # a market every simulator lists
    other_symbol = ""

    def __init__(self, simulator) -> None:
        self.simulator = simulator

    def connection(self) -> dict:
        raise NotImplementedError

    def config(self, symbol=None, data_types=(DataType.TRADE,), **params):
        custom = {
            **self.connection(),
            "ping_interval": 2.0,
            "pong_timeout": 1.0,
            "reconnect_delay": 0.1,
            "max_reconnect_attempts": 5,
            "max_silence_duration": 5.0,
            "buffer_size": 100,
        }
        custom.update(params)
        return ExchangeCollectorConfig(
            self.exchange, symbol or self.symbol, list(data_types), custom_params=custom
        )

    def fault(self, kind: str, **params) -> None:
        self.simulator.fault(kind, **params)

    def pause(self, symbol=None) -> None:
        self.simulator.fault("pause", inst_id=symbol or self.symbol)


class OkxMarket(SimulatedExchange):
    exchange, symbol, other_symbol = "okx", "BTC-USDT", "ETH-USDT"
    notice_fault = "notice"

    def connection(self) -> dict:
        return simulator_connection(self.simulator)

    def config(self, symbol=None, data_types=(DataType.TRADE,), **params):
        channels = {"trades": "trades", "orderbook": "books5", "ticker": "tickers"}
        return super().config(symbol, data_types, **{"channels": channels, **params})

    def sent(self, symbol=None) -> list[dict]:
        return [okx_trade(item) for item in self.simulator.sent_trades(symbol or self.symbol)]

    def generated(self, symbol=None) -> list[dict]:
        trades = self.simulator.generated_trades(symbol or self.symbol)
        return [okx_trade(item) for item in trades]


class BinanceMarket(SimulatedExchange):
    """Binance with its default trades channel, aggTrade: a trade is an aggregate."""

    exchange, symbol, other_symbol = "binance", "BTCUSDT", "ETHUSDT"
    notice_fault = "shutdown"

    def connection(self) -> dict:
        return {"public_ws_url": self.simulator.stream_url, "rest_url": self.simulator.rest_url}

    def sent(self, symbol=None) -> list[dict]:
        aggregates = self.simulator.sent_aggregates(symbol or self.symbol)
        return [binance_trade(item, "a") for item in aggregates]

    def generated(self, symbol=None) -> list[dict]:
        aggregates = self.simulator.generated_aggregates(symbol or self.symbol)
        return [binance_trade(item, "a") for item in aggregates]


def okx_trade(item: dict) -> dict:
    return {
        "trade_id": item["tradeId"],
        "price": item["px"],
        "size": item["sz"],
        "side": item["side"],
        "ts": int(item["ts"]),
    }


def binance_trade(item: dict, key: str) -> dict:
    """A REST trade ("id", "price", ...) or aggregate ("a", "p", ...) of the simulator."""
    if key == "a":
        price, size, ts, maker = item["p"], item["q"], item["T"], item["m"]
    else:
        price, size, ts, maker = item["price"], item["qty"], item["time"], item["isBuyerMaker"]
    side = "sell" if maker else "buy"
    return {"trade_id": str(item[key]), "price": price, "size": size, "side": side, "ts": ts}


MARKETS = {"okx": OkxMarket, "binance": BinanceMarket}


@contextlib.contextmanager
def simulated_market(exchange: str, **options):
    """The exchange's simulator on a free port, running inside the block, as a market."""
    from collectors.exchanges import simulator_class

    simulator = simulator_class(exchange)(**options)
    simulator.start()
    try:
        yield MARKETS[exchange](simulator)
    finally:
        simulator.stop()
