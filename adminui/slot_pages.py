"""Slot page (being written)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from adminui.access import requires_scope


@requires_scope("slots:read")
def slot_page(request: HttpRequest, slot_id: str) -> HttpResponse:
    return render(request, "adminui/not_found.html", status=404)


urlpatterns = [path("dashboard/slots/<str:slot_id>", slot_page, name="dashboard-slot")]
