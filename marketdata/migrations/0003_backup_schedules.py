"""Celery Beat schedules: a daily backup and a weekly restore drill (docs/backups.md).

Created once and then left alone, so operators can edit them in the admin (*Periodic
tasks*). Times are UTC, early in the morning, with the drill two hours after Sunday's
backup so that it restores a fresh one.
"""

from django.db import migrations
from django.utils import timezone

SCHEDULES = [
    {
        "name": "marketdata: backup",
        "task": "marketdata.backup",
        "crontab": {"minute": "30", "hour": "2", "day_of_week": "*"},
        "description": "Encrypted pg_dump into BACKUP_DIR, read back and verified, then "
        "rotated (BACKUP_KEEP_DAILY / WEEKLY / MONTHLY).",
    },
    {
        "name": "marketdata: restore drill",
        "task": "marketdata.restore_drill",
        "crontab": {"minute": "30", "hour": "4", "day_of_week": "0"},
        "description": "Restore the newest backup into a scratch database, check it against "
        "its manifest and the live tables, drop it, and record the outcome.",
    },
]


def tell_beat(apps):
    """Beat reloads its schedule when this row changes (the model's signals do not run here)."""
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def create_schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for schedule in SCHEDULES:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            **schedule["crontab"], day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.get_or_create(
            name=schedule["name"],
            defaults={
                "task": schedule["task"],
                "crontab": crontab,
                "queue": "default",
                "description": schedule["description"],
                "enabled": True,
            },
        )
    tell_beat(apps)


def remove_schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for schedule in SCHEDULES:
        PeriodicTask.objects.filter(name=schedule["name"], task=schedule["task"]).delete()
        CrontabSchedule.objects.filter(
            **schedule["crontab"], day_of_month="*", month_of_year="*", periodictask__isnull=True
        ).delete()
    tell_beat(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0002_backup_records"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
