"""Start-up of the long-running processes (web workers, Celery workers)."""

import gc


def freeze_startup_objects() -> int:
    """Put every object alive now out of the garbage collector's reach; returns how many.

    Django, DRF, Celery and their imports leave some 100,000 tracked objects behind at
    start-up, all of them alive until the process exits. Every full collection walks
    them all: 30 to 40 ms, landing on whichever request or trade is being handled then
    (bench/candles.py shows it as the p99 of a candle read). Frozen, they are skipped;
    objects made afterwards are collected as before. In a forked worker it also keeps
    the collector from touching, and so copying, pages shared with the parent.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
