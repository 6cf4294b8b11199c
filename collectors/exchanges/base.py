"""What an exchange adapter provides: endpoints, subscriptions and a parser per connection.

An adapter knows only its exchange's wire format. Connection lifecycle, pings,
reconnects, statistics and health live once, in `BaseDataCollector`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from collectors.types import DataType, ExchangeCollectorConfig, MarketDataPoint


class FrameError(ValueError):
    """A frame that is malformed or unexpected; counted, logged and skipped."""


@dataclass(slots=True, frozen=True)
class Endpoint:
    """One WebSocket connection a collector keeps open, and what it subscribes to there."""

    key: str  # "public", "business", ...
    url: str
    subscriptions: tuple[dict, ...]


@dataclass(slots=True)
class Handled:
    """What one received frame amounts to."""

    points: list[MarketDataPoint] = field(default_factory=list)
    send: list[str] = field(default_factory=list)  # frames to send back (resubscribe, ...)
    errors: list[str] = field(default_factory=list)  # counted in statistics, logged
    is_pong: bool = False
    subscribed: bool = False  # a subscribe acknowledgement
    unsubscribed: bool = False  # an unsubscribe acknowledgement
    upgrade_notice: bool = False  # the server will close this connection soon


class ExchangeSession(ABC):
    """Parser state for one live connection (order books, sequence numbers)."""

    @abstractmethod
    def subscribe_frames(self) -> list[str]: ...

    def unsubscribe_frames(self) -> list[str]:
        """Frames that end the subscriptions, so a graceful stop can read up to their end."""
        return []

    @abstractmethod
    def handle(self, frame: str | bytes) -> Handled:
        """Parse one frame; raise FrameError for a malformed or unexpected one."""


class ExchangeAdapter(ABC):
    """An exchange's wire format, for one collector (one exchange and symbol)."""

    name: ClassVar[str]
    # channel role in the config's "channels" -> exchange channel names it may take
    channel_names: ClassVar[dict[str, frozenset[str]]]
    # channel role -> the data type it produces
    channel_roles: ClassVar[dict[str, DataType]]
    symbol_pattern: ClassVar[re.Pattern[str]]
    default_public_ws_url: ClassVar[str]
    ping_frame: ClassVar[str] = "ping"

    def __init__(self, config: ExchangeCollectorConfig) -> None:
        self.config = config

    @abstractmethod
    def endpoints(self) -> list[Endpoint]: ...

    @abstractmethod
    def session(self, endpoint: Endpoint) -> ExchangeSession: ...

    def resume_after_trade(self, trade_id: str) -> None:
        """The newest trade already stored: the first subscription may fill in from there.

        An adapter that cannot fetch missed trades ignores it.
        """
        return None
