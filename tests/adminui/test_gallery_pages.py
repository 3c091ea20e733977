"""Galleries through Django's test client: the guests' page (/g/<id>) and the operators' page
(/dashboard/galleries) with its create, revoke and QR code routes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import SCOPES, AuditEvent
from galleries.models import Gallery
from ingest.models import Slot
from jobqueue.models import Job
from photobooth.qr import qr_svg
from tests.adminui.test_guest_pages import assert_guest_headers
from tests.adminui.test_pages import logged_in
from tests.api.conftest import make_admin
from tests.galleries.photos import (
    a_gallery,
    dashboard_run_photo,
    event_photo,
    expire_result,
    failed_photo,
)
from tests.support.images import open_image

pytestmark = pytest.mark.django_db

BASE_URL = "https://booth.example"
SLOT_NAME = "Secret Gala of the Lindqvist Family"
PAGE = "/dashboard/galleries"
READER = ("slots:read",)
WRITER = ("slots:read", "slots:write")


@pytest.fixture(autouse=True)
def fast_setup(settings: Any) -> None:
    """Public links on a known origin; admins' passwords hashed cheaply (tests only)."""
    settings.PUBLIC_BASE_URL = BASE_URL
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def named_slot() -> Slot:
    Slot.objects.filter(id="slot-001").update(name=SLOT_NAME)
    return Slot.objects.get(id="slot-001")


def text(response: Any) -> str:
    return unescape(response.content.decode())


def guest_get(path: str) -> Any:
    return Client().get(path)


def photo_links(page: str) -> list[str]:
    """The job ids the gallery links to, in page order."""
    return re.findall(rf'<a href="{re.escape(BASE_URL)}/r/([0-9a-f-]{{36}})">', page)


def thumbnails(page: str) -> list[str]:
    return re.findall(r'<img src="(/public/results/[0-9a-f-]{36}/thumbnail)"', page)


def assert_no_admin_data(page: str, gallery: Gallery, jobs: list[Job]) -> None:
    """Nothing about slots, providers, the operator or the dashboard appears for guests."""
    secrets = {SLOT_NAME, gallery.created_by, "/dashboard", "/api/", "csrfmiddlewaretoken"}
    secrets |= {"Log out", "app.css", "Local (offline)", "2026-06-01 18:00:00"}
    for job in jobs:
        secrets |= {job.slot_id, job.provider_id, job.operation_id, job.result_path}
    for secret in sorted(secrets - {""}):
        assert secret not in page, f"{secret!r} shown to guests"
    assert not re.search(r"slot-\d{3}", page)
    assert "<script" not in page and "style=" not in page


# --- the guests' page ----------------------------------------------------------------------------
def test_guests_see_the_galleries_photos_linking_to_their_pages(named_slot: Slot) -> None:
    gallery = a_gallery(title="Anna & Ben's wedding", slot_ids=["slot-001"])
    older = event_photo("slot-001")
    event_photo("slot-002")  # another slot
    failed_photo("slot-001")
    expired = event_photo("slot-001")
    expire_result(expired)
    dashboard_run_photo("slot-001")
    newer = event_photo("slot-001")

    response = guest_get(f"/g/{gallery.id}")

    assert response.status_code == 200
    assert_guest_headers(response)
    page = text(response)
    assert "<title>Anna & Ben's wedding</title>" in page
    assert """<h1 id="gallery-title">Anna & Ben's wedding</h1>""" in page
    assert photo_links(page) == [str(newer.id), str(older.id)]
    assert thumbnails(page) == [
        f"/public/results/{newer.id}/thumbnail",
        f"/public/results/{older.id}/thumbnail",
    ]
    expiry = re.search(r'<p id="gallery-expiry" class="muted">(.*?)</p>', page, re.S)
    assert expiry and "This gallery is online until" in expiry.group(1)
    local_expiry = timezone.localtime(gallery.expires_at)
    assert f'datetime="{local_expiry.isoformat()}"' in expiry.group(1)
    assert "No photos yet" not in page
    assert 'rel="next"' not in page and 'rel="prev"' not in page
    assert_no_admin_data(page, gallery, list(Job.objects.all()))


