"""Times as the API reads them: ISO 8601 or epoch milliseconds, to aware UTC datetimes.

Writing them (`utc_text`) and the epoch are defined once, in collectors.times.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from collectors.times import EPOCH, utc_text

__all__ = ["EPOCH", "MAX_EPOCH_MILLIS", "parse_time", "utc_text"]
EPOCH_MILLIS = re.compile(r"[0-9]{1,15}")
MAX_EPOCH_MILLIS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def parse_time(text: str) -> datetime:
    """An aware UTC datetime from ISO 8601 (naive means UTC) or epoch milliseconds.

    ValueError otherwise, with a message that reads after the parameter's name.
    """
    text = text.strip()
    if EPOCH_MILLIS.fullmatch(text):
        millis = int(text)
        if millis > MAX_EPOCH_MILLIS:
            raise ValueError("is after the year 9999")
        return EPOCH + timedelta(milliseconds=millis)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "is not a time: give ISO 8601 (2024-01-31T12:00:00Z) or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range") from None
