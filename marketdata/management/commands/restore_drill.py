"""`manage.py restore_drill`: the weekly restore drill, now; exits non-zero if it fails."""

from django.core.management.base import BaseCommand, CommandError

from marketdata.backups.jobs import run_restore_drill


class Command(BaseCommand):
    help = (
        "Restore the newest backup in BACKUP_DIR into a scratch database, check it against "
        "its manifest and the live tables, drop it, and record the outcome."
    )

    def handle(self, *args, **options):
        drill = run_restore_drill()
        if not drill.ok:
            raise CommandError(f"restore drill failed: {drill.detail}")
        self.stdout.write(f"restore drill of {drill.backup_file} passed: {drill.detail}")
