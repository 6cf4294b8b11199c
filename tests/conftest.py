"""Shared fixtures: a real Celery worker process, Redis, and a staff user."""

import os
import subprocess
import sys

import pytest
import redis
from django.conf import settings

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
