"""The published OpenAPI schema and docs page, and `manage.py create_admin`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import SCOPES, AuditEvent
from accounts.services import scopes_of

pytestmark = pytest.mark.django_db


def test_the_schema_is_served_without_login_and_lists_every_endpoint() -> None:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/login",
        "/api/providers",
        "/api/slots",
        "/api/slots/{slot_id}",
        "/api/settings",
        "/api/jobs",
        "/api/stats/global",
        "/api/template-media/register",
        "/api/media/register",
        "/api/media/cache/purge",
    ):
        assert any(p.rstrip("/") == path or p == path for p in paths), path
    scheme = response.json()["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def test_the_docs_page_loads_its_assets_from_this_server() -> None:
    client = Client()
    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert assets, html[:500]
    for asset in assets:
        assert asset.startswith("/"), f"{asset} would need the internet"
        assert client.get(asset).status_code == 200, asset


def test_create_admin_creates_a_user_with_the_granted_permissions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEW_ADMIN_PASSWORD", "a long enough password")

    call_command(
        "create_admin",
        "carol",
        "--grant",
        "slots:read",
        "--grant",
        "stats:read",
        "--password-env",
        "NEW_ADMIN_PASSWORD",
    )

    user = get_user_model().objects.get(username="carol")
    assert sorted(scopes_of(user)) == ["slots:read", "stats:read"]
    login = APIClient().post(
        "/api/login", {"username": "carol", "password": "a long enough password"}, format="json"
    )
    assert sorted(login.json()["permissions"]) == ["slots:read", "stats:read"]
    event = AuditEvent.objects.get(kind="admin_changed")
    assert "a long enough password" not in str(event.details)


def test_create_admin_grants_all_and_updates_an_existing_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEW_ADMIN_PASSWORD", "a long enough password")
    call_command("create_admin", "dave", "--password-env", "NEW_ADMIN_PASSWORD")

    call_command("create_admin", "dave", "--grant", "all")

    user: Any = get_user_model().objects.get(username="dave")
    assert sorted(scopes_of(user)) == sorted(SCOPES)
    assert user.check_password("a long enough password")  # unchanged without a new one


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["erin", "--grant", "slots:delete", "--password-env", "NEW_ADMIN_PASSWORD"], "Unknown"),
        (["erin", "--password-env", "UNSET_VARIABLE_FOR_TEST"], "empty or unset"),
    ],
)
def test_create_admin_refuses_bad_input(
    monkeypatch: pytest.MonkeyPatch, arguments: list[str], message: str
) -> None:
    monkeypatch.setenv("NEW_ADMIN_PASSWORD", "a long enough password")
    monkeypatch.delenv("UNSET_VARIABLE_FOR_TEST", raising=False)

    with pytest.raises(CommandError, match=message):
        call_command("create_admin", *arguments)

    assert not get_user_model().objects.filter(username="erin").exists()
