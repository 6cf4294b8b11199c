"""`manage.py ensure_admin`: an `admin` superuser for a first look; prints its password."""

import re
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def ensure_admin_user(password_file: Path) -> str:
    """Create the `admin` superuser once; its password is kept in VAR_DIR."""
    User = get_user_model()
    if password_file.exists() and User.objects.filter(username="admin").exists():
        return password_file.read_text().strip()
    password = secrets.token_urlsafe(12)
    user, _ = User.objects.get_or_create(username="admin", defaults={"email": ""})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return password


class Command(BaseCommand):
    help = "Create the admin superuser if needed and print its password."

    def handle(self, *args, **options):
        # One password file per database, so switching databases never shows a stale one.
        database = re.sub(r"[^A-Za-z0-9_.-]", "_", str(settings.DATABASES["default"]["NAME"]))
        password_file = settings.VAR_DIR / f"admin-password-{database}.txt"
        self.stdout.write(ensure_admin_user(password_file))
