"""The Celery app: settings from Django (CELERY_*), tasks discovered in every app."""

import os

from celery import Celery

from collectors.worker import CollectorHostStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tcp_dashboard.settings.base")

app = Celery("tcp_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(CollectorHostStep)
