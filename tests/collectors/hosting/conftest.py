"""Fixtures of the hosting tests: an empty Redis and the test's Celery processes."""

import pytest

from tests.collectors.hosting.processes import celery_processes, empty_redis


@pytest.fixture
def hosting_redis():
    with empty_redis() as client:
        yield client


@pytest.fixture
def processes(transactional_db, hosting_redis, tmp_path):
    # Depending on transactional_db stops the processes before the database is flushed.
    with celery_processes(tmp_path) as running:
        yield running
