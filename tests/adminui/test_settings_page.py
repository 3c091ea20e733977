"""The dashboard's settings page: what it shows, every change form, access rules and CSRF."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.test import Client
from django.utils import timezone

from accounts.models import SCOPES, AuditEvent
from adminui import settings_pages
from ingest.models import IngestSettings
from ingest.services import set_ingest_password
from jobqueue import deadlines
from jobqueue.models import Job, JobStatus, WorkerHeartbeat
from providers.models import ProviderKey
from providers.secrets import api_key_for, set_api_key
from tests.api.conftest import ADMIN_PASSWORD, make_admin

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/settings"
OLD_PASSWORD = "old-booth-password"
NEW_PASSWORD = "new-booth-password-2026"
GEMINI_KEY = "AIza-test-key-0123456789"


@pytest.fixture(autouse=True)
def fast_setup(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PROVIDER_API_KEYS = {"gemini": "", "turbotext": "", "openai": ""}


def logged_in(*scopes: str, username: str = "olga", enforce_csrf: bool = False) -> Client:
    make_admin(username, scopes)
    client = Client(enforce_csrf_checks=enforce_csrf)
    assert client.login(username=username, password=ADMIN_PASSWORD)
    return client


def text(response: Any) -> str:
    return str(response.content.decode())


def followed_messages(response: Any) -> str:
    """The notices shown after a POST/redirect/GET."""
    assert response.redirect_chain, "expected a redirect"
    assert response.redirect_chain[-1][0] == PAGE
    page = text(response)
    found = re.search(r'<ul class="messages"[^>]*>(.*?)</ul>', page, re.S)
    assert found, "no notice on the page"
    return found.group(1)


def field_error(page: str, element_id: str) -> str:
    found = re.search(rf'<p class="error"[^>]* id="{element_id}"[^>]*>(.*?)</p>', page, re.S)
    assert found, f"no error #{element_id} on the page"
    return found.group(1)


def settings_row() -> IngestSettings:
    return IngestSettings.load()


# --- access --------------------------------------------------------------------------------------
def test_the_page_needs_a_login() -> None:
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login?next=/dashboard/settings")


def test_the_page_needs_settings_read() -> None:
    client = logged_in("slots:read", "stats:read", "media:write")

    response = client.get(PAGE)

    assert response.status_code == 403
    assert "settings:read" in text(response)


def test_read_only_admins_see_the_settings_but_no_change_forms() -> None:
    set_ingest_password(password=OLD_PASSWORD, changed_by="tests")
    client = logged_in("settings:read")

    page = text(client.get(PAGE))

    assert 'id="ingest-password-status"' in page and "set" in page
    assert 'id="read-only-note"' in page
    for form in ("password-form", "timeout-form", "key-form-gemini", "purge-form"):
        assert f'id="{form}"' not in page


@pytest.mark.parametrize(
    ("url", "data", "scope"),
    [
        ("/dashboard/settings/password", {"password": NEW_PASSWORD}, "settings:write"),
        ("/dashboard/settings/timeout", {"sync_response_timeout_sec": "50"}, "settings:write"),
        ("/dashboard/settings/keys/gemini", {"api_key": GEMINI_KEY}, "settings:write"),
        ("/dashboard/settings/keys/gemini/remove", {}, "settings:write"),
        ("/dashboard/settings/purge", {}, "media:write"),
    ],
)
def test_each_change_needs_its_write_permission(url: str, data: dict[str, str], scope: str) -> None:
    client = logged_in(*(s for s in SCOPES if s != scope))
    set_api_key("gemini", "stored-key", changed_by="tests")
    before = settings_row()

    response = client.post(url, {**data, "password_confirmation": data.get("password", "")})

    assert response.status_code == 403
    assert scope in text(response)
    after = settings_row()
    assert after.ingest_password_hash == before.ingest_password_hash
    assert after.sync_response_timeout_sec == before.sync_response_timeout_sec
    assert api_key_for("gemini") == "stored-key"


def test_a_change_url_opened_with_get_shows_the_page() -> None:
    client = logged_in(*SCOPES)

    response = client.get("/dashboard/settings/password")

    assert response.status_code == 302 and response["Location"] == PAGE


# --- what the page shows -------------------------------------------------------------------------
def test_page_shows_every_section_without_secrets(settings: Any) -> None:
    settings.PROVIDER_API_KEYS = {"gemini": "", "turbotext": "env-turbo-key", "openai": ""}
    set_ingest_password(password=OLD_PASSWORD, changed_by="marta")
    set_api_key("gemini", GEMINI_KEY, changed_by="marta")
    client = logged_in(*SCOPES)

    response = client.get(PAGE)
    page = text(response)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "<h1>Settings</h1>" in page
    assert "by marta at" in page  # who set the ingest password
    gemini = page[page.index('id="key-status-gemini"') :][:400]
    assert "configured" in gemini and "(from settings)" in gemini and "by marta at" in gemini
    turbotext = page[page.index('id="key-status-turbotext"') :][:400]
    assert "(from the server's environment)" in turbotext
    openai = page[page.index('id="key-status-openai"') :][:400]
    assert "not configured" in openai
    # Remove is offered only for a key stored in the settings.
    assert 'id="key-remove-gemini"' in page
    assert 'id="key-remove-turbotext"' not in page and 'id="key-remove-openai"' not in page
    assert f'value="{deadlines.SYNC_RESPONSE_DEFAULT_SECONDS}"' in page
    # Write-only: no secret, no hash on the page.
    for secret in (OLD_PASSWORD, GEMINI_KEY, "env-turbo-key", settings_row().ingest_password_hash):
        assert secret not in page
    # Labels for every input.
    for input_id in re.findall(r'<input id="([^"]+)"', page):
        assert f'<label for="{input_id}"' in page


def test_page_warns_when_no_ingest_password_is_set() -> None:
    client = logged_in("settings:read")

    page = text(client.get(PAGE))

    assert "not set" in page and "Every upload is refused" in page


def heartbeat(worker_id: str, *, seconds_ago: float, jobs: int = 0, stopping: bool = False) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id=worker_id,
        hostname="booth-server",
        pid=4242,
        concurrency=4,
        started_at=now - timedelta(minutes=5),
        last_seen_at=now - timedelta(seconds=seconds_ago),
        current_job_ids=[str(uuid.uuid4()) for _ in range(jobs)],
        is_stopping=stopping,
    )


def test_page_lists_workers_with_their_heartbeat_and_jobs(settings: Any) -> None:
    settings.WORKER_STALE_SECONDS = 10
    heartbeat("worker-a", seconds_ago=2, jobs=3)
    heartbeat("worker-b", seconds_ago=120)
    client = logged_in("settings:read")

    page = text(client.get(PAGE))

    assert 'id="no-worker"' not in page
    row_a = page[page.index('data-worker="worker-a"') :].split("</tr>")[0]
    assert "booth-server" in row_a and "alive" in row_a and "3 of 4" in row_a
    assert re.search(r">\s*2 s ago<", row_a)
    row_b = page[page.index('data-worker="worker-b"') :].split("</tr>")[0]
    assert "gone" in row_b and "120 s ago" in row_b


@pytest.mark.parametrize("seconds_ago", [None, 60.0])
def test_page_warns_in_red_when_no_worker_is_alive(
    settings: Any, seconds_ago: float | None
) -> None:
    settings.WORKER_STALE_SECONDS = 10
    if seconds_ago is not None:
        heartbeat("worker-old", seconds_ago=seconds_ago)
    client = logged_in("settings:read")

    page = text(client.get(PAGE))

    warning = field_error(page, "no-worker")
    assert "No worker alive" in warning


def test_page_shows_the_queue_depth_and_media_figures() -> None:
    from tests.adminui.test_guest_pages import finished_job, queued_job

    finished_job(data=b"x" * 2048)
    queued_job()
    queued_job()
    taken = queued_job()
    Job.objects.filter(id=taken.id).update(status=JobStatus.PROCESSING)
    client = logged_in("settings:read")

    page = text(client.get(PAGE))

    assert re.search(
        r"Unfinished jobs: <strong>2</strong> waiting, <strong>1</strong> being processed", page
    )
    media = page[page.index('id="media-table"') :].split("</table>")[0]
    assert "2.0\xa0KB in 1 file" in media
    assert "72 h" in media


# --- the ingest password -------------------------------------------------------------------------
def test_rotating_the_ingest_password_saves_audits_and_never_echoes_it() -> None:
    set_ingest_password(password=OLD_PASSWORD, changed_by="tests")
    client = logged_in(*SCOPES)

    response = client.post(
        "/dashboard/settings/password",
        {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
        follow=True,
    )

    assert "Ingest password changed" in followed_messages(response)
    assert NEW_PASSWORD not in text(response)
    row = settings_row()
    assert check_password(NEW_PASSWORD, row.ingest_password_hash)
    assert row.ingest_password_updated_by == "olga"
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.INGEST_PASSWORD_ROTATED)
    assert event.actor == "olga" and NEW_PASSWORD not in str(event.details)


@pytest.mark.parametrize(
    ("password", "confirmation", "error_id", "message"),
    [
        (NEW_PASSWORD, NEW_PASSWORD + "x", "password-confirmation-error", "not the same"),
        ("short", "short", "password-error", "at least 8 characters"),
        ("", "", "password-error", "at least 8 characters"),
        ("tab\tinside-pw", "tab\tinside-pw", "password-error", "control characters"),
        ("x" * 129, "x" * 129, "password-error", "at most 128 characters"),
    ],
)
def test_an_invalid_password_is_refused_next_to_its_field_and_changes_nothing(
    password: str, confirmation: str, error_id: str, message: str
) -> None:
    set_ingest_password(password=OLD_PASSWORD, changed_by="tests")
    before = settings_row()
    client = logged_in(*SCOPES)

    response = client.post(
        "/dashboard/settings/password",
        {"password": password, "password_confirmation": confirmation},
    )

    assert response.status_code == 422
    page = text(response)
    assert message in field_error(page, error_id)
    assert "Not saved" in page
    if len(password) >= 3:
        assert password not in page and confirmation not in page
    after = settings_row()
    assert after.ingest_password_hash == before.ingest_password_hash
    assert after.ingest_password_updated_by == "tests"
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.INGEST_PASSWORD_ROTATED).exists()


# --- the booth timeout ---------------------------------------------------------------------------
def test_setting_the_timeout_saves_and_audits() -> None:
    client = logged_in(*SCOPES)

    response = client.post(
        "/dashboard/settings/timeout", {"sync_response_timeout_sec": "55"}, follow=True
    )

    assert "Booth timeout set to 55 s" in followed_messages(response)
    assert settings_row().sync_response_timeout_sec == 55
    assert 'value="55"' in text(response)
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.SETTINGS_CHANGED)
    assert event.details["sync_response_timeout_sec"] == {
        "from": deadlines.SYNC_RESPONSE_DEFAULT_SECONDS,
        "to": 55,
    }


def test_setting_the_same_timeout_again_changes_nothing() -> None:
    client = logged_in(*SCOPES)
    current = str(deadlines.SYNC_RESPONSE_DEFAULT_SECONDS)

    response = client.post(
        "/dashboard/settings/timeout", {"sync_response_timeout_sec": current}, follow=True
    )

    assert "nothing changed" in followed_messages(response)
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.SETTINGS_CHANGED).exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("44", "45"),
        ("61", "60"),
        ("abc", "Enter a whole number of seconds."),
        ("", "Enter a whole number of seconds."),
        ("50.5", "Enter a whole number of seconds."),
    ],
)
def test_an_invalid_timeout_is_refused_next_to_its_field_and_changes_nothing(
    value: str, message: str
) -> None:
    client = logged_in(*SCOPES)

    response = client.post("/dashboard/settings/timeout", {"sync_response_timeout_sec": value})

    assert response.status_code == 422
    page = text(response)
    assert message in field_error(page, "timeout-error")
    assert 'aria-invalid="true"' in page
    assert f'value="{value}"' in page  # what was typed stays in the field to correct it
    assert settings_row().sync_response_timeout_sec == deadlines.SYNC_RESPONSE_DEFAULT_SECONDS
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.SETTINGS_CHANGED).exists()


# --- provider keys -------------------------------------------------------------------------------
def test_setting_a_provider_key_stores_it_encrypted_and_shows_who_set_it() -> None:
    client = logged_in(*SCOPES)

    response = client.post(
        "/dashboard/settings/keys/gemini", {"api_key": f"  {GEMINI_KEY}  "}, follow=True
    )

    assert "API key for Google Gemini saved" in followed_messages(response)
    assert api_key_for("gemini") == GEMINI_KEY
    stored = ProviderKey.objects.get(provider_id="gemini")
    assert GEMINI_KEY not in stored.encrypted_key
    page = text(response)
    assert GEMINI_KEY not in page
    status = page[page.index('id="key-status-gemini"') :][:400]
    assert "(from settings)" in status and "by olga at" in status
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.PROVIDER_KEY_CHANGED)
    assert event.details == {"provider_id": "gemini", "action": "set"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Enter the new key"),
        ("   ", "Enter the new key"),
        ("abc\ndef", "control characters"),
        ("k" * 4097, "at most 4096 characters"),
    ],
)
def test_an_invalid_key_is_refused_next_to_its_field_and_changes_nothing(
    value: str, message: str
) -> None:
    set_api_key("gemini", "stored-key", changed_by="tests")
    client = logged_in(*SCOPES)

    response = client.post("/dashboard/settings/keys/gemini", {"api_key": value})

    assert response.status_code == 422
    page = text(response)
    assert message in field_error(page, "api-key-error-gemini")
    assert 'id="api-key-error-turbotext"' not in page
    if value.strip():
        assert value not in page
    assert api_key_for("gemini") == "stored-key"
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.PROVIDER_KEY_CHANGED).exists()


def test_removing_a_stored_key_falls_back_to_the_environment(settings: Any) -> None:
    settings.PROVIDER_API_KEYS = {"gemini": "env-gemini-key", "turbotext": "", "openai": ""}
    set_api_key("gemini", GEMINI_KEY, changed_by="tests")
    client = logged_in(*SCOPES)

    response = client.post("/dashboard/settings/keys/gemini/remove", follow=True)

    notice = followed_messages(response)
    assert "Stored API key for Google Gemini removed" in notice
    assert "environment applies again" in notice
    assert not ProviderKey.objects.filter(provider_id="gemini").exists()
    assert "(from the server's environment)" in text(response)
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.PROVIDER_KEY_CHANGED)
    assert event.details == {"provider_id": "gemini", "action": "removed"}


def test_removing_a_key_that_is_not_stored_changes_nothing() -> None:
    client = logged_in(*SCOPES)

    response = client.post("/dashboard/settings/keys/gemini/remove", follow=True)

    assert "nothing changed" in followed_messages(response)
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.PROVIDER_KEY_CHANGED).exists()


@pytest.mark.parametrize("provider_id", ["local", "no-such-provider"])
def test_keys_of_providers_without_keys_are_404(provider_id: str) -> None:
    client = logged_in(*SCOPES)

    response = client.post(f"/dashboard/settings/keys/{provider_id}", {"api_key": "abc"})

    assert response.status_code == 404
    assert not ProviderKey.objects.exists()


# --- purging media -------------------------------------------------------------------------------
def test_purge_schedules_a_full_purge(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(
        settings_pages.settings_service,
        "schedule_media_cache_purge",
        lambda scope, *, actor: calls.append((scope, actor)),
    )
    client = logged_in("settings:read", "media:write")

    response = client.post("/dashboard/settings/purge", follow=True)

    assert "Purge of expired media scheduled" in followed_messages(response)
    assert calls == [("full", "olga")]


def test_purge_button_is_shown_with_media_write_only() -> None:
    assert 'id="purge-form"' in text(logged_in("settings:read", "media:write").get(PAGE))
    assert 'id="purge-form"' not in text(
        logged_in("settings:read", "settings:write", username="ivan").get(PAGE)
    )


# --- CSRF ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "data"),
    [
        (
            "/dashboard/settings/password",
            {"password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
        ),
        ("/dashboard/settings/timeout", {"sync_response_timeout_sec": "50"}),
        ("/dashboard/settings/keys/gemini", {"api_key": GEMINI_KEY}),
        ("/dashboard/settings/keys/gemini/remove", {}),
        ("/dashboard/settings/purge", {}),
    ],
)
def test_every_form_needs_the_csrf_token(
    url: str, data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        settings_pages.settings_service,
        "schedule_media_cache_purge",
        lambda scope, *, actor: calls.append(scope),
    )
    set_ingest_password(password=OLD_PASSWORD, changed_by="tests")
    set_api_key("gemini", "stored-key", changed_by="tests")
    client = logged_in(*SCOPES, enforce_csrf=True)

    response = client.post(url, data)

    assert response.status_code == 403
    row = settings_row()
    assert check_password(OLD_PASSWORD, row.ingest_password_hash)
    assert row.sync_response_timeout_sec == deadlines.SYNC_RESPONSE_DEFAULT_SECONDS
    assert api_key_for("gemini") == "stored-key"
    assert calls == []


def test_every_form_on_the_page_carries_the_csrf_token() -> None:
    set_api_key("gemini", "stored-key", changed_by="tests")
    page = text(logged_in(*SCOPES).get(PAGE))

    forms = re.findall(r'<form[^>]*method="post".*?</form>', page, re.S)
    assert len(forms) == 8  # logout, password, timeout, 3 keys, 1 remove, purge
    for form in forms:
        assert 'name="csrfmiddlewaretoken"' in form
