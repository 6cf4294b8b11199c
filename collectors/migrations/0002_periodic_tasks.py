"""Celery Beat schedules: the collectors' health check and the candle rollup.

Created once and then left alone, so operators can edit them in the admin. Retention
cleanup and backups get their schedules with the tasks that implement them.
"""

from django.db import migrations
from django.utils import timezone

SCHEDULES = [
    {
        "name": "collectors: health check",
        "task": "collectors.health_check",
        "every": 30,
        "description": "Reconcile the collectors with the admin's enabled pairs "
        "(health_check_interval): start, restart the unhealthy, stop.",
    },
    {
        "name": "marketdata: rollup candles",
        "task": "marketdata.rollup_candles",
        "every": 60,
        "description": "Rebuild recent candles from raw_trades, folding in late trades.",
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
        ("collectors", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
