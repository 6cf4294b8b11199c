"""Who may see the dashboard: the API's rules. Readers as the API's reads, control for staff."""

from __future__ import annotations

from functools import wraps
from types import SimpleNamespace

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

from marketdata.api.permissions import CanRead, IsStaff


def may_read(user, method: str = "GET") -> bool:
    """Signed in, or anyone when API_PUBLIC_READ opens the API's reads."""
    return CanRead().has_permission(SimpleNamespace(user=user, method=method), None)


def may_control(user) -> bool:
    return IsStaff().has_permission(SimpleNamespace(user=user, method="POST"), None)


def reader_required(view):
    """A page for readers: others sign in first (or are refused, when signed in)."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if may_read(request.user, request.method):
            return view(request, *args, **kwargs)
        if request.user.is_authenticated:
            raise PermissionDenied
        return redirect_to_login(request.get_full_path())

    return guarded
