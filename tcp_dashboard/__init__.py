"""TCP Dashboard: a market-data platform (settings, URLs and the Celery app)."""

from tcp_dashboard.celery import app as celery_app

__all__ = ["celery_app"]
