"""`manage.py ensure_admin`: an `admin` superuser for a first look, and one line on how to
sign in as it. A password is printed only after it was checked to log in."""

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


@dataclass(slots=True, frozen=True)
class AdminLogin:
    password: str  # empty when the command does not know a working one
    line: str  # what to tell the operator


def ensure_admin_user(password_file: Path) -> AdminLogin:
    """Create `admin` with a new password the first time; later, print the stored password
    only if it still logs in. A password someone changed is theirs: it is not reset."""
    User = get_user_model()
    user = User.objects.filter(username="admin").first()
    if user is None:
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", email="", password=password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        return AdminLogin(password, f"user admin  password {password}")
    stored = password_file.read_text().strip() if password_file.exists() else ""
    # The checks the login makes (ModelBackend), without counting as a login attempt.
    if stored and user.is_active and user.is_staff and user.check_password(stored):
        return AdminLogin(stored, f"user admin  password {stored}")
    why = (
        f"the password in {password_file} no longer logs in (it was changed, or the user "
        "is inactive or not staff)"
        if stored
        else "its password was set outside `make run`"
    )
    return AdminLogin(
        "",
        f"user admin: {why}; use the password you set, or `manage.py changepassword admin`",
    )


def password_file_for(database_name: str) -> Path:
    # One password file per database, so switching databases never shows a stale one.
    database = re.sub(r"[^A-Za-z0-9_.-]", "_", database_name)
    return settings.VAR_DIR / f"admin-password-{database}.txt"


class Command(BaseCommand):
    help = (
        "Create the admin superuser if needed; print how to sign in as it (its password "
        "only when it was checked to work)."
    )

    def handle(self, *args, **options):
        password_file = password_file_for(str(settings.DATABASES["default"]["NAME"]))
        self.stdout.write(ensure_admin_user(password_file).line)
