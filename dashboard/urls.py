"""Routes of the dashboard: its pages, their live streams, and the sign-in pages."""

from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from dashboard import views


class NameConverter:
    """An exchange or symbol name as configured: letters, digits, `.`, `_`, `-`, at most 64.
    Anything else (a NUL byte, a slash, a megabyte) is a 404 before a query is made."""

    regex = r"[A-Za-z0-9._-]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(NameConverter, "name")

app_name = "dashboard"
# The live streams' prefix: tcp_dashboard.asgi hands these paths to Django's ASGI handler.
LIVE_PREFIX = "live/"

urlpatterns = [
    path("", views.board, name="board"),
    path("markets/<name:exchange>/<name:symbol>/", views.market, name="market"),
    path("collectors/", views.collectors, name="collectors"),
    path("accounts/", views.accounts, name="accounts"),
    path(f"{LIVE_PREFIX}board/", views.board_stream, name="board-stream"),
    path(
        f"{LIVE_PREFIX}markets/<name:exchange>/<name:symbol>/",
        views.market_stream,
        name="market-stream",
    ),
    path(f"{LIVE_PREFIX}collectors/", views.collectors_stream, name="collectors-stream"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="dashboard/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
