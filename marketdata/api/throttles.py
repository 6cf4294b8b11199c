"""Per-user (and, for anonymous reads, per-address) request rates.

The rates are read on every request rather than once at import, so a changed setting
takes effect without a restart of the class; counts live in Django's default cache
(per process unless CACHES points at a shared cache such as Redis).
"""

import re

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

RATE = re.compile(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)")


def rate_for(scope: str) -> str | None:
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
    if rate is not None and not RATE.fullmatch(rate):
        raise ImproperlyConfigured(
            f"the {scope} throttle rate must look like 1200/minute, not {rate!r}"
        )
    return rate


class UserThrottle(UserRateThrottle):
    def get_rate(self) -> str | None:
        return rate_for(self.scope)


class AnonThrottle(AnonRateThrottle):
    def get_rate(self) -> str | None:
        return rate_for(self.scope)
