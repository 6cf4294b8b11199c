"""A hosted stream of a symbol the exchange does not have (OKX error 60018): it stays in
error with the exchange's message, the health check neither restarts it nor counts it
healthy, and a change of its configuration restarts it."""

import time

import pytest

from collectors.hosting import heartbeat, reconcile
from tests.collectors.hosting.processes import configure_exchange
from tests.helpers import simulated_market, wait_until


@pytest.fixture
def okx():
    with simulated_market("okx", seed=7, rate=50.0) as running:
        yield running


@pytest.mark.django_db(transaction=True)
def test_a_hosted_stream_of_a_missing_symbol_stays_in_error_until_its_configuration_changes(
    okx, processes, hosting_redis
):
    exchange = configure_exchange(okx.simulator, {"SOL-USDX": True})
    node = processes.collector_worker("unknown")
    processes.wait_ready(node)
    name = "okx:SOL-USDX"

    def in_error():
        beat = heartbeat.read_heartbeat(hosting_redis, name)
        return beat if beat is not None and beat.status["status"] == "error" else None

    reconcile.reconcile(hosting_redis)
    beat = wait_until(in_error, timeout=30, message="the stream in error")
    assert "okx error 60018" in beat.last_error and "doesn't exist" in beat.last_error
    for _ in range(3):  # health checks leave it alone, and count it unhealthy
        summary = reconcile.reconcile(hosting_redis)
        assert summary["actions"] == [] and summary["healthy"] == 0
        (state,) = [s for s in reconcile.collector_states(hosting_redis) if s.name == name]
        assert state.status == "error" and not state.is_healthy
        time.sleep(0.5)
    assert heartbeat.read_heartbeat(hosting_redis, name).status["statistics"]["restarts"] == 0
    exchange.reconnect_delay = 0.2
    exchange.save()
    summary = reconcile.reconcile(hosting_redis)
    assert [(a["kind"], a["reason"]) for a in summary["actions"]] == [
        ("restart", "configuration changed")
    ]
