"""A database that does not answer is a 503 with a clear answer in every view, not a 500.

The API's own views answer their JSON 503 themselves (marketdata.api.errors); this
middleware answers for the rest: the admin, the dashboard and its sign-in pages (HTML), and
anything else under /api/ (JSON). The details go to the log, never to the client.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)

UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER = "10"  # seconds
MESSAGE = "The service is temporarily unavailable; try again shortly."
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Temporarily unavailable</title></head>
<body><h1>Temporarily unavailable</h1>
<p>The database does not answer. Try again shortly.</p></body></html>
"""


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, UNAVAILABLE):
            return None
        logger.error("database unavailable in %s: %s", request.path[:200], exception)
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
        response["Retry-After"] = RETRY_AFTER
        return response
