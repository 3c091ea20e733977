"""The admin API under /api/ (SPEC §6), and its OpenAPI schema and docs page."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api import archives, config, galleries, jobs, media, slots, stats
from api.auth import LoginView
from api.providers import ProvidersView

urlpatterns = [
    path("login", LoginView.as_view(), name="api-login"),
    path("providers", ProvidersView.as_view(), name="api-providers"),
    *slots.urlpatterns,
    *config.urlpatterns,
    *media.urlpatterns,
    *jobs.urlpatterns,
    *stats.urlpatterns,
    *galleries.urlpatterns,
    *archives.urlpatterns,
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
