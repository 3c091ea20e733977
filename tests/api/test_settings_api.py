"""GET/PUT /api/settings and POST /api/media/cache/purge: shapes, validation, secrets, audit.

The ingest password and provider keys are write-only: they must never come back in a response,
an audit row or a log line. A PUT is all or nothing. A purge runs in a background thread of the
web process, so its tests use committed data (live_db).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from ingest import settings_service
from ingest.models import IngestSettings, TemplateMedia
from ingest.settings_service import SettingsChange, apply_settings_change
from jobqueue import files
from jobqueue.models import Job, MediaObject
from photobooth.errors import Unprocessable
from providers.models import ProviderKey
from providers.secrets import api_key_for, set_api_key
from tests.api.conftest import assert_error
from tests.support.images import make_photo
from tests.support.stack import wait_until

pytestmark = pytest.mark.django_db

URL = "/api/settings"
PURGE_URL = "/api/media/cache/purge"
NEW_PASSWORD = "new-booth-password-77"
API_KEY = "sk-test-0123456789abcdef-SECRET"
KEY_PROVIDERS = {"gemini", "turbotext", "openai"}
SETTINGS_KEYS = {"dslr_password", "provider_keys", "ingest", "media_cache"}
MEDIA_CACHE_KEYS = {
    "results_bytes",
    "results_count",
    "payloads_bytes",
    "media_bytes",
    "media_count",
    "templates_bytes",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Admin and ingest passwords hashed cheaply: these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_environment_keys(settings: Any) -> dict[str, str]:
    """Provider keys from the environment: none, unless a test sets one."""
    settings.PROVIDER_API_KEYS = {"gemini": "", "turbotext": "", "openai": ""}
    return dict(settings.PROVIDER_API_KEYS)


def put(client: APIClient, body: Any) -> Any:
    return client.put(URL, body, format="json")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_secret_nowhere(secret: str, response: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Not in the response, not in any audit row, not in any captured log record."""
    assert secret not in response.content.decode()
    for event in AuditEvent.objects.all():
        assert secret not in json.dumps(event.details)
        assert secret not in event.actor
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(vars(record))


def audit_kinds() -> list[str]:
    return list(
        AuditEvent.objects.exclude(kind=AuditEvent.Kind.LOGIN_OK)
        .order_by("created_at", "id")
        .values_list("kind", flat=True)
    )


def make_job(
    *,
    payload_path: str = "",
    payload_size: int = 100,
    result_path: str = "",
    result_size: int | None = None,
    result_expires_at: datetime | None = None,
) -> Job:
    """A finalized job row written directly (created an hour ago)."""
    created = timezone.now() - timedelta(hours=1)
    return Job.objects.create(
        slot_id="slot-001",
        provider_id="local",
        operation_id="photo_look",
        created_at=created,
        expires_at=created + timedelta(seconds=48),
        is_finalized=True,
        finalized_at=created + timedelta(seconds=5),
        payload_path=payload_path,
        payload_mime="image/jpeg",
        payload_size=payload_size,
        payload_sha256="0" * 64,
        payload_expires_at=created + timedelta(seconds=48),
        result_path=result_path,
        result_mime="image/jpeg" if result_path else "",
        result_size=result_size,
        result_expires_at=result_expires_at,
        result_retention_seconds=3600,
    )


def make_media(*, path: str, size: int, expires_in: timedelta) -> MediaObject:
    now = timezone.now()
    return MediaObject.objects.create(
        path=path, mime="image/jpeg", size=size, created_at=now, expires_at=now + expires_in
    )


def store(kind: str, data: bytes = b"x" * 10) -> str:
    return files.store_bytes(kind=kind, stem=str(uuid.uuid4()), mime="image/jpeg", data=data).path


def age_file(media_root: Path, path: str, by: timedelta) -> None:
    """Make a stored file look older (orphans are only swept once old enough)."""
    stamp = (timezone.now() - by).timestamp()
    os.utime(media_root / path, (stamp, stamp))


