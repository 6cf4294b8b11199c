"""The address a request came from, trusting X-Forwarded-For only from our own proxies.

A client can send any X-Forwarded-For it likes; only the entries our reverse proxies
appended are true. With TRUSTED_PROXIES = N (the number of proxies in front of the web
server, 0 by default), the client is the N-th address from the right of that header, or
REMOTE_ADDR when N is 0 or the header is shorter than N. The API's throttles and the login
lockout both key on this address.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address, or None when the request has none (a test client)."""
    remote = valid(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < proxies:
        return remote
    return valid(forwarded[-proxies]) or remote


def valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
