"""GET/POST /api/galleries and GET/DELETE /api/galleries/<id>: create, read, revoke, permissions,
per-field 422s. Every answer is checked against the OpenAPI schema (tests/api/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import SCOPES, AuditEvent
from galleries.models import Gallery
from tests.api.conftest import assert_error
from tests.api.openapi import openapi_document
from tests.galleries.photos import a_gallery, event_photo

pytestmark = pytest.mark.django_db

BASE_URL = "https://booth.example"
GALLERY_KEYS = {
    "id",
    "title",
    "slot_ids",
    "results_since",
    "results_until",
    "expires_at",
    "created_by",
    "created_at",
    "revoked_at",
    "state",
    "public_url",
}
ClientWith = Callable[..., APIClient]


@pytest.fixture(autouse=True)
def fast_setup(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = BASE_URL
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(api_client_with: ClientWith) -> APIClient:
    return api_client_with("slots:read", "slots:write")


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "Anna & Ben's wedding",
        "slot_ids": ["slot-001", "slot-002"],
        "results_since": (timezone.now() - timedelta(hours=1)).isoformat(),
        "lifetime_hours": 24,
    }
    return {**values, **overrides}


def create(api: APIClient, **overrides: Any) -> Any:
    return api.post("/api/galleries", body(**overrides), format="json")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- creating ------------------------------------------------------------------------------------
def test_create_answers_201_with_the_public_link(api: APIClient) -> None:
    before = timezone.now()

    response = create(api, lifetime_hours=72)

    assert response.status_code == 201, response.content
    gallery = response.json()
    assert set(gallery) == GALLERY_KEYS
    assert uuid.UUID(gallery["id"]).version == 4
    assert gallery["public_url"] == f"{BASE_URL}/g/{gallery['id']}"
    assert gallery["title"] == "Anna & Ben's wedding"
    assert gallery["slot_ids"] == ["slot-001", "slot-002"]
    assert gallery["results_until"] is None and gallery["revoked_at"] is None
    assert gallery["state"] == "active"
    assert gallery["created_by"].startswith("admin")
    expires_at = parse(gallery["expires_at"])
    assert before + timedelta(hours=72) <= expires_at <= timezone.now() + timedelta(hours=72)
    [event] = AuditEvent.objects.filter(kind="gallery_created")
    assert event.actor == gallery["created_by"]
    assert event.details["gallery_id"] == gallery["id"]


def test_the_public_link_of_a_new_gallery_shows_its_photos(api: APIClient) -> None:
    photo = event_photo("slot-001")

    gallery = create(api, slot_ids=["slot-001"]).json()

    page = Client().get(gallery["public_url"].removeprefix(BASE_URL))
    assert page.status_code == 200
    assert f'href="{BASE_URL}/r/{photo.id}"' in page.content.decode()


def test_an_empty_slot_list_means_every_slot_and_until_closes_the_range(api: APIClient) -> None:
    response = create(
        api,
        slot_ids=[],
        results_since="2026-06-01T18:00:00+02:00",
        results_until="2026-06-02T02:00:00+02:00",
    )

    assert response.status_code == 201
    gallery = response.json()
    assert gallery["slot_ids"] == []
    assert parse(gallery["results_since"]) == datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    assert parse(gallery["results_until"]) == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)


def test_times_without_an_offset_are_in_the_servers_time_zone(
    api: APIClient, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Berlin"

    response = create(api, results_since="2026-06-01T18:00:00")

    assert response.status_code == 201
    stored = Gallery.objects.get(id=response.json()["id"])
    assert stored.results_since == datetime(2026, 6, 1, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 101}, "title"),
        ({"title": 42}, "title"),
        ({"title": "a\x00b"}, "title"),
        ({"slot_ids": ["slot-001", "slot-404"]}, "slot_ids"),
        ({"slot_ids": "slot-001"}, "slot_ids"),
        ({"slot_ids": [1]}, "slot_ids"),
        ({"results_since": "yesterday"}, "results_since"),
        ({"results_since": None}, "results_since"),
        ({"results_until": "2000-01-01T00:00:00Z"}, "results_until"),
        ({"lifetime_hours": 0}, "lifetime_hours"),
        ({"lifetime_hours": 169}, "lifetime_hours"),
        ({"lifetime_hours": "24"}, "lifetime_hours"),
        ({"lifetime_hours": 2.5}, "lifetime_hours"),
        ({"lifetime_hours": True}, "lifetime_hours"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    api: APIClient, overrides: dict[str, Any], field: str
) -> None:
    error = assert_error(create(api, **overrides), 422, "validation_failed")

    assert list(error["details"]) == [field], error
    assert not Gallery.objects.exists()
    assert not AuditEvent.objects.filter(kind="gallery_created").exists()


def test_service_messages_are_the_dashboards(api: APIClient) -> None:
    error = assert_error(
        create(api, title=" ", slot_ids=["slot-404"], results_until=body()["results_since"]),
        422,
        "validation_failed",
    )

    assert error["details"] == {
        "title": ["Give the gallery a title."],
        "slot_ids": ["Unknown slot: slot-404."],
        "results_until": ["Must be later than the start of the range."],
    }


def test_missing_fields_are_422_each(api: APIClient) -> None:
    response = api.post("/api/galleries", {}, format="json")

    error = assert_error(response, 422, "validation_failed")
    assert set(error["details"]) == {"title", "slot_ids", "results_since", "lifetime_hours"}


def test_a_body_that_is_not_json_is_400(api: APIClient) -> None:
    response = api.post("/api/galleries", "{not json", content_type="application/json")

    assert_error(response, 400, "malformed_request")


# --- reading -------------------------------------------------------------------------------------
def test_list_and_detail_show_every_state(api_client_with: ClientWith) -> None:
    active = a_gallery(title="Saturday")
    expired = a_gallery(title="Friday", expires_in=-timedelta(minutes=1))
    revoked = a_gallery(title="Thursday", revoked=True)
    reader = api_client_with("slots:read")

    listed = reader.get("/api/galleries")
    detail = reader.get(f"/api/galleries/{expired.id}")

    assert listed.status_code == 200
    page = listed.json()
    assert page["count"] == 3
    states = {item["id"]: item["state"] for item in page["results"]}
    assert states == {
        str(active.id): "active",
        str(expired.id): "expired",
        str(revoked.id): "revoked",
    }
    assert detail.status_code == 200
    assert detail.json()["title"] == "Friday" and detail.json()["state"] == "expired"


@pytest.mark.parametrize("gallery_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_gallery_is_404(api: APIClient, gallery_id: str) -> None:
    assert_error(api.get(f"/api/galleries/{gallery_id}"), 404, "gallery_not_found")
    assert_error(api.delete(f"/api/galleries/{gallery_id}"), 404, "gallery_not_found")


# --- revoking ------------------------------------------------------------------------------------
def test_delete_revokes_once_and_is_idempotent(api: APIClient) -> None:
    gallery = create(api).json()
    public_path = gallery["public_url"].removeprefix(BASE_URL)
    assert Client().get(public_path).status_code == 200

    first = api.delete(f"/api/galleries/{gallery['id']}")
    revoked_at = Gallery.objects.get(id=gallery["id"]).revoked_at
    second = api.delete(f"/api/galleries/{gallery['id']}")

    assert (first.status_code, second.status_code) == (204, 204)
    assert Gallery.objects.get(id=gallery["id"]).revoked_at == revoked_at is not None
    assert AuditEvent.objects.filter(kind="gallery_revoked").count() == 1
    assert api.get(f"/api/galleries/{gallery['id']}").json()["state"] == "revoked"
    assert Client().get(public_path).status_code == 410


# --- permissions ---------------------------------------------------------------------------------
ENDPOINTS = [
    ("get", "/api/galleries", "slots:read"),
    ("post", "/api/galleries", "slots:write"),
    ("get", "/api/galleries/{id}", "slots:read"),
    ("delete", "/api/galleries/{id}", "slots:write"),
]


@pytest.mark.parametrize(("method", "url", "scope"), ENDPOINTS)
def test_permissions(
    api_client_with: ClientWith, anonymous_api: APIClient, method: str, url: str, scope: str
) -> None:
    gallery = a_gallery()
    url = url.format(id=gallery.id)
    other_scopes = set(SCOPES) - {scope}

    def call(client: APIClient) -> Any:
        if method == "post":
            return client.post(url, body(), format="json")
        return getattr(client, method)(url)

    assert_error(call(anonymous_api), 401, "not_authenticated")
    assert_error(call(api_client_with(*sorted(other_scopes))), 403, "forbidden")
    assert call(api_client_with(scope)).status_code in (200, 201, 204)


def test_a_reader_cannot_create_or_revoke(api_client_with: ClientWith) -> None:
    gallery = a_gallery()
    reader = api_client_with("slots:read")

    assert_error(create(reader), 403, "forbidden")
    assert_error(reader.delete(f"/api/galleries/{gallery.id}"), 403, "forbidden")
    assert Gallery.objects.count() == 1 and Gallery.objects.get().revoked_at is None


def test_the_schema_declares_the_gallery_endpoints() -> None:
    paths = openapi_document()["paths"]

    assert {"get", "post"} <= set(paths["/api/galleries"])
    assert {"get", "delete"} <= set(paths["/api/galleries/{gallery_id}"])
    create_op = paths["/api/galleries"]["post"]
    assert {"201", "400", "401", "403", "415", "422"} <= set(create_op["responses"])
    assert paths["/api/galleries"]["get"]["security"] == [{"bearerAuth": []}]
