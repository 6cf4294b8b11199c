"""The exchanges' REST client: GET a JSON answer, bounded in time and size, rate limits named.

Connections use TLS 1.3 at least, and plaintext http:// only to loopback (collectors.tls).
Exchange modules add their own paths and read their own error bodies; what every REST
API shares is here: a timeout, a cap on the answer's size, and "Too Many Requests"
(HTTP 429, or 418 for an IP ban) raised as RateLimited with the server's Retry-After.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from collectors.tls import check_url, exchange_ssl_context

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # the largest REST answer read; a bigger one is refused
RATE_LIMIT_STATUSES = (418, 429)


class RateLimited(OSError):
    """The server asked us to slow down; `retry_after` is its Retry-After, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds; None when absent or not a number of seconds."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86_400 else None


def get_json(base_url: str, path: str, query: dict[str, Any], timeout: float) -> Any:
    """GET {base_url}{path}?{query} and decode the JSON answer.

    Raises RateLimited when the server says so, OSError when the request fails (an HTTP
    error status, a network error, an unreadable or oversized answer), ValueError when
    the URL is not http(s) or the answer is not JSON.
    """
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"REST base URL must be http(s): {base_url[:100]!r}")
    check_url(base_url)
    url = f"{base_url.rstrip('/')}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        context = exchange_ssl_context() if scheme == "https" else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as error:
        if error.code in RATE_LIMIT_STATUSES:
            wait = retry_after_seconds(error.headers.get("Retry-After"))
            raise RateLimited(f"HTTP {error.code} {error.reason}", wait) from None
        raise
    except http.client.HTTPException as error:  # a truncated or garbled HTTP answer
        raise OSError(f"REST answer unreadable: {error!r}") from None
    if len(body) > MAX_ANSWER_BYTES:
        raise OSError(f"REST answer over {MAX_ANSWER_BYTES} bytes")
    return orjson.loads(body)  # orjson.JSONDecodeError, a ValueError, says where it broke
