"""`manage.py restore_archive`: one market's archived rows of a range back, idempotently."""

from django.core.management.base import BaseCommand, CommandError

from marketdata.archive import ArchiveError
from marketdata.kinds import KINDS
from marketdata.restore import restore
from marketdata.times import parse_time

ARCHIVED = [name for name, kind in KINDS.items() if kind.archived]


class Command(BaseCommand):
    help = (
        "Load archived rows of one market and time range back into the database. Rows "
        "already there are skipped, so it can be run again. Days older than their "
        "retention window leave again at the next retention run (it archives nothing new "
        "for them): widen the window first to keep them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--exchange", required=True)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--data-type", required=True, choices=ARCHIVED)
        parser.add_argument("--start", required=True, help="ISO 8601 (UTC) or epoch ms.")
        parser.add_argument("--end", required=True, help="ISO 8601 (UTC) or epoch ms; exclusive.")

    def handle(self, *args, exchange, symbol, data_type, start, end, **options):
        try:
            first, last = parse_time(start), parse_time(end)
        except ValueError as error:
            raise CommandError(f"--start/--end {error}") from None
        if last <= first:
            raise CommandError("--end must be after --start")
        try:
            done = restore(KINDS[data_type], exchange, symbol, first, last)
        except ArchiveError as error:
            raise CommandError(str(error)) from None
        if not done.files:
            self.stdout.write(f"no archived {data_type} rows of {exchange} {symbol} in that range")
            return
        self.stdout.write(
            f"restored {done.inserted} of {done.archived} archived rows "
            f"({done.archived - done.inserted} were already in the database) "
            f"from {', '.join(done.files)}"
        )
