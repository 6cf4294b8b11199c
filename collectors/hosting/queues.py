"""The queues collector tasks travel on: the shared start queue and each worker's own."""

from celery.utils.nodenames import worker_direct
from kombu import Queue

COLLECTORS_QUEUE = "collectors"


def control_queue(worker: str) -> Queue:
    """The queue only `worker` consumes: where stop and restart for its streams go."""
    return worker_direct(worker)
