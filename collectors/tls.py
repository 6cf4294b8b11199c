"""Transport security of the connections to exchanges: TLS 1.3 at least (the spec's
"TLS 1.3 for all external communications"; EXCHANGE_TLS_MIN_VERSION=1.2 relaxes it for an
exchange that has not moved yet), and plaintext ws:// or http:// only to a loopback host,
where the simulators run."""

from __future__ import annotations

import ipaddress
import ssl
from urllib.parse import urlsplit

PLAINTEXT_SCHEMES = ("ws", "http")
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_TLS_VERSION = "1.3"


class PlaintextRefused(ValueError):
    """A plaintext URL to a host that is not this machine."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_problem(url: str) -> str:
    """Why this URL may not be used, or "" when it may: plaintext only to loopback."""
    parts = urlsplit(url)
    if parts.scheme in PLAINTEXT_SCHEMES and not is_loopback(parts.hostname):
        secure = "wss" if parts.scheme == "ws" else "https"
        return (
            f"plaintext {parts.scheme}:// is allowed only to a loopback host (a local "
            f"simulator), not {parts.hostname!r}: use {secure}:// (TLS)"
        )
    return ""


def check_url(url: str) -> None:
    """Raise PlaintextRefused for a plaintext URL to a host that is not loopback."""
    problem = plaintext_problem(url)
    if problem:
        raise PlaintextRefused(problem)


def minimum_tls_version() -> ssl.TLSVersion:
    """EXCHANGE_TLS_MIN_VERSION from the settings (1.3 unless relaxed to 1.2)."""
    from django.conf import settings

    return TLS_VERSIONS[getattr(settings, "EXCHANGE_TLS_MIN_VERSION", DEFAULT_TLS_VERSION)]


def exchange_ssl_context() -> ssl.SSLContext:
    """Certificates and host names checked, TLS 1.3 at least (or the relaxed minimum)."""
    context = ssl.create_default_context()
    context.minimum_version = minimum_tls_version()
    return context
