"""`manage.py collect [--config FILE]`: run collectors in the foreground, without Celery."""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from collectors.config.files import load_exchange_config_file
from collectors.config.schema import ConfigError, collector_configs
from collectors.config.store import collector_configs_from_db
from collectors.hosting.runner import run_collectors


class Command(BaseCommand):
    help = (
        "Run the collectors of an exchange configuration file (default: the enabled trading"
        " pairs in the database) until Ctrl-C, SIGTERM or --duration."
    )

    def add_arguments(self, parser):
        parser.add_argument("--config", help="Exchange configuration (JSON).")
        parser.add_argument("--duration", type=float, help="Stop after this many seconds.")

    def handle(self, *args, config: str | None, duration: float | None, **options):
        if duration is not None and duration <= 0:
            raise CommandError(f"--duration must be positive, not {duration}")
        source = config or "the database"
        try:
            configs = (
                collector_configs(load_exchange_config_file(config))
                if config
                else collector_configs_from_db()
            )
        except (ConfigError, OSError) as error:
            raise CommandError(f"{source}: {error}") from None
        if not configs:
            raise CommandError(f"{source}: no enabled trading pair to collect")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        names = ", ".join(c.name for c in configs)
        self.stdout.write(f"collecting {names}" + (f" for {duration:g}s" if duration else ""))
        report = run_collectors(configs, duration=duration, stop=stop)
        for summary in report.collectors:
            self.stdout.write(summary.line())
        self.stdout.write(report.storage_line())
        if report.rows_lost:
            raise CommandError(f"{report.rows_lost} rows received were lost", returncode=3)
