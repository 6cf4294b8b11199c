"""The Celery app: settings from Django (CELERY_*), tasks discovered in every app."""

import os

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready

from tcp_dashboard.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")

app = Celery("tcp_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# By name: the step imports the collector machinery, which needs Django set up first.
app.steps["worker"].add("collectors.hosting.worker:CollectorHostStep")


@worker_ready.connect
def _freeze_worker(**kwargs) -> None:
    """The worker is up (and hosts its collectors): keep start-up objects out of GC."""
    freeze_startup_objects()


@worker_process_init.connect
def _freeze_pool_process(**kwargs) -> None:
    """The same in each forked pool process."""
    freeze_startup_objects()


@setup_logging.connect
def _use_django_logging(**kwargs) -> None:
    """Workers, beat and Flower log through Django's LOGGING (redaction, their own files,
    docs/logging.md) instead of Celery's handlers; `--loglevel` gives way to LOG_LEVEL."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