# --- GET -----------------------------------------------------------------------------------------
def test_get_shows_every_setting_without_any_secret(admin_api: APIClient, settings: Any) -> None:
    settings.PROVIDER_API_KEYS = {"gemini": "", "turbotext": "env-key-value", "openai": ""}

    response = admin_api.get(URL)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == SETTINGS_KEYS
    assert body["dslr_password"] == {"is_set": False, "updated_at": None, "updated_by": ""}
    unset = {"is_configured": False, "source": "", "updated_at": None, "updated_by": ""}
    assert body["provider_keys"] == {
        "gemini": unset,
        "openai": unset,
        "turbotext": {
            "is_configured": True,
            "source": "environment",
            "updated_at": None,
            "updated_by": "",
        },
    }
    assert body["ingest"] == {
        "sync_response_timeout_sec": 48,
        "sync_response_min_sec": 45,
        "sync_response_max_sec": 60,
        "result_retention_sec": 72 * 3600,
        "max_upload_bytes": settings.INGEST_MAX_UPLOAD_BYTES,
    }
    assert body["media_cache"] == dict.fromkeys(MEDIA_CACHE_KEYS, 0)
    assert "env-key-value" not in response.content.decode()


def test_get_says_who_set_the_password_and_keys_and_when(
    api_client_with: Callable[..., APIClient], ingest_password: str
) -> None:
    before = timezone.now()
    set_api_key("gemini", API_KEY, changed_by="carol")
    client = api_client_with("settings:read")

    response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["dslr_password"]["is_set"] is True
    assert body["dslr_password"]["updated_by"] == "tests"
    assert parse_time(body["dslr_password"]["updated_at"]) >= before - timedelta(seconds=1)
    gemini = body["provider_keys"]["gemini"]
    assert gemini["is_configured"] is True and gemini["source"] == "settings"
    assert gemini["updated_by"] == "carol"
    assert parse_time(gemini["updated_at"]) >= before - timedelta(seconds=1)
    text = response.content.decode()
    assert API_KEY not in text and ingest_password not in text
    assert IngestSettings.load().ingest_password_hash not in text


def test_media_cache_sums_only_the_files_still_kept(admin_api: APIClient) -> None:
    soon = timezone.now() + timedelta(hours=1)
    make_job(payload_path="payloads/a.jpg", payload_size=1000, result_path="results/a.jpg",
             result_size=300, result_expires_at=soon)  # fmt: skip
    make_job(payload_size=2000, result_path="results/b.jpg", result_size=400,
             result_expires_at=soon)  # fmt: skip
    make_job(payload_size=5000, result_size=9999)  # result already purged: not counted
    make_media(path="media/a.jpg", size=70, expires_in=timedelta(minutes=5))
    make_media(path="media/b.jpg", size=30, expires_in=timedelta(minutes=5))
    TemplateMedia.objects.create(path="templates/t.png", mime="image/png", size=4096,
                                 sha256="0" * 64, width=10, height=10)  # fmt: skip

    body = admin_api.get(URL).json()

    assert body["media_cache"] == {
        "results_bytes": 700,
        "results_count": 2,
        "payloads_bytes": 1000,
        "media_bytes": 100,
        "media_count": 2,
        "templates_bytes": 4096,
    }


# --- PUT: the ingest password --------------------------------------------------------------------
def test_put_rotates_the_ingest_password_and_audits_it_without_the_password(
    admin_api: APIClient, ingest_password: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    old_hash = IngestSettings.load().ingest_password_hash

    response = put(admin_api, {"dslr_password": {"value": NEW_PASSWORD}})

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body == admin_api.get(URL).json()
    assert body["dslr_password"]["is_set"] is True
    assert body["dslr_password"]["updated_by"] == "admin0"
    row = IngestSettings.load()
    assert row.ingest_password_hash != old_hash
    assert audit_kinds() == ["ingest_password_rotated"]
    event = AuditEvent.objects.get(kind="ingest_password_rotated")
    assert event.actor == "admin0" and event.details == {}
    assert_secret_nowhere(NEW_PASSWORD, response, caplog)
    assert row.ingest_password_hash not in response.content.decode()


def test_rotated_password_is_required_by_the_next_upload(
    live_db: None, admin_api: APIClient, client: Client, ingest_password: str
) -> None:
    response = put(admin_api, {"dslr_password": {"value": NEW_PASSWORD}})
    assert response.status_code == 200
    # No worker runs here: an accepted photo is answered at its (shortened) deadline.
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=1)

    def upload(password: str) -> Any:
        photo = SimpleUploadedFile("IMG_0001.JPG", make_photo(width=64), "image/jpeg")
        return client.post("/ingest/slot-001", {"password": password, "fileToUpload": photo})

    refused = upload(ingest_password)
    accepted = upload(NEW_PASSWORD)

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_password"
    assert accepted.status_code == 504, accepted.content  # accepted, queued, timed out
    assert Job.objects.count() == 1


