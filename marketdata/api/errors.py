"""The API's exception handler: DRF's answers for known errors, a bare 500 or 503 otherwise.

Error bodies never carry a traceback, SQL or settings: the details go to the log.
"""

import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)

UNAVAILABLE = (OperationalError, InterfaceError)


def exception_handler(exc: Exception, context: dict) -> Response:
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    set_rollback()
    view = context.get("view")
    where = type(view).__name__ if view is not None else "the API"
    if isinstance(exc, UNAVAILABLE):
        logger.error("database unavailable in %s: %s", where, exc)
        return Response(
            {"detail": "The service is temporarily unavailable; try again shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    kind = "database error" if isinstance(exc, DatabaseError) else "unexpected error"
    logger.error("%s in %s", kind, where, exc_info=exc)
    return Response(
        {"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
    )
