"""Leases and heartbeats in a real Redis: one owner per stream, expiry, owner-only changes."""

import time
from datetime import timedelta

import pytest

from collectors.hosting import heartbeat, leases
from collectors.hosting.heartbeat import Heartbeat, WorkerBeat
from collectors.types import DataType, ExchangeCollectorConfig
from tests.helpers import wait_until

STREAM = "okx:BTC-USDT"


@pytest.fixture
def client():
    client = leases.redis_client()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_only_one_owner_can_take_a_lease(client):
    first, second = leases.new_owner("a@host"), leases.new_owner("b@host")

    assert leases.acquire(client, STREAM, first, ttl=10)
    assert not leases.acquire(client, STREAM, second, ttl=10)
    assert leases.holder(client, STREAM) == first


def test_taking_a_lease_again_renews_it_for_its_owner(client):
    owner = leases.new_owner("a@host")
    leases.acquire(client, STREAM, owner, ttl=1)

    assert leases.acquire(client, STREAM, owner, ttl=30)
    assert client.pttl(leases.lease_key(STREAM)) > 20_000


def test_a_lease_that_is_not_renewed_expires_and_can_be_taken(client):
    first, second = leases.new_owner("a@host"), leases.new_owner("b@host")
    leases.acquire(client, STREAM, first, ttl=0.2)

    wait_until(lambda: leases.holder(client, STREAM) is None, timeout=2, message="expiry")
    assert leases.acquire(client, STREAM, second, ttl=10)
    assert not leases.renew(client, STREAM, first, ttl=10)


def test_renewing_keeps_a_lease_past_its_ttl(client):
    owner = leases.new_owner("a@host")
    leases.acquire(client, STREAM, owner, ttl=1.0)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # renewed every 0.1 s: ten times within each ttl
        assert leases.renew(client, STREAM, owner, ttl=1.0)
        time.sleep(0.1)
    assert leases.holder(client, STREAM) == owner


def test_only_the_owner_can_renew_or_release_a_lease(client):
    owner, other = leases.new_owner("a@host"), leases.new_owner("a@host")
    leases.acquire(client, STREAM, owner, ttl=10)

    assert not leases.renew(client, STREAM, other, ttl=60)
    assert not leases.release(client, STREAM, other)
    assert leases.holder(client, STREAM) == owner
    assert client.pttl(leases.lease_key(STREAM)) <= 10_000

    assert leases.release(client, STREAM, owner)
    assert leases.holder(client, STREAM) is None
    assert not leases.release(client, STREAM, owner)


def test_holders_lists_every_held_lease_by_stream(client):
    a, b = leases.new_owner("a@host"), leases.new_owner("b@host")
    leases.acquire(client, "okx:BTC-USDT", a, ttl=10)
    leases.acquire(client, "okx:ETH-USDT", b, ttl=10)

    held = leases.holders(client)

    assert held == {"okx:BTC-USDT": a, "okx:ETH-USDT": b}
    assert {name: leases.worker_of(owner) for name, owner in held.items()} == {
        "okx:BTC-USDT": "a@host",
        "okx:ETH-USDT": "b@host",
    }


def test_a_restarted_worker_does_not_inherit_its_old_leases(client):
    before, after = leases.new_owner("a@host"), leases.new_owner("a@host")
    leases.acquire(client, STREAM, before, ttl=10)

    assert before != after
    assert not leases.acquire(client, STREAM, after, ttl=10)


def beat(name=STREAM, worker="a@host", **status):
    return Heartbeat(
        name=name,
        worker=worker,
        status={"status": "running", "statistics": {"restarts": 2, "last_error": "x"}, **status},
        health={"is_healthy": True, "issues": []},
        config="abc",
    )


def test_published_heartbeats_are_read_back_by_stream(client):
    beats = [beat("okx:BTC-USDT"), beat("okx:ETH-USDT", worker="b@host")]

    heartbeat.publish(client, beats, WorkerBeat("a@host", ["okx:BTC-USDT"], 42), ttl=10)

    read = heartbeat.read_heartbeats(client)
    assert read == {b.name: b for b in beats}
    assert read["okx:BTC-USDT"].restarts == 2
    assert read["okx:BTC-USDT"].last_error == "x"
    assert read["okx:BTC-USDT"].is_healthy
    assert heartbeat.read_workers(client)["a@host"].streams == ["okx:BTC-USDT"]
    assert read["okx:BTC-USDT"].age() < 5
    assert read["okx:BTC-USDT"].published_at.utcoffset() == timedelta(0)


def test_heartbeats_expire_when_nobody_publishes_them(client):
    heartbeat.publish(client, [beat()], WorkerBeat("a@host", [STREAM], 42), ttl=0.2)

    wait_until(lambda: not heartbeat.read_heartbeats(client), timeout=2, message="expiry")
    assert heartbeat.read_workers(client) == {}


def test_a_worker_removes_only_the_heartbeat_it_wrote(client):
    heartbeat.publish(client, [beat(worker="b@host")], None, ttl=10)

    assert not heartbeat.remove(client, STREAM, "a@host")
    assert heartbeat.read_heartbeat(client, STREAM) is not None
    assert heartbeat.remove(client, STREAM, "b@host")
    assert heartbeat.read_heartbeat(client, STREAM) is None


def test_the_config_key_changes_when_the_configuration_does():
    config = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE], custom_params={"a": 1})
    same = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE], custom_params={"a": 1})
    changed = ExchangeCollectorConfig(
        "okx", "BTC-USDT", [DataType.TRADE, DataType.TICKER], custom_params={"a": 1}
    )

    assert heartbeat.config_key(config) == heartbeat.config_key(same)
    assert heartbeat.config_key(config) != heartbeat.config_key(changed)


def test_a_heartbeat_outlives_missed_beats_but_not_the_lease_by_much():
    assert heartbeat.heartbeat_ttl(interval=5, lease_ttl=15) == 15
    assert heartbeat.heartbeat_ttl(interval=1, lease_ttl=2) == 3
