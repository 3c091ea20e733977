"""POST /api/login and the bearer token it gives: claims, expiry, tampering, throttling."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import SCOPES, AuditEvent
from tests.api.conftest import ADMIN_PASSWORD, assert_error, make_admin

pytestmark = pytest.mark.django_db


def login(client: APIClient, username: str, password: str, **extra: Any) -> Any:
    return client.post(
        "/api/login", {"username": username, "password": password}, format="json", **extra
    )


def test_login_gives_a_bearer_token_carrying_the_users_permissions(settings: Any) -> None:
    make_admin("alice", ["slots:read", "stats:read"])

    response = login(APIClient(), "alice", ADMIN_PASSWORD)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in_sec"] == int(
        settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    )
    claims = jwt.decode(
        body["access_token"], settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"]
    )
    assert sorted(claims["permissions"]) == ["slots:read", "stats:read"]
    assert response["Cache-Control"] == "no-store"
    assert AuditEvent.objects.filter(kind="login_ok", actor="alice").count() == 1


def test_superuser_token_carries_every_permission() -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "", ADMIN_PASSWORD)

    body = login(APIClient(), "root", ADMIN_PASSWORD).json()

    assert sorted(body["permissions"]) == sorted(SCOPES)


def test_unknown_user_and_wrong_password_get_the_same_401() -> None:
    make_admin("alice")

    wrong = login(APIClient(), "alice", "not the password")
    unknown = login(APIClient(), "nobody", "not the password")

    first = assert_error(wrong, 401, "invalid_credentials")
    second = assert_error(unknown, 401, "invalid_credentials")
    assert first == second
    assert AuditEvent.objects.filter(kind="login_failed").count() == 2
    assert not AuditEvent.objects.filter(details__icontains="not the password").exists()


def test_missing_fields_are_a_422_with_per_field_errors() -> None:
    response = APIClient().post("/api/login", {"username": "alice"}, format="json")

    error = assert_error(response, 422, "validation_failed")
    assert set(error["details"]) == {"password"}


def test_malformed_json_is_a_400() -> None:
    response = APIClient().post("/api/login", b"{not json", content_type="application/json")

    assert_error(response, 400, "malformed_request")


@override_settings(LOGIN_MAX_FAILURES_PER_USERNAME=3, LOGIN_MAX_FAILURES_PER_ADDRESS=100)
def test_repeated_failures_for_one_username_are_throttled_with_429() -> None:
    make_admin("alice")
    client = APIClient()
    for _ in range(3):
        assert_error(login(client, "alice", "guess"), 401)

    refused = login(client, "alice", ADMIN_PASSWORD)  # even the right password, for now

    error = assert_error(refused, 429, "login_throttled")
    assert int(refused["Retry-After"]) >= 1
    assert error["details"]["retry_after_seconds"] == int(refused["Retry-After"])
    # Another user from the same address is not affected by alice's limit.
    make_admin("bob")
    assert login(client, "bob", ADMIN_PASSWORD).status_code == 200


@override_settings(LOGIN_MAX_FAILURES_PER_USERNAME=100, LOGIN_MAX_FAILURES_PER_ADDRESS=4)
def test_repeated_failures_from_one_address_are_throttled_with_429() -> None:
    make_admin("alice")
    client = APIClient()
    for attempt in range(4):
        assert_error(login(client, f"user{attempt}", "guess", REMOTE_ADDR="10.0.0.9"), 401)

    assert_error(login(client, "alice", ADMIN_PASSWORD, REMOTE_ADDR="10.0.0.9"), 429)
    assert login(client, "alice", ADMIN_PASSWORD, REMOTE_ADDR="10.0.0.10").status_code == 200


def test_failures_older_than_the_window_no_longer_count(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES_PER_USERNAME = 2
    make_admin("alice")
    client = APIClient()
    for _ in range(2):
        login(client, "alice", "guess")
    assert login(client, "alice", ADMIN_PASSWORD).status_code == 429
    # Time passes (the window is counted from the audit rows' timestamps).
    AuditEvent.objects.update(
        created_at=AuditEvent.objects.first().created_at  # type: ignore[union-attr]
        - timedelta(seconds=settings.LOGIN_THROTTLE_WINDOW_SECONDS + 1)
    )

    assert login(client, "alice", ADMIN_PASSWORD).status_code == 200


def _token(client: APIClient, username: str) -> str:
    return str(login(client, username, ADMIN_PASSWORD).json()["access_token"])


def _providers(token: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/providers")


def test_a_valid_token_opens_the_api() -> None:
    make_admin("alice", ["slots:read"])

    response = _providers(_token(APIClient(), "alice"))

    assert response.status_code == 200
    assert "local" in {p["id"] for p in response.json()["providers"]}


def test_missing_token_is_401() -> None:
    response = APIClient().get("/api/providers")

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401(settings: Any) -> None:
    make_admin("alice", ["slots:read"])
    token = _token(APIClient(), "alice")
    claims = jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])
    claims["exp"] = claims["iat"] - 1
    expired = jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")

    assert_error(_providers(expired), 401, "invalid_token")


def test_tampered_token_is_401(settings: Any) -> None:
    make_admin("alice", ["slots:read"])
    header, payload, signature = _token(APIClient(), "alice").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["permissions"] = list(SCOPES)  # try to grant oneself everything
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    assert_error(_providers(f"{header}.{forged}.{signature}"), 401, "invalid_token")


def test_token_signed_with_another_key_is_401(settings: Any) -> None:
    make_admin("alice", ["slots:read"])
    token = _token(APIClient(), "alice")
    claims = jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])

    other = jwt.encode(claims, "another-key-entirely-0123456789abcdef", algorithm="HS256")

    assert_error(_providers(other), 401, "invalid_token")


def test_unsigned_alg_none_token_is_401(settings: Any) -> None:
    make_admin("alice", ["slots:read"])
    token = _token(APIClient(), "alice")
    claims = jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    assert_error(_providers(f"{header}.{body}."), 401, "invalid_token")


def test_token_of_a_deactivated_user_is_401() -> None:
    user = make_admin("alice", ["slots:read"])
    token = _token(APIClient(), "alice")
    user.is_active = False
    user.save()

    assert_error(_providers(token), 401)


def test_token_without_the_needed_permission_is_403() -> None:
    make_admin("alice", ["stats:read"])

    assert_error(_providers(_token(APIClient(), "alice")), 403, "forbidden")


def test_unknown_api_path_is_a_json_404() -> None:
    response = APIClient().get("/api/no-such-thing")

    assert_error(response, 404, "not_found")
