"""Keyset (cursor) pagination over (timestamp, id): stable while rows are being inserted.

A page ends at a row; the next page starts strictly after that row's (timestamp, id) in
the page's order, so rows inserted between two requests never shift, repeat or hide the
rows already being paged through (unlike OFFSET). The cursor is opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

from collectors.times import EPOCH
from marketdata.selectors import ArchivedPage, fetch_values, merge_pages

CURSOR_VERSION = "1"
MICROSECOND = timedelta(microseconds=1)
MAX_CURSOR_LENGTH = 120
MAX_ROW_ID = 2**63 - 1  # BIGINT


@dataclass(slots=True, frozen=True)
class Cursor:
    """The last row of a page: its timestamp and id, and the order it was paged in."""

    timestamp: datetime
    id: int
    descending: bool


@dataclass(slots=True, frozen=True)
class PageRequest:
    limit: int
    cursor: Cursor | None = None
    descending: bool = False


@dataclass(slots=True, frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: Cursor | None


def encode_cursor(cursor: Cursor) -> str:
    micros = (cursor.timestamp - EPOCH) // MICROSECOND
    order = "d" if cursor.descending else "a"
    text = f"{CURSOR_VERSION}.{order}.{micros}.{cursor.id}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(token: str) -> Cursor:
    """The cursor a token stands for; ValueError for anything encode_cursor did not make."""
    if len(token) > MAX_CURSOR_LENGTH or not token.isascii():
        raise ValueError("not a cursor")
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != CURSOR_VERSION or parts[1] not in ("a", "d"):
        raise ValueError("not a cursor")
    micros, row_id = parts[2], parts[3]
    for number in (micros, row_id):
        if not number.isascii() or not number.lstrip("-").isdigit() or len(number) > 19:
            raise ValueError("not a cursor")
    try:
        timestamp = EPOCH + int(micros) * MICROSECOND
    except OverflowError:
        raise ValueError("not a cursor") from None
    if not 0 <= int(row_id) <= MAX_ROW_ID:
        raise ValueError("not a cursor")
    return Cursor(timestamp=timestamp, id=int(row_id), descending=parts[1] == "d")


def _after(queryset: QuerySet, cursor: Cursor) -> QuerySet:
    # The plain bound on timestamp alone lets the index range scan start at the cursor;
    # the OR then settles rows that share the cursor's timestamp.
    if cursor.descending:
        return queryset.filter(
            Q(timestamp__lt=cursor.timestamp) | Q(id__lt=cursor.id),
            timestamp__lte=cursor.timestamp,
        )
    return queryset.filter(
        Q(timestamp__gt=cursor.timestamp) | Q(id__gt=cursor.id),
        timestamp__gte=cursor.timestamp,
    )


def paginate(
    queryset: QuerySet,
    fields: tuple[str, ...],
    request: PageRequest,
    *,
    as_text: frozenset[str] = frozenset(),
    archived: Callable[[ArchivedPage], list[dict[str, Any]]] | None = None,
) -> Page:
    """One page of `fields` (which must include timestamp and id) in the requested order;
    with `archived`, merged with the rows it reads from the archive for the same page."""
    if request.descending:
        queryset = queryset.order_by("-timestamp", "-id")
    else:
        queryset = queryset.order_by("timestamp", "id")
    if request.cursor is not None:
        queryset = _after(queryset, request.cursor)
    old_rows = []
    if archived is not None:
        cursor = request.cursor
        after = None if cursor is None else (cursor.timestamp, cursor.id)
        old_rows = archived(ArchivedPage(request.limit + 1, after, request.descending))
    # A row restored from the archive is in both: fetch enough to fill the page anyway.
    rows = fetch_values(queryset[: request.limit + 1 + len(old_rows)], fields, as_text=as_text)
    if old_rows:
        rows = merge_pages(rows, old_rows, request.descending)[: request.limit + 1]
    if len(rows) <= request.limit:
        return Page(rows=rows, next_cursor=None)
    rows = rows[: request.limit]
    last = rows[-1]
    return Page(
        rows=rows,
        next_cursor=Cursor(
            timestamp=last["timestamp"], id=last["id"], descending=request.descending
        ),
    )
