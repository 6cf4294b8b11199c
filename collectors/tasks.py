"""Celery tasks of the collectors app: the health check and per-stream control.

`collectors.health_check` runs on the default queue (beat sends it every
health_check_interval). `collectors.start` goes to the shared collectors queue: the
collector worker that takes it takes the stream's lease. `collectors.stop` and
`collectors.restart` are sent to the direct queue of the worker holding the lease
(collectors.hosting.control). All of them are idempotent: a second start finds the lease held,
a second stop finds nothing running.

Collector workers run the threads pool, which enforces no time limits; the host bounds
each of its own waits instead (collectors.hosting.host.CONTROL_TIMEOUT).
"""

from celery import shared_task

from collectors.hosting.host import current_host
from collectors.hosting.reconcile import reconcile


@shared_task(name="collectors.health_check", time_limit=60, soft_time_limit=50)
def health_check() -> dict:
    return reconcile()


@shared_task(name="collectors.start", time_limit=120, soft_time_limit=100)
def start(name: str) -> dict:
    return current_host().start_collector(name).as_dict()


@shared_task(name="collectors.stop", time_limit=120, soft_time_limit=100)
def stop(name: str, reason: str = "requested") -> dict:
    return current_host().stop_collector(name, reason).as_dict()


@shared_task(name="collectors.restart", time_limit=180, soft_time_limit=160)
def restart(name: str, reason: str = "requested") -> dict:
    return current_host().restart_collector(name, reason).as_dict()
