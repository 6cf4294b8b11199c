"""Top-level URLs: the admin, the API with its schema and docs, health, a liveness probe and
the dashboard."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tcp_dashboard.health import Health

admin.site.site_header = "TCP Dashboard"
admin.site.site_title = "TCP Dashboard"
admin.site.index_title = "Administration"
admin.site.site_url = "/"  # "View site": the dashboard


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/health/", Health.as_view(), name="health"),
    path("api/v1/", include("marketdata.api.urls")),
    path("", include("dashboard.urls")),
]