@pytest.mark.parametrize("value", ["short", "", "1234567", 12345678, None, "x" * 129, "tab\there!"])
def test_put_refuses_an_unusable_password(
    admin_api: APIClient, ingest_password: str, value: Any
) -> None:
    old_hash = IngestSettings.load().ingest_password_hash

    response = put(admin_api, {"dslr_password": {"value": value}})

    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["dslr_password"]
    assert list(error["details"]["dslr_password"]) == ["value"]
    if isinstance(value, str) and value:
        assert value not in response.content.decode()
    assert IngestSettings.load().ingest_password_hash == old_hash
    assert audit_kinds() == []


# --- PUT: ingest settings ------------------------------------------------------------------------
def test_put_sets_the_sync_response_timeout(admin_api: APIClient) -> None:
    response = put(admin_api, {"ingest": {"sync_response_timeout_sec": 55}})

    assert response.status_code == 200
    assert response.json()["ingest"]["sync_response_timeout_sec"] == 55
    assert IngestSettings.load().sync_response_timeout_sec == 55
    event = AuditEvent.objects.get(kind="settings_changed")
    assert event.actor == "admin0"
    assert event.details == {
        "fields": ["sync_response_timeout_sec"],
        "sync_response_timeout_sec": {"from": 48, "to": 55},
    }


@pytest.mark.parametrize("value", [44, 61, 0, -1, "50", 50.5, True, None, [50]])
def test_put_refuses_a_sync_response_timeout_outside_45_to_60(
    admin_api: APIClient, value: Any
) -> None:
    response = put(admin_api, {"ingest": {"sync_response_timeout_sec": value}})

    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["ingest"]
    messages = error["details"]["ingest"]["sync_response_timeout_sec"]
    assert isinstance(messages, list) and messages
    assert IngestSettings.load().sync_response_timeout_sec == 48
    assert audit_kinds() == []


# --- PUT: provider keys --------------------------------------------------------------------------
def test_put_stores_a_provider_key_encrypted_and_never_shows_it(
    admin_api: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    response = put(admin_api, {"provider_keys": {"gemini": {"api_key": API_KEY}}})

    assert response.status_code == 200, response.content
    gemini = response.json()["provider_keys"]["gemini"]
    assert gemini["is_configured"] is True
    assert gemini["source"] == "settings"
    assert gemini["updated_by"] == "admin0"
    assert api_key_for("gemini") == API_KEY
    stored = ProviderKey.objects.get(provider_id="gemini")
    assert API_KEY not in stored.encrypted_key
    event = AuditEvent.objects.get(kind="provider_key_changed")
    assert event.details == {"provider_id": "gemini", "action": "set"}
    assert_secret_nowhere(API_KEY, response, caplog)
    assert stored.encrypted_key not in response.content.decode()


def test_an_empty_key_removes_the_stored_one_and_the_environment_applies_again(
    admin_api: APIClient, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.PROVIDER_API_KEYS = {"gemini": "", "turbotext": "", "openai": "env-openai-key"}
    set_api_key("openai", API_KEY, changed_by="carol")
    caplog.set_level(logging.DEBUG)

    response = put(admin_api, {"provider_keys": {"openai": {"api_key": ""}}})

    assert response.status_code == 200
    assert response.json()["provider_keys"]["openai"] == {
        "is_configured": True,
        "source": "environment",
        "updated_at": None,
        "updated_by": "",
    }
    assert api_key_for("openai") == "env-openai-key"
    event = AuditEvent.objects.get(kind="provider_key_changed")
    assert event.details == {"provider_id": "openai", "action": "removed"}
    assert_secret_nowhere("env-openai-key", response, caplog)


@pytest.mark.parametrize("provider_id", ["nope", "local"])
def test_put_refuses_keys_for_unknown_providers_or_ones_without_keys(
    admin_api: APIClient, provider_id: str
) -> None:
    response = put(admin_api, {"provider_keys": {provider_id: {"api_key": API_KEY}}})

    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["provider_keys"]
    assert list(error["details"]["provider_keys"]) == [provider_id]
    assert not ProviderKey.objects.exists()
    assert API_KEY not in response.content.decode()


def test_put_refuses_a_key_with_a_line_break(admin_api: APIClient) -> None:
    response = put(admin_api, {"provider_keys": {"gemini": {"api_key": "abc\ndef"}}})

    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]["provider_keys"]["gemini"]) == ["api_key"]
    assert not ProviderKey.objects.exists()


