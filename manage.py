#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except OperationalError:
        explain_missing_database()
        raise


def explain_missing_database() -> None:
    """A command run where no database was set up says so, instead of a traceback."""
    from django.conf import settings

    from tcp_dashboard.env import missing_sqlite_file

    missing = missing_sqlite_file(settings.DATABASES["default"])
    if missing is None:
        return
    sys.exit(
        f"No database at {missing}. DATABASE_URL is not set in this shell and no .env in "
        "this checkout names one. Run `make run` once (it records the database it uses in "
        ".env), or `python manage.py migrate` to create this SQLite file, or set DATABASE_URL."
    )


if __name__ == "__main__":
    main()
