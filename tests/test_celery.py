"""Celery is wired: a task round-trips through a real worker, beat schedules from the database."""

import subprocess
import sys

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from marketdata.tasks import ping
from tests.helpers import ROOT, service_env, wait_until


@pytest.mark.django_db(transaction=True)
def test_a_task_round_trips_through_a_real_worker(celery_worker_process):
    result = ping.delay()
    answer = result.get(timeout=30)
    assert answer["pong"] is True
    assert answer["database"] is True


@pytest.mark.django_db(transaction=True)
def test_beat_sends_the_periodic_tasks_stored_in_the_database(redis_client, tmp_path):
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="ping every second", task="marketdata.ping", interval=every_second
    )
    started = timezone.now()
    log = (tmp_path / "beat.log").open("w+")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tcp_dashboard", "beat", "--loglevel", "INFO"],
        cwd=ROOT,
        env=service_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: redis_client.llen("default") >= 2,
            timeout=60,
            message="beat to send ping twice to the default queue",
        )
    finally:
        beat.terminate()
        beat.wait(timeout=20)
    log.seek(0)
    assert "DatabaseScheduler" in log.read()
    task.refresh_from_db()
    assert task.last_run_at is not None and task.last_run_at >= started.replace(microsecond=0)
