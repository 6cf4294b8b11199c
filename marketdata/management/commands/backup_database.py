"""`manage.py backup_database`: an encrypted, verified backup into BACKUP_DIR, then rotation."""

from django.core.management.base import BaseCommand, CommandError

from marketdata.backups.encryption import BackupError, generate_key
from marketdata.backups.jobs import run_backup


class Command(BaseCommand):
    help = (
        "Dump the database (pg_dump, custom format) encrypted with BACKUP_ENCRYPTION_KEY into "
        "BACKUP_DIR with its manifest, read it back to verify it, and rotate old backups. "
        "--generate-key prints a new key and does nothing else."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--generate-key",
            action="store_true",
            dest="new_key",
            help="Print a new random key for BACKUP_ENCRYPTION_KEY and exit.",
        )

    def handle(self, *args, new_key: bool, **options):
        if new_key:
            self.stdout.write(generate_key())
            return
        try:
            record = run_backup()
        except BackupError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"backup {record.file_name}: {record.size} bytes, {record.rows} rows in "
            f"{record.tables} tables, {record.seconds:.1f} s, verified"
        )
