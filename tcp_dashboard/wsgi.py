"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from tcp_dashboard.runtime import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")

application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - import every view now, before the freeze
freeze_startup_objects()
