from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/", include("api.urls")),
    path("", include("ingest.urls")),
    path("", include("adminui.urls")),
]

handler404 = "api.exceptions.json_not_found"
handler500 = "api.exceptions.json_server_error"
