"""ASGI entry point: gunicorn with uvicorn workers (`-k uvicorn_worker.UvicornWorker`)."""

import os
import warnings

from django.core.asgi import get_asgi_application
from django.urls import get_resolver

from tcp_dashboard.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")

# WhiteNoise serves static files with a synchronous file iterator; Django reads it in a
# thread and would warn about it on every static file.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators"
)

application = get_asgi_application()
get_resolver().url_patterns  # noqa: B018 - import every view now, before the freeze
freeze_startup_objects()
