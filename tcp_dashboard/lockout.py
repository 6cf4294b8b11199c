"""The sign-in lockout's authentication backend (django-axes), for sign-ins that come with
a request. A check without one (a management command testing a password on this machine)
has no client to lock out, and goes on to the password backend instead of failing."""

from axes.backends import AxesStandaloneBackend


class SignInLockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
