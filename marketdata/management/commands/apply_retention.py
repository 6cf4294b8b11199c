"""`manage.py apply_retention [--dry-run]`: what the `marketdata.retention` task does, by hand."""

from django.core.management.base import BaseCommand, CommandError

from marketdata.retention import apply_retention, yield_cpu
from marketdata.times import parse_time


class Command(BaseCommand):
    help = (
        "Archive (to Parquet under ARCHIVE_DIR) and remove every day of stored data that is "
        "past its retention window; --dry-run only says what it would do."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Change nothing.")
        parser.add_argument("--now", help="Act as if it were this time (ISO 8601, UTC).")

    def handle(self, *args, dry_run: bool, now: str | None, **options):
        try:
            moment = parse_time(now) if now else None
        except ValueError as error:
            raise CommandError(f"--now {error}") from None
        yield_cpu()
        report = apply_retention(moment, dry_run=dry_run)
        for action in report.actions:
            self.stdout.write(action)
        if not report.actions:
            self.stdout.write("nothing is past its retention window")
        if report.errors:
            raise CommandError("retention failed: " + "; ".join(report.errors))