def test_the_thumbnails_and_the_photo_pages_they_link_to_load() -> None:
    gallery = a_gallery()
    photo = event_photo(data=None)
    page = text(guest_get(f"/g/{gallery.id}"))
    [thumbnail] = thumbnails(page)
    [job_id] = photo_links(page)

    image = guest_get(thumbnail)
    guest_page = guest_get(f"/r/{job_id}")

    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert max(open_image(image.content).size) <= 320
    assert guest_page.status_code == 200
    assert f'<img src="/public/results/{photo.id}"' in guest_page.content.decode()


def test_an_empty_gallery_says_no_photos_yet() -> None:
    gallery = a_gallery()

    page = text(guest_get(f"/g/{gallery.id}"))

    assert "<h2>No photos yet</h2>" in page
    assert "reload this page in a while" in page
    assert photo_links(page) == []


def test_a_closed_empty_gallery_does_not_promise_new_photos() -> None:
    now = timezone.now()
    gallery = a_gallery(since=now - timedelta(hours=2), until=now - timedelta(hours=1))

    page = text(guest_get(f"/g/{gallery.id}"))

    assert "No photos yet" in page and "reload this page" not in page


def test_pages_of_48_photos_link_to_each_other() -> None:
    gallery = a_gallery()
    photos = [event_photo() for _ in range(49)]
    newest_first = [str(photo.id) for photo in reversed(photos)]

    first = text(guest_get(f"/g/{gallery.id}"))
    second = text(guest_get(f"/g/{gallery.id}?page=2"))
    past_the_end = text(guest_get(f"/g/{gallery.id}?page=3"))

    assert photo_links(first) == newest_first[:48]
    assert f'<a href="/g/{gallery.id}?page=2" rel="next" id="gallery-older">' in first
    assert 'rel="prev"' not in first
    assert photo_links(second) == newest_first[48:]
    assert f'<a href="/g/{gallery.id}" rel="prev" id="gallery-newer">' in second
    assert 'rel="next"' not in second
    assert photo_links(past_the_end) == []
    assert "No more photos" in past_the_end
    assert f'href="/g/{gallery.id}" id="gallery-first-page"' in past_the_end


@pytest.mark.parametrize("page", ["abc", "0", "-1", "", "1.5"])
def test_an_unusable_page_number_shows_the_first_page(page: str) -> None:
    gallery = a_gallery()
    photo = event_photo()

    response = guest_get(f"/g/{gallery.id}?page={page}")

    assert response.status_code == 200
    assert photo_links(text(response)) == [str(photo.id)]


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_an_ended_gallery_is_a_friendly_410(how: str) -> None:
    gallery = (
        a_gallery(expires_in=-timedelta(seconds=1)) if how == "expired" else a_gallery(revoked=True)
    )
    photo = event_photo()

    response = guest_get(f"/g/{gallery.id}")

    assert response.status_code == 410
    assert_guest_headers(response)
    page = text(response)
    assert "<h1>This gallery has expired</h1>" in page
    assert "guest.css" in page
    assert str(photo.id) not in page and "/public/results/" not in page
    assert gallery.title not in page


def test_revoking_in_the_dashboard_ends_the_public_page() -> None:
    gallery = a_gallery()
    event_photo()
    assert guest_get(f"/g/{gallery.id}").status_code == 200

    logged_in(*WRITER).post(f"{PAGE}/{gallery.id}/revoke")

    assert guest_get(f"/g/{gallery.id}").status_code == 410


@pytest.mark.parametrize(
    "path", [f"/g/{uuid.uuid4()}", "/g/not-a-gallery", "/g/1234", f"/g/{uuid.uuid4()}x"]
)
def test_unknown_or_malformed_addresses_are_a_friendly_404(path: str) -> None:
    response = guest_get(path)

    assert response.status_code == 404
    assert_guest_headers(response)
    page = text(response)
    assert "<h1>Gallery not found</h1>" in page
    assert "/dashboard" not in page


