"""`manage.py restore_backup FILE --database URL`: check a backup whole, then restore it."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from marketdata.backups.encryption import BackupError
from marketdata.backups.postgres import Database
from marketdata.backups.restore import check_backup, restore_backup


class Command(BaseCommand):
    help = (
        "Decrypt a backup and check all of it against its manifest (size, SHA-256, every "
        "chunk authenticated) before touching the target; then restore it in one "
        "transaction that commits only if every table's rows and checksum match the "
        "manifest. Keys: BACKUP_ENCRYPTION_KEY, or an older one in BACKUP_OLD_KEYS."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The backup's .dump.enc file (its manifest beside it).")
        parser.add_argument(
            "--database",
            help="postgresql://USER[:PASSWORD]@HOST[:PORT]/NAME of the target database.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Restore into a database that is not empty, replacing the objects the "
            "backup holds.",
        )
        parser.add_argument(
            "--check-only",
            action="store_true",
            help="Check the backup against its manifest and restore nothing.",
        )

    def handle(
        self, *args, file: str, database: str | None, force: bool, check_only: bool, **options
    ):
        path = Path(file)
        try:
            if check_only:
                manifest = check_backup(path)
                self.stdout.write(
                    f"{path.name}: sound; {manifest['rows']} rows in {len(manifest['tables'])} "
                    f"tables, made {manifest['created_at']}"
                )
                return
            if not database:
                raise CommandError("--database URL is required (or --check-only)")
            result = restore_backup(path, Database.from_url(database), force=force)
        except BackupError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"restored {path.name} into {Database.from_url(database).name}: {result.rows} rows "
            f"in {result.tables} tables, every count and checksum as the manifest says "
            f"({result.seconds:.1f} s)"
        )
