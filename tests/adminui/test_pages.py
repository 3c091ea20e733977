"""Dashboard pages through Django's test client: access rules and what each page shows."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import SCOPES, AuditEvent
from tests.api.conftest import ADMIN_PASSWORD, make_admin

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def logged_in(*scopes: str, username: str = "olga") -> Client:
    make_admin(username, scopes)
    client = Client()
    response = client.post("/dashboard/login", {"username": username, "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    return client


def test_pages_need_a_login_and_send_back_to_the_page_after_it() -> None:
    make_admin("olga", SCOPES)
    client = Client()

    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login?next=/dashboard/")

    login = client.post(
        "/dashboard/login",
        {"username": "olga", "password": ADMIN_PASSWORD, "next": "/dashboard/"},
    )
    assert login.status_code == 302 and login["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_a_wrong_password_is_refused_and_audited() -> None:
    make_admin("olga", SCOPES)

    response = Client().post("/dashboard/login", {"username": "olga", "password": "nope"})

    assert response.status_code == 401
    assert "Wrong username or password" in response.content.decode()
    assert AuditEvent.objects.filter(kind="login_failed", actor="olga").exists()


def test_login_never_redirects_to_another_site() -> None:
    make_admin("olga", SCOPES)

    response = Client().post(
        "/dashboard/login",
        {"username": "olga", "password": ADMIN_PASSWORD, "next": "https://evil.example/"},
    )

    assert response["Location"] == "/dashboard/"


def test_repeated_failures_are_throttled(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES_PER_USERNAME = 2
    make_admin("olga", SCOPES)
    client = Client()
    for _ in range(2):
        client.post("/dashboard/login", {"username": "olga", "password": "nope"})

    response = client.post("/dashboard/login", {"username": "olga", "password": ADMIN_PASSWORD})

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_home_shows_the_15_slots_with_provider_and_activity() -> None:
    client = logged_in("slots:read")

    page = client.get("/dashboard/").content.decode()

    assert page.count('class="card slot') == 15
    assert "slot-001" in page and "slot-015" in page
    assert page.count("Local (offline)") == 15  # every slot runs the local provider at first


def test_home_warns_when_a_slots_provider_has_no_key(settings: Any) -> None:
    from ingest.models import Slot

    settings.PROVIDER_API_KEYS = {"gemini": "", "turbotext": "", "openai": ""}
    Slot.objects.filter(id="slot-002").update(provider_id="gemini", operation_id="image_edit")
    client = logged_in("slots:read")

    page = client.get("/dashboard/").content.decode()

    assert "No API key for Google Gemini" in page


def test_a_page_without_its_permission_is_a_friendly_403() -> None:
    client = logged_in("stats:read")

    response = client.get("/dashboard/")

    assert response.status_code == 403
    assert "slots:read" in response.content.decode()


def test_logout_ends_the_session() -> None:
    client = logged_in(*SCOPES)

    client.post("/dashboard/logout")

    assert client.get("/dashboard/").status_code == 302


def test_unknown_dashboard_page_is_an_html_404() -> None:
    client = logged_in(*SCOPES)

    response = client.get("/dashboard/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
