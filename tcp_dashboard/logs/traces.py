"""The `verbose` traces of the spec's logging components, bounded in size and rate.

websocket_clients.verbose traces received WebSocket frames (logger
`websocket_clients.frames`); data_collectors.verbose traces the data points a collector
delivers (logger `data_collectors.points`). Each line is an excerpt of at most
EXCERPT characters, redacted before it is cut; each connection or collector traces a
burst of BURST lines, then LOG_TRACE_PER_SECOND a second, and says how many it skipped.
The collectors call in only when the logger is enabled, so tracing off costs one check.
"""

from __future__ import annotations

import logging
import time

from tcp_dashboard.env import env_number
from tcp_dashboard.logs.redaction import redact

FRAMES = logging.getLogger("websocket_clients.frames")
POINTS = logging.getLogger("data_collectors.points")
EXCERPT = 300
BURST = 20.0


class Budget:
    """A token bucket per traced source: BURST lines, then `rate` a second. Each source is
    one thread (a connection, a collector), so its bucket needs no lock."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.sources: dict[str, list[float]] = {}  # name -> [tokens, last refill, skipped]

    def take(self, source: str, now: float | None = None) -> int | None:
        """None when this line is skipped, else how many were skipped before it."""
        now = time.monotonic() if now is None else now
        state = self.sources.get(source)
        if state is None:
            state = self.sources.setdefault(source, [BURST, now, 0])
        tokens = min(BURST, state[0] + (now - state[1]) * self.rate)
        state[1] = now
        if tokens < 1:
            state[0] = tokens
            state[2] += 1
            return None
        state[0] = tokens - 1
        skipped, state[2] = int(state[2]), 0
        return skipped


BUDGET = Budget(env_number("LOG_TRACE_PER_SECOND", 0.2))


def excerpt(text: str) -> str:
    cut = redact(text[: EXCERPT * 4])
    return cut[:EXCERPT] + ("..." if len(text) > EXCERPT else "")


def skipped_note(skipped: int) -> str:
    return f" ({skipped} not traced before it)" if skipped else ""


def trace_frame(source: str, frame: str | bytes) -> None:
    """One received frame of the connection `source`."""
    skipped = BUDGET.take(source)
    if skipped is None:
        return
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    FRAMES.debug(
        "%s frame, %d bytes%s: %s", source, len(frame), skipped_note(skipped), excerpt(text)
    )


def trace_points(source: str, points: list) -> None:
    """The data points a collector delivers at once."""
    skipped = BUDGET.take(f"points {source}")
    if skipped is None:
        return
    shown = ", ".join(
        f"{point.data_type.value} {point.timestamp.isoformat()}" for point in points[:5]
    )
    more = f" and {len(points) - 5} more" if len(points) > 5 else ""
    POINTS.debug("%s: %d points%s: %s%s", source, len(points), skipped_note(skipped), shown, more)
