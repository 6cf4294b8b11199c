"""What an exchange adapter provides: endpoints, subscriptions and a parser per connection.

An adapter knows only its exchange's wire format and rules: its channels and their
defaults, its keepalive, its tuning parameters and limits. Connection lifecycle, pings,
reconnects, statistics and health live once, in `BaseDataCollector` and its links.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from collectors.bounds import Bounds
from collectors.types import COLLECTOR_DEFAULTS, DataType, ExchangeCollectorConfig, MarketDataPoint


class FrameError(ValueError):
    """A frame that is malformed or unexpected; counted, logged and skipped."""


class ConfigurationError(ValueError):
    """A connection cannot be opened as configured (a credential's environment variable is
    not set): the collector stops in error, since a retry would only repeat it."""


@dataclass(slots=True, frozen=True)
class Endpoint:
    """One WebSocket connection a collector keeps open, and what it subscribes to there."""

    key: str  # "public", "business", ...
    url: str
    subscriptions: tuple[dict, ...]


@dataclass(slots=True, frozen=True)
class Keepalive:
    """How a link keeps a quiet connection alive and tells that it still is.

    After `ping_interval` seconds without a frame the link sends a ping and expects an
    answer within `pong_timeout`: with "text", a text frame (OKX's "ping"), answered by
    one the session reports as a pong (Handled.is_pong); with "protocol", an RFC 6455
    ping frame, whose pong frame the link recognises itself. With "none" the link never
    pings: the server pings (the link answers every server ping with a pong, whatever
    the kind), and a quiet connection is normal.
    """

    kind: Literal["text", "protocol", "none"]
    text: str = ""

    @classmethod
    def text_frame(cls, text: str) -> Keepalive:
        return cls("text", text)

    @classmethod
    def protocol_frames(cls) -> Keepalive:
        return cls("protocol")

    @classmethod
    def server_pings(cls) -> Keepalive:
        return cls("none")


@dataclass(slots=True)
class Handled:
    """What one received frame amounts to."""

    points: list[MarketDataPoint] = field(default_factory=list)
    send: list[str] = field(default_factory=list)  # frames to send back (resubscribe, ...)
    errors: list[str] = field(default_factory=list)  # counted in statistics, logged
    warnings: list[str] = field(default_factory=list)  # counted apart, logged now and then
    is_pong: bool = False
    subscribed: bool = False  # a subscribe acknowledgement
    unsubscribed: bool = False  # an unsubscribe acknowledgement
    upgrade_notice: bool = False  # the server will close this connection soon
    # The exchange refused what the configuration asks for (a symbol it does not list):
    # the collector stops in error, and a restart would only repeat it (health_rule).
    permanent_error: str = ""
    # This connection cannot go on (a login refused for a reason time may cure): close it
    # and let the link reconnect with its backoff; the text says why.
    reconnect: str = ""


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
    # channel role -> the channel used when a trading pair names none
    default_channels: ClassVar[dict[str, str]]
    symbol_pattern: ClassVar[re.Pattern[str]]
    default_public_ws_url: ClassVar[str]
    keepalive: ClassVar[Keepalive] = Keepalive.protocol_frames()
    # Tuning a collector's custom_params may carry for this exchange: name -> check, which
    # returns the value or raises ValueError saying why it is refused.
    tuning_params: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    # The largest message accepted from this exchange, in bytes (custom_params
    # "max_message_bytes" overrides it); a bigger one closes the connection.
    max_message_bytes: ClassVar[int] = COLLECTOR_DEFAULTS["max_message_bytes"]
    # Seconds after which the exchange cuts a connection (Binance: 24 h), less a margin:
    # the link then opens its successor and closes itself once the successor is live,
    # as on an upgrade notice. None: connections may live for ever.
    connection_lifetime: ClassVar[float | None] = None

    def __init__(self, config: ExchangeCollectorConfig) -> None:
        self.config = config
        # what a value must keep to be stored (collectors.bounds), as the settings say
        self.bounds = Bounds.from_settings()

    @classmethod
    def unlisted_symbols(cls, symbols: list[str], rest_url: str, timeout: float) -> list[str]:
        """The symbols the exchange does not list, asked from its REST instrument list
        (`rest_url`, or the exchange's own when blank). Raises OSError or ValueError when
        the exchange cannot be asked. An adapter that cannot ask lists every symbol."""
        return []

    @abstractmethod
    def endpoints(self) -> list[Endpoint]: ...

    @abstractmethod
    def session(self, endpoint: Endpoint) -> ExchangeSession: ...

    def resume_after_trade(self, trade_id: str) -> None:
        """The newest trade already stored: the first subscription may fill in from there.

        An adapter that cannot fetch missed trades ignores it.
        """
        return None
