"""Who may call the API: signed-in users read, staff control; API_PUBLIC_READ opens reads."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


class CanRead(BasePermission):
    """Reads need an authenticated user unless the API_PUBLIC_READ setting opens them."""

    def has_permission(self, request, view) -> bool:
        if settings.API_PUBLIC_READ and request.method in SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_authenticated)


class IsStaff(BasePermission):
    """Control endpoints (start, stop, restart collectors) are for staff only."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