def test_the_guests_page_answers_only_get_and_head() -> None:
    gallery = a_gallery()

    assert Client().head(f"/g/{gallery.id}").status_code == 200
    assert Client().post(f"/g/{gallery.id}").status_code == 405


def test_the_guests_page_does_not_extend_the_admin_layout() -> None:
    page = text(guest_get(f"/g/{a_gallery().id}"))

    assert "guest.css" in page and "gallery.css" in page
    assert "<nav" not in page.replace('<nav class="pages"', "") and "topbar" not in page
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_the_title_is_escaped() -> None:
    gallery = a_gallery(title='<script>alert("x")</script>')

    page = guest_get(f"/g/{gallery.id}").content.decode()

    assert "<script>" not in page
    assert "&lt;script&gt;" in page


# --- the operators' page: access -----------------------------------------------------------------
def test_the_page_needs_a_login() -> None:
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/dashboard/login?next={PAGE}")


def test_the_page_needs_slots_read() -> None:
    response = logged_in("stats:read").get(PAGE)

    assert response.status_code == 403
    assert "slots:read" in text(response)


def test_a_reader_sees_the_galleries_but_cannot_create_or_revoke() -> None:
    gallery = a_gallery(title="Friday party")
    client = logged_in(*READER)

    page = text(client.get(PAGE))
    created = client.post(f"{PAGE}/new", form(title="Sneaky"))
    revoked = client.post(f"{PAGE}/{gallery.id}/revoke")

    assert "Friday party" in page
    assert 'id="gallery-form"' not in page and f'id="revoke-{gallery.id}"' not in page
    assert "needs the <code>slots:write</code> permission" in page
    assert (created.status_code, revoked.status_code) == (403, 403)
    assert Gallery.objects.count() == 1
    assert Gallery.objects.get().revoked_at is None


@pytest.mark.parametrize("route", ["new", "{id}/revoke"])
def test_changes_need_the_csrf_token(route: str) -> None:
    gallery = a_gallery()
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_admin("olga", SCOPES))

    response = client.post(f"{PAGE}/{route.format(id=gallery.id)}", form())

    assert response.status_code == 403
    assert Gallery.objects.count() == 1 and Gallery.objects.get().revoked_at is None


def test_change_routes_opened_with_get_lead_back_to_the_page() -> None:
    gallery = a_gallery()
    client = logged_in(*WRITER)

    for route in ("new", f"{gallery.id}/revoke"):
        response = client.get(f"{PAGE}/{route}")
        assert response.status_code == 302 and response["Location"] == PAGE


def test_the_menu_links_to_the_galleries() -> None:
    page = text(logged_in(*READER).get(PAGE))

    assert f'<a href="{PAGE}" aria-current="page">Galleries</a>' in page


# --- the operators' page: creating ---------------------------------------------------------------
def form(**overrides: Any) -> dict[str, Any]:
    """What the create form posts with "All slots" and a range starting an hour ago."""
    since = timezone.localtime(timezone.now() - timedelta(hours=1))
    data: dict[str, Any] = {
        "title": "Anna & Ben's wedding",
        "slots": "all",
        "results_since": since.strftime("%Y-%m-%dT%H:%M"),
        "results_until": "",
        "lifetime_hours": "24",
    }
    return {**data, **overrides}


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_form_starts_from_today_in_the_servers_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Pacific/Auckland"

    page = text(logged_in(*WRITER).get(PAGE))

    midnight = timezone.localtime().strftime("%Y-%m-%dT00:00")
    assert f'name="results_since" type="datetime-local" required value="{midnight}"' in page
    assert 'id="gallery-slots-all" checked' in page
    assert '<option value="24" selected>24 hours</option>' in page
    options = re.findall(r'<option value="(\d+)"', page)
    assert options == ["6", "24", "72", "168"]
    assert "Times are in Pacific/Auckland" in page
    assert page.count('name="slot_ids"') == 15


