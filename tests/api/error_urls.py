"""A URLconf for tests/api/test_errors.py: real views that fail the ways real code can."""

from __future__ import annotations

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class BrokenView(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug with a secret-looking detail: hunter2")


class DatabaseDownView(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise OperationalError("connection refused")


def broken_plain_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug outside the API")


urlpatterns = [
    path("test/broken-api", BrokenView.as_view()),
    path("test/database-down", DatabaseDownView.as_view()),
    path("test/broken-plain", broken_plain_view),
    path("", include("photobooth.urls")),
]

handler404 = "api.exceptions.json_not_found"
handler500 = "api.exceptions.json_server_error"
