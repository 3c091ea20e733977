"""Admin API fixtures: users with chosen permissions and clients carrying their tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import SCOPES
from accounts.services import grant
from tests.api.openapi import check_response

ADMIN_PASSWORD = "correct horse battery staple"


def make_admin(username: str, scopes: Iterable[str] = SCOPES) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password=ADMIN_PASSWORD, is_staff=True
    )
    grant(user, scopes)
    return user


def login_client(username: str, password: str = ADMIN_PASSWORD) -> APIClient:
    """A client that logged in through POST /api/login and sends its bearer token."""
    client = APIClient()
    response = client.post(
        "/api/login", {"username": username, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
    return client


@pytest.fixture(autouse=True)
def responses_match_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every response an API test receives must be one the OpenAPI schema declares."""
    original = APIClient.request

    def checked(self: APIClient, **request: Any) -> Any:
        response = original(self, **request)
        check_response(
            str(request.get("REQUEST_METHOD", "GET")),
            str(request.get("PATH_INFO", "")),
            response.status_code,
            response.get("Content-Type", ""),
            b"" if getattr(response, "streaming", False) else response.content,
        )
        return response

    monkeypatch.setattr(APIClient, "request", checked)


@pytest.fixture
def api_client_with(db: None) -> Callable[..., APIClient]:
    """api_client_with("slots:read", ...) -> a logged-in client holding exactly those scopes."""
    counter = iter(range(1_000_000))

    def make(*scopes: str) -> APIClient:
        username = f"admin{next(counter)}"
        make_admin(username, scopes)
        return login_client(username)

    return make


@pytest.fixture
def admin_api(api_client_with: Callable[..., APIClient]) -> APIClient:
    """A logged-in client with every permission."""
    return api_client_with(*SCOPES)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The API's one error shape, with this status (and code); returns `error`."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return dict(error)
