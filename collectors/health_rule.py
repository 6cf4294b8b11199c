"""When a collector is unhealthy, and which of its troubles a restart can cure.

One rule, over the spec's Collector Status dict, for the collector's own health status
(`BaseDataCollector.get_health_status`) and for whoever restarts it: the health check
(`hosting.reconcile.restart_reason`, from the heartbeat the collector published) and a
plain process's `CollectorManager`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# How last_error starts when the exchange refused the configuration itself (a symbol it
# does not list): a restart would only repeat it, so only a configuration change (which
# the health check restarts on) or an operator ends it.
PERMANENT_ERROR = "permanent: "

# Seconds without a beat of a receive loop (it beats at least every second while it
# waits for frames): the loop is stuck, in a parser or a fetch.
HEARTBEAT_LIMIT = 10.0


@dataclass(slots=True, frozen=True)
class Issue:
    text: str
    restart_cures: bool  # a restart can end it; else it ends on its own or needs an operator


def health_issues(
    status: Mapping[str, Any], *, is_running: bool, should_run: bool | None = None
) -> list[Issue]:
    """What is wrong with a collector, judged from its status dict; empty when healthy.

    `should_run` overrides the dict's should_be_running (the health check knows what the
    admin wants). Silence counts from the last data or the last (re)start, whichever is
    later: a collector restarted a moment ago is not silent yet, whatever it was before.
    """
    state = status.get("status")
    if should_run is None:
        should_run = bool(status.get("should_be_running"))
    health = status.get("health") or {}
    statistics = status.get("statistics") or {}
    issues = []
    if state == "error":
        error = statistics.get("last_error")
        if str(error).startswith(PERMANENT_ERROR):
            return [Issue(f"in error: {error}", False)]
        issues.append(Issue(f"in error: {error}" if error else "in error", True))
    if should_run:
        silence = min(
            float(health.get("time_since_data") or 0.0),
            float(statistics.get("uptime_seconds") or 0.0),
        )
        limit = float(health.get("max_silence_duration") or 0.0)
        if limit and silence > limit:
            text = f"no data for {silence:.0f}s (max_silence_duration {limit:g}s)"
            issues.append(Issue(text, True))
        if not is_running and state != "starting":
            issues.append(Issue(f"not running (status {state})", True))
        if state == "reconnecting":
            issues.append(Issue("reconnecting", False))
        beat_age = float(health.get("time_since_heartbeat") or 0.0)
        if is_running and beat_age > HEARTBEAT_LIMIT:
            issues.append(Issue(f"no heartbeat for {beat_age:.0f}s", False))
    elif is_running:
        issues.append(Issue("running but should be stopped", False))
    return issues


def restart_cause(
    status: Mapping[str, Any], *, is_running: bool, should_run: bool | None = None
) -> str | None:
    """The first trouble a restart can cure, or None when a restart would not help."""
    issues = health_issues(status, is_running=is_running, should_run=should_run)
    return next((issue.text for issue in issues if issue.restart_cures), None)
