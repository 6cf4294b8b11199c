"""`manage.py dump_exchange_config [--exchange NAME] [--output FILE]`: stored config as JSON."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from collectors.config.store import exchange_config_to_dict
from collectors.models import Exchange


class Command(BaseCommand):
    help = "Print or write the stored exchange configuration in the spec's JSON format."

    def add_arguments(self, parser):
        parser.add_argument("--exchange", help="One exchange (an object); default: all (an array).")
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args, exchange: str | None, output: str | None, **options):
        exchanges = Exchange.objects.prefetch_related("trading_pairs", "accounts")
        if exchange is None:
            data = [exchange_config_to_dict(stored) for stored in exchanges]
        else:
            stored = exchanges.filter(name=exchange).first()
            if stored is None:
                names = ", ".join(exchanges.values_list("name", flat=True)) or "none"
                raise CommandError(f"no exchange {exchange!r} is stored (stored: {names})")
            data = exchange_config_to_dict(stored)
        text = json.dumps(data, indent=2) + "\n"
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"{output}: cannot write: {error.strerror or error}") from None
        self.stdout.write(f"wrote {output}")