# --- PUT: the request as a whole -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"bogus": 1}, ["bogus"]),
        ({"ingest": {"result_retention_sec": 60}}, ["ingest", "result_retention_sec"]),
        ({"dslr_password": {"value": NEW_PASSWORD, "old": "x"}}, ["dslr_password", "old"]),
        (
            {"provider_keys": {"gemini": {"api_key": "k", "x": 1}}},
            ["provider_keys", "gemini", "x"],
        ),
    ],
)
def test_put_refuses_unknown_fields(admin_api: APIClient, body: Any, path: list[str]) -> None:
    response = put(admin_api, body)

    error = assert_error(response, 422, "validation_failed")
    details: Any = error["details"]
    for key in path:
        assert key in details, error
        details = details[key]
    assert audit_kinds() == []


def test_put_changes_nothing_when_any_part_is_invalid(
    admin_api: APIClient, ingest_password: str
) -> None:
    old_hash = IngestSettings.load().ingest_password_hash

    response = put(
        admin_api,
        {
            "dslr_password": {"value": NEW_PASSWORD},
            "ingest": {"sync_response_timeout_sec": 30},
            "provider_keys": {"gemini": {"api_key": API_KEY}},
        },
    )

    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["ingest"]
    assert list(error["details"]["ingest"]) == ["sync_response_timeout_sec"]
    assert IngestSettings.load().ingest_password_hash == old_hash
    assert not ProviderKey.objects.exists()
    assert audit_kinds() == []


def test_put_applies_every_part_together(admin_api: APIClient, ingest_password: str) -> None:
    response = put(
        admin_api,
        {
            "dslr_password": {"value": NEW_PASSWORD},
            "ingest": {"sync_response_timeout_sec": 60},
            "provider_keys": {"gemini": {"api_key": API_KEY}, "turbotext": {"api_key": API_KEY}},
        },
    )

    assert response.status_code == 200
    body = response.json()
    assert body["ingest"]["sync_response_timeout_sec"] == 60
    assert body["provider_keys"]["gemini"]["is_configured"] is True
    assert body["provider_keys"]["turbotext"]["is_configured"] is True
    assert sorted(audit_kinds()) == [
        "ingest_password_rotated",
        "provider_key_changed",
        "provider_key_changed",
        "settings_changed",
    ]


