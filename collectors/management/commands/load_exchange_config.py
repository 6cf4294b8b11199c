"""`manage.py load_exchange_config FILE [--replace | --keep-existing]`: store an exchange
configuration file (`make run` loads the simulators' with --keep-existing)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from collectors.config.files import load_exchange_configs_file
from collectors.config.schema import ConfigError
from collectors.config.store import add_exchange_config_if_new, apply_exchange_config
from collectors.exchanges.listing import check_symbols, unchecked_message, unlisted_message


class Command(BaseCommand):
    help = (
        "Validate an exchange configuration file (one exchange, or an array as dumped) and "
        "store it in the database."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Exchange configuration (JSON).")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Delete the exchange's trading pairs that the file does not list.",
        )
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help=(
                "Store only exchanges the database does not have yet; a stored exchange and "
                "its pairs are left as they are (one line says so)."
            ),
        )

    def handle(self, *args, file: str, replace: bool, keep_existing: bool, **options):
        if replace and keep_existing:
            raise CommandError("--replace and --keep-existing contradict each other")
        try:
            configs = load_exchange_configs_file(file)
        except OSError as error:
            raise CommandError(f"{file}: cannot read: {error.strerror or error}") from None
        except ConfigError as error:
            lines = "\n".join(f"  {message}" for message in error.errors)
            raise CommandError(f"{file}: invalid exchange configuration:\n{lines}") from None
        unlisted = []
        for config in configs:
            symbols = [pair.symbol for pair in config.trading_pairs]
            check = check_symbols(config.exchange, config.rest_url or "", symbols)
            if check.unlisted:
                unlisted.append(f"  {unlisted_message(config.exchange, check.unlisted)}")
            elif check.unchecked:
                self.stderr.write(
                    f"{file}: symbols of {config.exchange} {unchecked_message(check)}"
                )
        if unlisted:
            lines = "\n".join(unlisted)
            raise CommandError(f"{file}: not stored, symbols the exchange does not have:\n{lines}")
        if keep_existing:
            self.keep_existing(file, configs)
            return
        with transaction.atomic():
            saved = [apply_exchange_config(config, replace=replace) for config in configs]
        for result in saved:
            for change in result.changes:
                self.stdout.write(change)

    def keep_existing(self, file: str, configs) -> None:
        for config in configs:
            saved = add_exchange_config_if_new(config)
            if saved is None:
                self.stdout.write(
                    f"{file}: exchange {config.exchange} is already in the database; left as "
                    "it is (change it in the admin, or load with --replace to overwrite)"
                )
                continue
            pairs = len(config.trading_pairs)
            self.stdout.write(
                f"{file}: exchange {config.exchange} was not in the database; loaded it with "
                f"{pairs} trading pair{'s' if pairs != 1 else ''}"
            )
