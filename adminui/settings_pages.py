"""Settings page and the guest result page (being written)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from adminui.access import requires_scope


@requires_scope("settings:read")
def settings_page(request: HttpRequest) -> HttpResponse:
    return render(request, "adminui/not_found.html", status=404)


urlpatterns = [path("dashboard/settings", settings_page, name="dashboard-settings")]
