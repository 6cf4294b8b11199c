"""`manage.py collect [--config FILE]`: run collectors in the foreground, without Celery.

Without --config it is the embedded host (collectors.hosting.embedded): it follows the
trading pairs in the database while it runs, and reports their status in VAR_DIR, where
the admin, the API and `manage.py collectors` read it when there is no Redis.
"""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from collectors.config.files import load_exchange_config_file
from collectors.config.schema import ConfigError, collector_configs
from collectors.hosting.embedded import AlreadyRunning, EmbeddedHost
from collectors.hosting.runner import RunReport, run_collectors


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
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        until = f" for {duration:g}s" if duration else ""
        if config is None:
            self.stdout.write(f"collecting the enabled trading pairs in the database{until}")
            try:
                report = EmbeddedHost().run(stop, duration)
            except AlreadyRunning as error:
                raise CommandError(str(error)) from None
        else:
            report = self.collect_from_file(config, duration, stop, until)
        for summary in report.collectors:
            self.stdout.write(summary.line())
        self.stdout.write(report.storage_line())
        if report.rows_lost:
            raise CommandError(f"{report.rows_lost} rows received were lost", returncode=3)

    def collect_from_file(self, config: str, duration, stop, until: str) -> RunReport:
        try:
            configs = collector_configs(load_exchange_config_file(config))
        except (ConfigError, OSError) as error:
            raise CommandError(f"{config}: {error}") from None
        if not configs:
            raise CommandError(f"{config}: no enabled trading pair to collect")
        names = ", ".join(c.name for c in configs)
        self.stdout.write(f"collecting {names}{until}")
        return run_collectors(configs, duration=duration, stop=stop)
