"""The Celery worker bootstep that hosts collectors in workers consuming the collectors queue.

A worker started with `-Q collectors` takes the collectors' start tasks, so it is the
one that must be able to run them: the queue list alone makes a worker a collector
worker, and no second switch can disagree with it. Such a worker also consumes its own
direct queue (Celery's worker-direct queue, `<worker name>.dq2`), where stop and restart
tasks for the streams it hosts are sent.

The collector host lives in the worker's main process, so the control tasks must run
there too: collector workers use the threads (or solo) pool, never prefork.

tcp_dashboard/celery.py names this step by its dotted path, so it is imported when a
worker builds its blueprint, after Django is set up, and not when settings load.
"""

from __future__ import annotations

import logging

from celery import bootsteps
from django.core.exceptions import ImproperlyConfigured

from collectors.hosting.host import CollectorHost, set_current_host
from collectors.hosting.queues import COLLECTORS_QUEUE, control_queue

logger = logging.getLogger(__name__)

IN_PROCESS_POOLS = ("celery.concurrency.thread", "celery.concurrency.solo")
SHUTDOWN_TIMEOUT = 60.0


def hosts_collectors(worker) -> bool:
    return COLLECTORS_QUEUE in worker.app.amqp.queues.consume_from


class CollectorHostStep(bootsteps.StartStopStep):
    """Runs a CollectorHost from worker start to worker shutdown."""

    label = "Collector host"
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **options) -> None:
        self.enabled = hosts_collectors(worker)
        if not self.enabled:
            return
        if worker.pool_cls.__module__ not in IN_PROCESS_POOLS:
            raise ImproperlyConfigured(
                f"worker {worker.hostname} consumes the {COLLECTORS_QUEUE!r} queue, so it hosts "
                "collectors, and their control tasks must run in its main process: start it "
                "with --pool threads (or --pool solo)"
            )
        worker.app.amqp.queues.select_add(control_queue(worker.hostname))

    def create(self, worker):
        return CollectorHost(worker.hostname)

    def start(self, worker) -> None:
        self.obj.start()
        set_current_host(self.obj)

    def stop(self, worker) -> None:
        """Warm shutdown: every collector stops and the sink is flushed before the worker exits."""
        self.obj.stop(timeout=SHUTDOWN_TIMEOUT)
        set_current_host(None)

    def terminate(self, worker) -> None:
        """Cold shutdown: stop at once; what the sink could not write is spilled to disk."""
        self.obj.terminate()
        set_current_host(None)