def test_creating_a_gallery_shows_it_with_its_link_and_qr_code(named_slot: Slot) -> None:
    client = logged_in(*WRITER)
    before = timezone.now()

    response = client.post(
        f"{PAGE}/new", form(slots="chosen", slot_ids=["slot-001", "slot-003"], lifetime_hours="72")
    )

    gallery = Gallery.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}#gallery-{gallery.id}"
    assert gallery.title == "Anna & Ben's wedding"
    assert gallery.slot_ids == ["slot-001", "slot-003"]
    assert gallery.results_until is None
    assert gallery.created_by == "olga"
    assert (
        before + timedelta(hours=72) <= gallery.expires_at <= timezone.now() + timedelta(hours=72)
    )
    assert AuditEvent.objects.filter(kind="gallery_created", actor="olga").count() == 1

    page_response = client.get(response["Location"])
    page = text(page_response)
    assert any("Anna & Ben's wedding" in m and "created" in m for m in messages_of(page_response))
    card = re.search(
        rf'<li class="gallery-card" id="gallery-{gallery.id}".*?</li>\s*</ul>', page, re.S
    )
    assert card, page
    card_html = card.group(0)
    link = f"{BASE_URL}/g/{gallery.id}"
    assert f'<code id="gallery-link-{gallery.id}">{link}</code>' in card_html
    assert f'data-copy="gallery-link-{gallery.id}"' in card_html
    assert f'<img src="{PAGE}/{gallery.id}/qr.svg"' in card_html
    assert f"slot-001 · {SLOT_NAME}" in card_html and "slot-003 · " in card_html
    assert 'data-state="active"' in card_html and ">active</span>" in card_html
    assert "on (new photos keep appearing)" in card_html
    assert f'id="revoke-{gallery.id}"' in card_html


