from django.urls import include, path

from photobooth.health import healthz, readyz
from photobooth.metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include("api.urls")),
    path("", include("ingest.urls")),
    path("", include("adminui.urls")),
]

handler404 = "api.exceptions.json_not_found"
handler500 = "api.exceptions.json_server_error"
