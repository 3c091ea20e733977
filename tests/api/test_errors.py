"""Errors nobody planned for still answer in the one JSON shape, without internals."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from tests.api.conftest import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.api.error_urls")]


@pytest.mark.parametrize("path", ["/test/broken-api", "/test/broken-plain"])
def test_an_unexpected_exception_is_a_json_500_without_the_traceback(path: str) -> None:
    client = Client(raise_request_exception=False)

    response = client.get(path)

    error = assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert error["details"] == {}


def test_a_database_failure_in_the_api_is_a_503_with_retry_after() -> None:
    response = APIClient().get("/test/database-down")

    assert_error(response, 503, "database_unavailable")
    assert int(response["Retry-After"]) > 0


@override_settings(DEBUG=False)
def test_a_path_nothing_serves_is_a_json_404() -> None:
    response = Client().get("/no/such/page")

    assert_error(response, 404, "not_found")


def test_a_method_the_endpoint_does_not_offer_is_a_json_405_with_allow() -> None:
    response = APIClient().delete("/api/login")

    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]
