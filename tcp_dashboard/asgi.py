"""ASGI entry point: gunicorn's ASGI workers (`--worker-class asgi`, docs/dashboard.md).

The dashboard's live streams (`/live/…`) are async views served by Django's ASGI handler:
a viewer costs a coroutine, not a thread. Every other request (pages, the API, the admin,
static files) goes to Django's WSGI handler in a thread pool (asgiref's WsgiToAsgi): one
hop into a thread, as fast as a sync worker, where Django's ASGI handler would adapt the
sync middleware and views several times per request (bench/api.py: p50 ~10 ms more).
"""

import os

from asgiref.wsgi import WsgiToAsgi
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from tcp_dashboard.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")

streams = get_asgi_application()
pages = WsgiToAsgi(get_wsgi_application())

from dashboard.urls import LIVE_PREFIX  # noqa: E402 - after Django is set up

LIVE = "/" + LIVE_PREFIX


async def application(scope, receive, send):
    if scope["type"] == "http" and not scope["path"].startswith(LIVE):
        return await pages(scope, receive, send)
    return await streams(scope, receive, send)


get_resolver().url_patterns  # noqa: B018 - import every view now, before the freeze
freeze_startup_objects()
