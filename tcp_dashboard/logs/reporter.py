"""Django's error pages and error e-mails without secrets, with DEBUG on or off.

Django hides settings whose names look secret, but not the password inside DATABASE_URL,
REDIS_URL or the broker URL, nor frame variables (a `password` argument, a connection's
keyword arguments), nor sensitive POST fields while DEBUG is on. This filter hides
variables named like secrets and redacts every value it shows, and the reporter redacts
the finished page once more.
"""

from __future__ import annotations

from pprint import pformat

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from tcp_dashboard.logs.redaction import redact


class Shown(str):
    """Text shown as it is (already formatted and redacted), not as a quoted string."""

    def __repr__(self) -> str:
        return str(self)


class RedactingReporterFilter(SafeExceptionReporterFilter):
    def is_active(self, request) -> bool:
        return True  # hide sensitive POST fields even with DEBUG on

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        # str(): a lazy setting (django-axes has one) passes isinstance but is no str to re
        return redact(str(cleansed)) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        shown = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if self.hidden_settings.search(name):  # a `password` argument, an `api_key`
                shown.append((name, Shown(self.cleansed_substitute)))
                continue
            try:
                text = pformat(value)
            except Exception as error:  # a broken __repr__ must not break the error page
                text = f"Error in formatting: {error.__class__.__name__}"
            shown.append((name, Shown(redact(text))))
        return shown


class RedactingExceptionReporter(ExceptionReporter):
    def get_traceback_html(self) -> str:
        return redact(super().get_traceback_html())

    def get_traceback_text(self) -> str:
        return redact(super().get_traceback_text())
