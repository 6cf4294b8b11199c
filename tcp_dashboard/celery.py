"""The Celery app: settings from Django (CELERY_*), tasks discovered in every app."""

import os

from celery import Celery
from celery.fixups.django import DjangoFixup, DjangoWorkerFixup
from celery.signals import setup_logging, worker_process_init, worker_ready

from tcp_dashboard.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")


class PoolKeepingWorkerFixup(DjangoWorkerFixup):
    """Celery's Django fix-up, except that a worker process keeps its connection pool.

    Celery closes the pool of a prefork process before and after every task, so each task
    opened a new pool (DB_POOL_SIZE connections, more under load) and closed it: hundreds of
    connections a minute, "too many clients" for a small server. Here a task gives its
    connections back to the process's one pool, which lives as long as the process.
    """

    def _is_prefork(self) -> bool:
        return False

    def on_worker_process_init(self, **kwargs) -> None:
        super().on_worker_process_init(**kwargs)
        # A pool inherited through fork shares its sockets with the parent: forget it
        # without closing (closing would end the parent's connections); this process opens
        # its own on first use.
        from django.db.backends.postgresql.base import DatabaseWrapper

        DatabaseWrapper._connection_pools.clear()


def keep_pools(celery_app: Celery) -> None:
    for fixup in celery_app._fixups:
        if isinstance(fixup, DjangoFixup):
            fixup.worker_fixup = PoolKeepingWorkerFixup(celery_app)


app = Celery("tcp_dashboard")
keep_pools(app)
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
