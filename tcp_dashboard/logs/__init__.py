"""Logging: the spec's configuration, per-process files, redaction of secrets, traces."""
