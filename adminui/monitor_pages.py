"""Jobs and statistics pages (being written)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from adminui.access import requires_scope


@requires_scope("stats:read")
def jobs_page(request: HttpRequest) -> HttpResponse:
    return render(request, "adminui/not_found.html", status=404)


@requires_scope("stats:read")
def stats_page(request: HttpRequest) -> HttpResponse:
    return render(request, "adminui/not_found.html", status=404)


urlpatterns = [
    path("dashboard/jobs", jobs_page, name="dashboard-jobs"),
    path("dashboard/stats", stats_page, name="dashboard-stats"),
]