def test_the_range_is_read_in_the_servers_time_zone(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"

    logged_in(*WRITER).post(
        f"{PAGE}/new",
        form(results_since="2026-06-01T18:00", results_until="2026-06-02T03:30"),
    )

    gallery = Gallery.objects.get()
    assert gallery.results_since == datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
    assert gallery.results_until == datetime(2026, 6, 2, 1, 30, tzinfo=UTC)
    assert gallery.slot_ids == []


@pytest.mark.parametrize(
    ("overrides", "field_id", "message"),
    [
        ({"title": ""}, "gallery-title-error", "This field is required."),
        ({"title": "   "}, "gallery-title-error", "This field is required."),
        ({"title": "x" * 101}, "gallery-title-error", "at most 100 characters"),
        ({"slots": "chosen"}, "gallery-slot-ids-error", "Tick at least one slot"),
        ({"slots": "chosen", "slot_ids": ["slot-999"]}, "gallery-slot-ids-error", "slot-999"),
        ({"slot_ids": ["slot-001"]}, "gallery-slots-error", "Choose “Only the slots ticked"),
        ({"results_since": ""}, "gallery-since-error", "This field is required."),
        ({"results_since": "yesterday"}, "gallery-since-error", "Enter a valid date/time."),
        (
            {"results_since": "2026-06-01T18:00", "results_until": "2026-06-01T17:00"},
            "gallery-until-error",
            "Must be later than the start of the range.",
        ),
        ({"lifetime_hours": "1000"}, "gallery-lifetime-error", "Select a valid choice."),
    ],
)
def test_invalid_fields_are_shown_next_to_them_and_nothing_is_created(
    overrides: dict[str, Any], field_id: str, message: str
) -> None:
    response = logged_in(*WRITER).post(f"{PAGE}/new", form(**overrides))

    assert response.status_code == 422
    page = text(response)
    error = re.search(rf'<p class="error" id="{field_id}">(.*?)</p>', page, re.S)
    assert error and message in error.group(1), page
    assert f'aria-describedby="{field_id}"' in page or f' {field_id}"' in page
    assert "Not created: please correct the fields marked below." in page
    assert not Gallery.objects.exists()
    assert not AuditEvent.objects.filter(kind="gallery_created").exists()


def test_a_refused_form_keeps_what_was_typed() -> None:
    response = logged_in(*WRITER).post(
        f"{PAGE}/new",
        form(
            title="Garden party",
            slots="chosen",
            slot_ids=["slot-002"],
            results_since="2026-06-01T18:00",
            results_until="2026-06-01T17:00",
            lifetime_hours="168",
        ),
    )

    page = text(response)
    assert 'value="Garden party"' in page
    assert 'id="gallery-slots-chosen" checked' in page
    assert 'id="gallery-slot-slot-002" checked' in page
    assert 'id="gallery-slot-slot-001" checked' not in page
    assert 'value="2026-06-01T18:00"' in page and 'value="2026-06-01T17:00"' in page
    assert '<option value="168" selected>7 days</option>' in page


# --- the operators' page: revoking and QR codes --------------------------------------------------
def test_revoking_marks_the_gallery_revoked_and_is_audited() -> None:
    gallery = a_gallery(title="Friday party")
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/{gallery.id}/revoke")
    again = client.post(f"{PAGE}/{gallery.id}/revoke")

    assert response.status_code == 302 and again.status_code == 302
    gallery.refresh_from_db()
    assert gallery.revoked_at is not None
    assert AuditEvent.objects.filter(kind="gallery_revoked", actor="olga").count() == 1
    page = text(client.get(PAGE))
    card = re.search(rf'id="gallery-{gallery.id}" data-gallery="[^"]+" data-state="(\w+)"', page)
    assert card and card.group(1) == "revoked"
    assert f'id="revoke-{gallery.id}"' not in page
    assert f"{PAGE}/{gallery.id}/qr.svg" not in page
    assert "answers “this gallery has expired”" in page


def test_an_expired_gallery_is_listed_as_expired() -> None:
    gallery = a_gallery(expires_in=-timedelta(minutes=1))

    page = text(logged_in(*READER).get(PAGE))

    assert f'id="gallery-{gallery.id}" data-gallery="{gallery.id}" data-state="expired"' in page


def test_revoking_an_unknown_gallery_is_a_404_page() -> None:
    response = logged_in(*WRITER).post(f"{PAGE}/{uuid.uuid4()}/revoke")

    assert response.status_code == 404
    assert "Not found" in text(response)


def test_the_qr_code_encodes_the_public_link() -> None:
    gallery = a_gallery(title="A & B")

    response = logged_in(*READER).get(f"{PAGE}/{gallery.id}/qr.svg")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    link = f"{BASE_URL}/g/{gallery.id}"
    assert response.content == qr_svg(link, title="QR code of “A & B”")
    assert b"<title>QR code of \xe2\x80\x9cA &amp; B\xe2\x80\x9d</title>" in response.content


def test_the_qr_code_is_for_operators_only() -> None:
    gallery = a_gallery()

    anonymous = Client().get(f"{PAGE}/{gallery.id}/qr.svg")
    unknown = logged_in(*READER).get(f"{PAGE}/{uuid.uuid4()}/qr.svg")

    assert anonymous.status_code == 302
    assert unknown.status_code == 404


def test_the_services_own_checks_land_on_their_field_too() -> None:
    """The form lets a control character through; the service (shared with the API) does not."""
    response = logged_in(*WRITER).post(f"{PAGE}/new", form(title="Anna\x01Ben"))

    assert response.status_code == 422
    page = text(response)
    assert '<p class="error" id="gallery-title-error">Must not contain control characters.</p>' in (
        page
    )
    assert not Gallery.objects.exists()


@pytest.mark.parametrize("path", ["/g/", f"/g/{uuid.uuid4()}/more", "/g/a/b"])
def test_other_addresses_under_g_are_the_same_friendly_404(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "<h1>Gallery not found</h1>" in text(response)
