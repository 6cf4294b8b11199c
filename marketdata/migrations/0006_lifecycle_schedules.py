"""Celery Beat schedules of the data lifecycle: retention and partitions created ahead.

Created once and then left alone, so operators can edit them in the admin.
"""

from django.db import migrations
from django.utils import timezone

SCHEDULES = [
    {
        "name": "marketdata: retention",
        "task": "marketdata.retention",
        "every": 3600,
        "description": "Archive to Parquet and remove the days past their retention window.",
    },
    {
        "name": "marketdata: create partitions",
        "task": "marketdata.create_partitions",
        "every": 3600,
        "description": "Create the daily partitions of the coming PARTITIONS_AHEAD_DAYS days.",
    },
]


def tell_beat(apps):
    """Beat reloads its schedule when this row changes (the model's signals do not run here)."""
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for schedule in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule["every"], period="seconds"
        )
        PeriodicTask.objects.get_or_create(
            name=schedule["name"],
            defaults={
                "task": schedule["task"],
                "interval": interval,
                "description": schedule["description"],
                "enabled": True,
            },
        )
    tell_beat(apps)


def remove_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for schedule in SCHEDULES:
        PeriodicTask.objects.filter(name=schedule["name"], task=schedule["task"]).delete()
        IntervalSchedule.objects.filter(
            every=schedule["every"], period="seconds", periodictask__isnull=True
        ).delete()
    tell_beat(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0005_archive_files_and_retention_runs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
