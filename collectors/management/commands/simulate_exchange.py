"""`manage.py simulate_exchange EXCHANGE`: an exchange simulator on loopback, in the foreground."""

import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError

from collectors.exchanges import simulator_class, supported_exchanges
from collectors.simulators.server import require_loopback


class Command(BaseCommand):
    help = "Serve a simulated exchange (WebSockets and REST) on a loopback port until stopped."

    def add_arguments(self, parser):
        parser.add_argument("exchange", help=f"One of: {', '.join(supported_exchanges())}.")
        parser.add_argument("--host", default="127.0.0.1", help="A loopback address.")
        parser.add_argument("--port", type=int, default=0, help="0 picks a free port.")
        parser.add_argument("--rate", type=float, default=10.0, help="Trades/s per stream; 0: max.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--idle-timeout", type=float, default=30.0)
        parser.add_argument("--instruments", default="", help="Extra symbols, comma-separated.")
        for exchange in supported_exchanges():  # each simulator's own switches
            simulator_class(exchange).add_arguments(parser)

    def handle(self, *args, exchange: str, host: str, **options):
        try:
            simulator_type = simulator_class(exchange)
        except ValueError as exc:
            raise CommandError(f"No simulator for {exchange!r}: {exc}") from exc
        try:
            require_loopback(host)
            simulator = simulator_type(
                host=host,
                port=options["port"],
                seed=options["seed"],
                rate=options["rate"],
                instruments=[i.strip() for i in options["instruments"].split(",") if i.strip()],
                idle_timeout=options["idle_timeout"],
                **simulator_type.options_from(options),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        asyncio.run(self._serve(simulator))

    async def _serve(self, simulator) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, simulator.request_stop)

        def announce() -> None:
            self.stdout.write(simulator.describe())
            self.stdout.flush()

        await simulator.serve_forever(on_ready=announce)
