"""Shared fixtures: a real Celery worker process, Redis, the OKX simulator, a storage sink."""

import itertools
import os
import subprocess
import sys

import pytest
import redis
from django.conf import settings

from collectors.simulators.okx import OkxSimulator
from collectors.storage.sink import StorageSink
from tests.helpers import ROOT, service_env, wait_until


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def celery_worker_process(redis_client, tmp_path):
    """A real `celery worker` process on the default queue, stopped after the test."""
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tcp_dashboard",
            "worker",
            "-Q",
            "default",
            "-n",
            f"test-default-{os.getpid()}@%h",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=service_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from tcp_dashboard.celery import app

    try:
        wait_until(
            lambda: process.poll() is None and app.control.ping(timeout=0.5),
            timeout=60,
            message="the celery worker to answer a ping",
        )
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


_names = itertools.count()


@pytest.fixture
def simulator():
    sim = OkxSimulator(seed=7, rate=50.0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def sink(tmp_path):
    storage = StorageSink(
        name=f"test-{next(_names)}", buffer_size=100, flush_interval=0.05, spill_dir=tmp_path
    )
    storage.start()
    yield storage
    storage.stop()


@pytest.fixture
def staff_client(client, django_user_model):
    """Django's test client, signed in as a superuser."""
    user = django_user_model.objects.create_user(
        "operator", password="a-long-password", is_staff=True, is_superuser=True
    )
    client.force_login(user)
    return client
