"""The one "unhealthy" rule, which the collector and the health check both judge by."""

from collectors.health_rule import health_issues, restart_cause
from collectors.hosting.heartbeat import Heartbeat, config_key
from collectors.hosting.reconcile import restart_reason
from collectors.types import DataType, ExchangeCollectorConfig


def status(state="running", since_data=1.0, uptime=100.0, beat_age=0.5, error=""):
    return {
        "status": state,
        "should_be_running": True,
        "health": {
            "time_since_heartbeat": beat_age,
            "time_since_data": since_data,
            "max_silence_duration": 60.0,
        },
        "statistics": {"uptime_seconds": uptime, "last_error": error},
    }


def texts(spec: dict, is_running: bool = True) -> list[str]:
    return [issue.text for issue in health_issues(spec, is_running=is_running)]


def test_a_collector_receiving_data_is_healthy():
    assert texts(status()) == []
    assert restart_cause(status(), is_running=True) is None


def test_silence_counts_from_the_last_data_or_the_last_restart_whichever_is_later():
    assert texts(status(since_data=500.0, uptime=5.0)) == []
    assert texts(status(since_data=61.0)) == ["no data for 61s (max_silence_duration 60s)"]


def test_reconnecting_and_a_stuck_receive_loop_are_unhealthy_but_not_restarted():
    spec = status(state="reconnecting", beat_age=12.0)
    assert texts(spec) == ["reconnecting", "no heartbeat for 12s"]
    assert restart_cause(spec, is_running=True) is None


def test_the_health_check_restarts_for_the_same_cause_the_collector_reports():
    config = ExchangeCollectorConfig("okx", "BTC-USDT", [DataType.TRADE])
    for spec, is_running in [
        (status(state="error", error="boom"), True),
        (status(since_data=90.0), True),
        (status(state="stopped"), False),
    ]:
        beat = Heartbeat(
            name=config.name,
            worker="w@h",
            status=spec,
            health={"is_running": is_running},
            config=config_key(config),
        )
        assert restart_reason(config, beat) == texts(spec, is_running)[0]
