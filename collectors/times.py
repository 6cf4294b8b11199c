"""Times as the platform writes them: aware UTC datetimes, ISO 8601 text with a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_text(value: datetime) -> str:
    """ISO 8601 in UTC with a Z: the API, live candle messages, statuses and stored rows."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()[:-6] + "Z"


def from_epoch_ms(milliseconds: int) -> datetime:
    """Epoch milliseconds (how exchanges stamp their data) as an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=milliseconds)
