"""An exchange's simulator (OKX or Binance) in its own process, and one collector storing its
trades: what bench/ingest.py and bench/peers.py share. Call the collector parts once Django
is set up."""

import asyncio
import json
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchdb import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parent.parent


# exchange -> (a symbol as it writes them from a base and a quote, its trades channel)
EXCHANGES = {
    "okx": ("{}-{}", "trades"),
    "binance": ("{}{}", "trade"),  # one message a trade, as OKX's
}


def symbol(exchange: str, base: str, quote: str = "USDT") -> str:
    return EXCHANGES[exchange][0].format(base, quote)


class Simulator:
    """The simulator in its own process, so it does not share this one's interpreter."""

    def __init__(self, rate: float, instruments: list[str], exchange: str = "okx") -> None:
        self.exchange = exchange
        self.port = free_port()
        self.process = subprocess.Popen(
            self.command(self.port, rate, instruments, exchange),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until_listening(self.port, "the simulator")
        except RuntimeError:
            self.stop()
            raise

    @staticmethod
    def command(port: int, rate: float, instruments: list[str], exchange: str = "okx") -> list[str]:
        """The command that starts it (run it in the repository's root)."""
        return [
            sys.executable,
            "manage.py",
            "simulate_exchange",
            exchange,
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--seed",
            "1",
            "--instruments",
            ",".join(instruments),
        ]

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def public_ws_url(self) -> str:
        path = "/ws/v5/public" if self.exchange == "okx" else "/stream"
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, symbol: str, data_types: tuple[str, ...] = ("trade",)):
        return collector_config(self.port, symbol, self.exchange, data_types)

    def trades_sent(self, inst_id: str) -> int:
        """Trades of `inst_id` written to some connection so far (the simulator's own count)."""
        with urllib.request.urlopen(f"{self.rest_url}/_sim/stats", timeout=10) as answer:
            return json.load(answer)["trades_sent"][inst_id]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def collector_config(
    port: int, symbol: str, exchange: str = "okx", data_types: tuple[str, ...] = ("trade",)
):
    """A collector's configuration (trades by default), pointed at the exchange's simulator
    on `port`."""
    from collectors.types import DataType, ExchangeCollectorConfig

    path = "/ws/v5/public" if exchange == "okx" else "/stream"
    return ExchangeCollectorConfig(
        exchange,
        symbol,
        [DataType(name) for name in data_types],
        custom_params={
            "public_ws_url": f"ws://127.0.0.1:{port}{path}",
            "rest_url": f"http://127.0.0.1:{port}",
            "buffer_size": 5000,
            "channels": {"trades": EXCHANGES[exchange][1]},
        },
    )


def full_speed_sink(name: str):
    """The sink of the full-speed runs: big batches, written at least every 0.2 s."""
    from collectors.storage.sink import StorageSink

    return StorageSink(name=name, buffer_size=5000, flush_interval=0.2)


def latency_sink(name: str, on_commit: Callable):
    """The sink of the latency runs: the project's default flush interval."""
    from collectors.storage.sink import StorageSink

    return StorageSink(name=name, buffer_size=1000, on_commit=on_commit)


@contextmanager
def collecting(config, sink) -> Iterator:
    """One collector built from `config`, storing through `sink`, running inside the block."""
    from collectors.factory import ExchangeFactory

    sink.start()
    collector = ExchangeFactory.create_collector(config)
    collector.sink = sink
    try:
        asyncio.run(collector.start())
        yield collector
        asyncio.run(collector.stop())
    finally:
        sink.stop()


def percentiles(latencies: list[float]) -> dict:
    """Rows, p50 and p99 (ms) of latencies given in seconds."""
    ordered = sorted(latencies)
    return {
        "rows": len(ordered),
        "p50 ms": 1000 * statistics.median(ordered),
        "p99 ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }
