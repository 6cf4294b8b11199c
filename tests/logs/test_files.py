"""Log files: one per process (forked children too), new ones daily or when big, and at most
`max_files` of them kept."""

import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tcp_dashboard.logs.handlers import (
    FILE_NAME,
    ProcessFileHandler,
    clean_log_directory,
    host_name,
)
from tests.helpers import ROOT, service_env, wait_until

DEAD_PID = 2**22 + 7  # above Linux's largest pid: never a live process


def record(message: str, created: float | None = None) -> logging.LogRecord:
    entry = logging.makeLogRecord({"msg": message, "levelno": logging.INFO, "levelname": "INFO"})
    if created is not None:
        entry.created = created
    return entry


@pytest.fixture
def handler(tmp_path):
    made = ProcessFileHandler(str(tmp_path), role="test", max_files=5, max_bytes=2000)
    yield made
    made.close()


def log_files(directory) -> list:
    return sorted(directory.glob("*.log"))


def old_file(directory, pid: int, days_ago: int):
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    path = directory / f"test-{host_name()}-{pid}-{moment:%Y%m%dT%H%M%S%f}.log"
    path.write_text("old\n")
    os.utime(path, (moment.timestamp(), moment.timestamp()))
    return path


def test_nothing_is_created_until_the_first_record(handler, tmp_path):
    assert log_files(tmp_path) == []
    handler.handle(record("first"))
    [path] = log_files(tmp_path)
    found = FILE_NAME.match(path.name)
    assert (found["role"], found["host"], found["pid"]) == ("test", host_name(), str(os.getpid()))
    assert path.read_text() == "first\n"


def test_a_new_file_starts_at_midnight_utc_and_past_the_size_limit(handler, tmp_path):
    handler.handle(record("today"))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).timestamp()
    time.sleep(0.001)  # file names carry microseconds
    handler.handle(record("tomorrow", created=tomorrow))
    assert [path.read_text() for path in log_files(tmp_path)] == ["today\n", "tomorrow\n"]
    for _ in range(30):
        handler.handle(record("x" * 99, created=tomorrow))
    files = log_files(tmp_path)
    assert len(files) == 3
    assert all(path.stat().st_size <= 2000 + 100 for path in files)


def test_old_files_beyond_max_files_are_deleted_but_not_a_live_processs_newest(handler, tmp_path):
    dead = [old_file(tmp_path, DEAD_PID + n, days_ago=10 + n) for n in range(10)]
    live = old_file(tmp_path, os.getppid(), days_ago=40)  # pytest's parent: alive
    handler.handle(record("now"))
    left = log_files(tmp_path)
    assert len(left) == 5 + 1
    assert live in left
    assert set(dead[:4]) < set(left)  # the newest of the old ones
    assert not set(dead[4:]) & set(left)


def test_cleanup_can_be_turned_off(tmp_path):
    for n in range(8):
        old_file(tmp_path, DEAD_PID + n, days_ago=n + 1)
    keeper = ProcessFileHandler(str(tmp_path), role="test", max_files=2, cleanup=False)
    keeper.handle(record("now"))
    keeper.close()
    assert len(log_files(tmp_path)) == 9
    assert len(clean_log_directory(tmp_path, keep=2)) == 7


def test_a_forked_child_writes_its_own_file(handler, tmp_path):
    handler.handle(record("parent before"))
    child = os.fork()
    if child == 0:  # pragma: no cover - the child exits here
        handler.handle(record("child"))
        os._exit(0)
    os.waitpid(child, 0)
    handler.handle(record("parent after"))
    by_pid = {FILE_NAME.match(p.name)["pid"]: p.read_text() for p in log_files(tmp_path)}
    assert by_pid == {str(os.getpid()): "parent before\nparent after\n", str(child): "child\n"}


@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_and_its_pool_process_write_their_own_redacted_files(tmp_path):
    redis = urlsplit(settings.REDIS_URL)
    password = "redis-Pa55-for-the-worker"
    env = service_env(
        REDIS_URL=f"redis://default:{password}@{redis.netloc}{redis.path}",
        LOG_FILE_OUTPUT="true",
        LOG_DIRECTORY=str(tmp_path / "logs"),
    )
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "tcp_dashboard", "worker", "-Q", "logtest"),
            *("-n", f"logtest-{os.getpid()}@%h", "--pool", "prefork", "--concurrency", "1"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    from marketdata.tasks import ping

    try:
        wait_until(lambda: "ready" in read(tmp_path / "logs"), 60, message="the worker ready")
        assert ping.apply_async(queue="logtest").get(timeout=60)["pong"] is True
        wait_until(lambda: "succeeded" in read(tmp_path / "logs"), 30, message="task logged")
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=60)

    files = log_files(tmp_path / "logs")
    roles = {FILE_NAME.match(path.name)["role"] for path in files}
    pids = {FILE_NAME.match(path.name)["pid"] for path in files}
    assert roles == {"worker_logtest"}
    assert len(pids) == 2  # the worker and its pool process
    everything = read(tmp_path / "logs") + stderr
    assert password not in everything
    assert "Connected to redis://***@" in everything


def read(directory) -> str:
    return "".join(path.read_text() for path in log_files(directory))
