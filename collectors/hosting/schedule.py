"""The health check's Celery Beat schedule follows the exchanges' `health_check_interval`.

Migration 0002 creates the periodic task `collectors: health check` every 30 s (the
spec's default). Each health check then sets its own interval to the shortest
`health_check_interval` of the enabled exchanges that have an enabled pair (of all
exchanges, if none has; 30 s if there are none), rounded up to whole seconds, the unit of
django-celery-beat's interval schedules. So a change made in the admin, or by any other
means, takes effect at the next reconciliation, like every other change of the desired
state. Saving the periodic task tells a running beat to reload its schedule. A health
check that an operator has put on a crontab schedule, or deleted, is left as it is.
"""

from __future__ import annotations

import logging
import math

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from collectors.models import Exchange
from collectors.types import COLLECTOR_DEFAULTS

logger = logging.getLogger(__name__)

HEALTH_CHECK_SCHEDULE = "collectors: health check"
HEALTH_CHECK_TASK = "collectors.health_check"
DEFAULT_INTERVAL = COLLECTOR_DEFAULTS["health_check_interval"]


def health_check_every() -> int:
    """Whole seconds between health checks, as the exchanges' settings ask."""
    active = Exchange.objects.filter(enabled=True, trading_pairs__enabled=True)
    intervals = list(active.values_list("health_check_interval", flat=True))
    if not intervals:
        intervals = list(Exchange.objects.values_list("health_check_interval", flat=True))
    return max(1, math.ceil(min(intervals, default=DEFAULT_INTERVAL)))


def sync_health_check_schedule() -> int | None:
    """Set the health check's interval; returns it, or None if there is no interval to set."""
    task = (
        PeriodicTask.objects.select_related("interval")
        .filter(name=HEALTH_CHECK_SCHEDULE, task=HEALTH_CHECK_TASK)
        .first()
    )
    if task is None or task.interval is None:
        return None
    every = health_check_every()
    if (task.interval.every, task.interval.period) != (every, IntervalSchedule.SECONDS):
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=every, period=IntervalSchedule.SECONDS
        )
        task.interval = interval
        task.save()  # also marks the schedule changed, so beat reloads it
        logger.info("collectors: health check now runs every %d s", every)
    return every