def test_a_failure_while_storing_rolls_back_every_part(
    ingest_password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_hash = IngestSettings.load().ingest_password_hash

    def broken(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    monkeypatch.setattr(settings_service, "set_api_key", broken)
    with pytest.raises(DatabaseError):
        apply_settings_change(
            SettingsChange(
                dslr_password=NEW_PASSWORD,
                sync_response_timeout_sec=50,
                provider_keys={"gemini": API_KEY},
            ),
            actor="dave",
        )

    row = IngestSettings.load()
    assert row.ingest_password_hash == old_hash
    assert row.sync_response_timeout_sec == 48
    assert audit_kinds() == []


def test_the_service_reports_every_problem_at_once() -> None:
    with pytest.raises(Unprocessable) as raised:
        apply_settings_change(
            SettingsChange(
                dslr_password="short",
                sync_response_timeout_sec=90,
                provider_keys={"nope": "k", "gemini": "a\x00b"},
            ),
            actor="dave",
        )

    details = raised.value.details
    assert set(details) == {"dslr_password", "ingest", "provider_keys"}
    assert set(details["provider_keys"]) == {"nope", "gemini"}
    assert "short" not in json.dumps(details)


def test_an_empty_put_changes_nothing(admin_api: APIClient) -> None:
    response = put(admin_api, {})

    assert response.status_code == 200
    assert response.json() == admin_api.get(URL).json()
    assert audit_kinds() == []


def test_put_with_malformed_json_is_a_400(admin_api: APIClient) -> None:
    response = admin_api.put(URL, "{not json", content_type="application/json")

    assert_error(response, 400, "malformed_request")


def test_put_with_a_form_body_is_a_415(admin_api: APIClient) -> None:
    response = admin_api.put(URL, "a=1", content_type="application/x-www-form-urlencoded")

    assert_error(response, 415, "unsupported_media_type")


def test_put_with_a_list_body_is_a_422(admin_api: APIClient) -> None:
    response = put(admin_api, [1, 2])

    assert_error(response, 422, "validation_failed")


# --- permissions ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "scope", "status"),
    [
        ("get", None, 401),
        ("get", "settings:write", 403),
        ("get", "settings:read", 200),
        ("put", None, 401),
        ("put", "settings:read", 403),
        ("put", "settings:write", 200),
    ],
)
def test_settings_permissions(
    api_client_with: Callable[..., APIClient],
    anonymous_api: APIClient,
    method: str,
    scope: str | None,
    status: int,
) -> None:
    client = anonymous_api if scope is None else api_client_with(scope)
    body = {"ingest": {"sync_response_timeout_sec": 50}}

    response = client.get(URL) if method == "get" else put(client, body)

    if status == 200:
        assert response.status_code == 200
        assert set(response.json()) == SETTINGS_KEYS
    else:
        assert_error(response, status, "not_authenticated" if status == 401 else "forbidden")
        assert IngestSettings.load().sync_response_timeout_sec == 48


@pytest.mark.parametrize(("scope", "status"), [(None, 401), ("settings:write", 403)])
def test_purge_needs_the_media_write_permission(
    api_client_with: Callable[..., APIClient],
    anonymous_api: APIClient,
    scope: str | None,
    status: int,
) -> None:
    client = anonymous_api if scope is None else api_client_with(scope)

    response = client.post(PURGE_URL, {"scope": "full"}, format="json")

    assert_error(response, status)


# --- POST /api/media/cache/purge -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"), [({"scope": "all"}, "scope"), ({"scope": "full", "x": 1}, "x")]
)
def test_purge_refuses_an_unknown_scope_or_field(
    admin_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = admin_api.post(PURGE_URL, body, format="json")

    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == [field]


@pytest.fixture
def purges_finish() -> Iterator[None]:
    """The background purge is over before the test's data is flushed."""
    yield
    assert settings_service.wait_for_purges(timeout=10)


@pytest.fixture
def cache_files(live_db: None, media_root: Path) -> dict[str, Any]:
    """Expired and live media, expired and live results, old and fresh orphans (committed)."""
    now = timezone.now()
    expired_media, live_media = store("media"), store("media")
    expired_result, live_result = store("results"), store("results")
    old_orphan, fresh_orphan = store("results"), store("media")
    rows = {
        "expired_media": make_media(path=expired_media, size=10, expires_in=-timedelta(seconds=1)),
        "live_media": make_media(path=live_media, size=10, expires_in=timedelta(minutes=5)),
        "expired_job": make_job(
            result_path=expired_result, result_size=10, result_expires_at=now - timedelta(minutes=1)
        ),
        "live_job": make_job(
            result_path=live_result, result_size=10, result_expires_at=now + timedelta(hours=1)
        ),
    }
    for path in (old_orphan, live_result, live_media):
        age_file(media_root, path, timedelta(hours=1))  # old, but still referenced (not orphans)
    paths = {
        "expired_media": expired_media,
        "live_media": live_media,
        "expired_result": expired_result,
        "live_result": live_result,
        "old_orphan": old_orphan,
        "fresh_orphan": fresh_orphan,
    }
    return {"paths": paths, "rows": rows}


def test_full_purge_removes_expired_media_results_and_orphans_in_the_background(
    admin_api: APIClient, cache_files: dict[str, Any], purges_finish: None
) -> None:
    paths, rows = cache_files["paths"], cache_files["rows"]

    response = admin_api.post(PURGE_URL)  # no body: the full purge

    assert response.status_code == 202
    assert response.json() == {"scope": "full", "scheduled": True}
    gone = ("expired_media", "expired_result", "old_orphan")
    wait_until(lambda: not any(files.exists(paths[name]) for name in gone), timeout=10)
    assert settings_service.wait_for_purges(timeout=10)
    for name in ("live_media", "live_result", "fresh_orphan"):
        assert files.exists(paths[name]), name
    assert not MediaObject.objects.filter(id=rows["expired_media"].id).exists()
    assert MediaObject.objects.filter(id=rows["live_media"].id).exists()
    assert Job.objects.get(id=rows["expired_job"].id).result_path == ""
    assert Job.objects.get(id=rows["live_job"].id).result_path == paths["live_result"]


def test_media_objects_purge_removes_only_expired_temporary_media(
    api_client_with: Callable[..., APIClient], cache_files: dict[str, Any], purges_finish: None
) -> None:
    paths, rows = cache_files["paths"], cache_files["rows"]
    client = api_client_with("media:write")

    response = client.post(PURGE_URL, {"scope": "media_objects"}, format="json")

    assert response.status_code == 202
    assert response.json() == {"scope": "media_objects", "scheduled": True}
    wait_until(lambda: not files.exists(paths["expired_media"]), timeout=10)
    assert settings_service.wait_for_purges(timeout=10)
    assert not MediaObject.objects.filter(id=rows["expired_media"].id).exists()
    for name in ("live_media", "expired_result", "live_result", "old_orphan", "fresh_orphan"):
        assert files.exists(paths[name]), name
    assert Job.objects.get(id=rows["expired_job"].id).result_path == paths["expired_result"]
