"""Hosting collectors: the Celery bootstep, leases, heartbeats, reconciliation, control."""
