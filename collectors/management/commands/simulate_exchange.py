"""`manage.py simulate_exchange okx`: an exchange simulator on loopback, in the foreground."""

import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError

from collectors.simulators.okx import OkxSimulator, require_loopback

SIMULATORS = {"okx": OkxSimulator}


class Command(BaseCommand):
    help = "Serve a simulated exchange (WebSockets and REST) on a loopback port until stopped."

    def add_arguments(self, parser):
        parser.add_argument("exchange", help=f"One of: {', '.join(SIMULATORS)}.")
        parser.add_argument("--host", default="127.0.0.1", help="A loopback address.")
        parser.add_argument("--port", type=int, default=0, help="0 picks a free port.")
        parser.add_argument("--rate", type=float, default=10.0, help="Trades/s per stream; 0: max.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--idle-timeout", type=float, default=30.0)
        parser.add_argument("--no-checksum", action="store_true", help="Send book checksum 0.")
        parser.add_argument("--no-snapshot", action="store_true", help="Open books with updates.")
        parser.add_argument("--instruments", default="", help="Extra instIds, comma-separated.")

    def handle(self, *args, exchange: str, host: str, **options):
        if exchange not in SIMULATORS:
            raise CommandError(
                f"No simulator for {exchange!r}; supported: {', '.join(sorted(SIMULATORS))}"
            )
        try:
            require_loopback(host)
            simulator = SIMULATORS[exchange](
                host=host,
                port=options["port"],
                seed=options["seed"],
                rate=options["rate"],
                instruments=[i.strip() for i in options["instruments"].split(",") if i.strip()],
                books_checksum=not options["no_checksum"],
                books_snapshot=not options["no_snapshot"],
                idle_timeout=options["idle_timeout"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        asyncio.run(self._serve(simulator))

    async def _serve(self, simulator: OkxSimulator) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, simulator.request_stop)

        def announce() -> None:
            self.stdout.write(
                f"Simulating OKX: public {simulator.public_url} business {simulator.business_url}"
                f" rest {simulator.rest_url}"
            )
            self.stdout.flush()

        await simulator.serve_forever(on_ready=announce)
