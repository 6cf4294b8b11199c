"""Account streams under the control plane: configured in the database, hosted under a lease,
seen by the health check, started and stopped by name."""

import json

import pytest
from django.core.management import call_command

from collectors.config.store import collector_configs_from_db
from collectors.hosting import control, leases, reconcile
from collectors.hosting.host import CollectorHost
from collectors.models import ExchangeAccount
from marketdata.models import MarketData
from tests.accounts.conftest import ENV_NAMES
from tests.collectors.hosting.processes import (
    HEARTBEAT_INTERVAL,
    LEASE_TTL,
    empty_redis,
    running_heartbeat,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
NAME = "okx:account:main"


@pytest.fixture
def hosting_redis():
    with empty_redis() as client:
        yield client


@pytest.fixture
def stored(account_sim, credentials_env, tmp_path):
    config = {
        "exchange": "okx",
        "connection": {
            "public_ws_url": account_sim.public_url,
            "private_ws_url": account_sim.private_url,
            "rest_url": account_sim.rest_url,
            "reconnect_delay": 0.2,
        },
        "credentials": dict(ENV_NAMES),
        "account_data_types": ["balance", "position"],
        "trading_pairs": [],
    }
    path = tmp_path / "okx.json"
    path.write_text(json.dumps(config))
    call_command("load_exchange_config", str(path))


@pytest.fixture
def host(hosting_redis, sink, stored):
    def load(name):
        return next((c for c in collector_configs_from_db() if c.name == name), None)

    host = CollectorHost(
        "host-acct@tests",
        sink=sink,
        lease_ttl=LEASE_TTL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        load_config=load,
    )
    host.start()
    yield host
    host.stop(timeout=30)


def test_an_account_stream_is_hosted_under_a_lease_and_seen_by_the_health_check(
    host, hosting_redis, sink, api_key
):
    assert [c.name for c in collector_configs_from_db()] == [NAME]
    result = host.start_collector(NAME)
    assert (result.outcome, result.running) == ("started", True)
    assert leases.holder(hosting_redis, NAME) == host.owner
    beat = wait_until(lambda: running_heartbeat(hosting_redis, NAME), 10, message="a beat")
    assert beat.status["symbols"] == ["account:main"]
    assert beat.status["data_types"] == ["balance", "position"]
    wait_until(
        lambda: MarketData.objects.filter(data_type="balance", data__account="main").exists(),
        10,
        message="stored balances",
    )
    published = redis_text(hosting_redis)
    assert "okx:account:main" in published
    for value in (api_key.api_key, api_key.secret, api_key.passphrase):
        assert value not in published  # heartbeats, leases, status in Redis
    [state] = [s for s in reconcile.observe(hosting_redis).states() if s.name == NAME]
    assert (state.status, state.should_be_running, state.worker) == (
        "running",
        True,
        "host-acct@tests",
    )


def test_an_account_stream_is_named_for_control_and_stopping_disables_it(host, hosting_redis):
    account = control.trading_pair(NAME)
    assert isinstance(account, ExchangeAccount) and account.name == "main"
    with pytest.raises(control.ControlError, match="okx:account:main"):
        control.trading_pair("okx:account:nobody")
    control.stop_collector(NAME)
    assert not ExchangeAccount.objects.get(name="main").enabled
    assert collector_configs_from_db() == []
    [state] = [s for s in reconcile.observe(hosting_redis).states() if s.name == NAME]
    assert state.should_be_running is False  # still listed: configured, disabled


def redis_text(client) -> str:
    """Every key and value in this Redis database, as text."""
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = client.xrange(key) if kind == "stream" else kind
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)
