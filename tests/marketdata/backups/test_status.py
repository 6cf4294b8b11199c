"""Health and the admin show the ages of the newest backup and restore; the schedules exist."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from marketdata import tasks
from marketdata.backups.status import backup_status, scheduled_since
from marketdata.models import Backup, RestoreDrill
from tcp_dashboard.celery import app

pytestmark = pytest.mark.django_db


def backed_up(hours_ago: float, *, verified: bool = True) -> Backup:
    return Backup.objects.create(
        created_at=timezone.now() - timedelta(hours=hours_ago),
        file_name="x.dump.enc",
        verified=verified,
        error="" if verified else "pg_dump failed",
    )


def drilled(hours_ago: float, *, ok: bool = True) -> RestoreDrill:
    return RestoreDrill.objects.create(
        started_at=timezone.now() - timedelta(hours=hours_ago), ok=ok, detail="d"
    )


def later(hours: float):
    return time_machine.travel(timezone.now() + timedelta(hours=hours), tick=False)


def test_a_fresh_install_is_healthy_until_its_first_backup_is_due():
    status = backup_status()
    assert status.ok
    assert status.detail == "no backup yet; no verified restore yet"
    with later(47):
        assert backup_status().ok
    with later(49):
        status = backup_status()
    assert not status.ok
    assert status.detail.startswith("no verified backup in 48 h;")


def test_a_recent_verified_backup_and_restore_are_healthy_and_their_ages_shown():
    backed_up(3)
    drilled(48)
    status = backup_status()
    assert status.ok
    assert status.detail == "newest backup 3.0 h old; newest verified restore 2.0 d old"


def test_no_verified_backup_in_48_hours_is_unhealthy_whatever_failed_since():
    backed_up(50)
    backed_up(2, verified=False)
    drilled(10)
    status = backup_status()
    assert not status.ok
    assert status.detail.startswith("no verified backup in 48 h; newest backup 2.1 d old")


def test_a_failed_last_drill_is_unhealthy_even_after_a_passed_one():
    backed_up(1)
    drilled(24 * 7)
    drilled(1, ok=False)
    status = backup_status()
    assert not status.ok
    assert status.detail.startswith("the last restore drill failed;")


def test_no_passed_drill_for_eight_days_is_unhealthy_and_the_limit_is_a_setting(settings):
    backed_up(1)
    drilled(200)
    assert backup_status().detail.startswith("no verified restore in 192 h;")
    settings.BACKUP_DRILL_MAX_AGE_HOURS = 0
    assert backup_status().ok
    settings.BACKUP_MAX_AGE_HOURS = 0.5
    assert not backup_status().ok


def test_the_clock_of_a_fresh_install_starts_when_backups_were_scheduled():
    assert timezone.now() - scheduled_since() < timedelta(hours=12)


def test_health_lists_the_backup_check_and_turns_503_when_it_fails(redis_client):
    backed_up(3)
    api = APIClient()  # signed in: anonymous callers get only the status and counts
    api.force_authenticate(get_user_model().objects.create_user("watcher"))
    response = api.get("/api/v1/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["backups"] == {
        "ok": True,
        "detail": "newest backup 3.0 h old; no verified restore yet",
    }
    with later(72):
        response = api.get("/api/v1/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["backups"]["ok"] is False


def test_the_admin_lists_backups_and_drills_with_their_ages_in_the_title(client):
    user = get_user_model().objects.create_user(
        "operator", password="a-long-password", is_staff=True, is_superuser=True
    )
    client.force_login(user)
    backed_up(5)
    drilled(30)
    for name in ("backup", "restoredrill"):
        response = client.get(reverse(f"admin:marketdata_{name}_changelist"))
        assert response.status_code == 200
        page = response.content.decode()
        assert "newest backup 5.0 h old; newest verified restore 30.0 h old" in page
    assert "5.0 h" in client.get(reverse("admin:marketdata_backup_changelist")).content.decode()


def test_beat_runs_a_daily_backup_and_a_weekly_drill_editable_in_the_admin():
    backup = PeriodicTask.objects.get(name="marketdata: backup")
    drill = PeriodicTask.objects.get(name="marketdata: restore drill")
    assert (backup.task, backup.queue, backup.enabled) == ("marketdata.backup", "default", True)
    assert (backup.crontab.hour, backup.crontab.minute, backup.crontab.day_of_week) == (
        "2",
        "30",
        "*",
    )
    assert drill.task == "marketdata.restore_drill"
    assert (drill.crontab.hour, drill.crontab.day_of_week) == ("4", "0")
    for name in (tasks.backup.name, tasks.restore_drill.name):
        task = app.tasks[name]
        assert task.time_limit >= 3600
        assert task.acks_late is False
        assert app.amqp.router.route({}, name)["queue"].name == "default"
