"""Galleries: creating, revoking, resolving for guests, and which photos a gallery shows."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import AuditEvent
from galleries import selectors, services
from galleries.models import Gallery, GalleryState
from jobqueue.models import Job
from photobooth.errors import Gone, NotFound, Unprocessable
from tests.galleries.photos import (
    a_gallery,
    dashboard_run_photo,
    event_photo,
    expire_result,
    failed_photo,
    queued_photo,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_address(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://booth.example"


def new_gallery(**overrides: Any) -> Gallery:
    values: dict[str, Any] = {
        "title": "Anna & Ben's wedding",
        "slot_ids": ["slot-002", "slot-001", "slot-002"],
        "results_since": timezone.now() - timedelta(hours=2),
        "results_until": None,
        "lifetime_hours": 24,
        "actor": "olga",
    }
    return services.create_gallery(**{**values, **overrides})


def field_errors(**overrides: Any) -> dict[str, Any]:
    with pytest.raises(Unprocessable) as refused:
        new_gallery(**overrides)
    assert refused.value.status == 422 and refused.value.code == "validation_failed"
    return dict(refused.value.details)


def shown(gallery: Gallery, **options: Any) -> list[uuid.UUID]:
    return [photo.job_id for photo in selectors.gallery_page(gallery, **options).photos]


# --- creating ------------------------------------------------------------------------------------
def test_a_new_gallery_lives_for_its_lifetime_from_now_and_is_audited() -> None:
    before = timezone.now()

    gallery = new_gallery(title="  Anna & Ben's wedding  ", lifetime_hours=6)

    stored = Gallery.objects.get(id=gallery.id)
    assert stored.id.version == 4
    assert stored.title == "Anna & Ben's wedding"
    assert stored.slot_ids == ["slot-001", "slot-002"]  # each once, in order
    assert stored.results_until is None
    assert stored.created_by == "olga" and stored.revoked_at is None
    assert before <= stored.created_at <= timezone.now()
    assert stored.expires_at == stored.created_at + timedelta(hours=6)
    assert stored.state(timezone.now()) is GalleryState.ACTIVE
    [event] = AuditEvent.objects.filter(kind=AuditEvent.Kind.GALLERY_CREATED)
    assert event.actor == "olga"
    assert event.details["gallery_id"] == str(gallery.id)
    assert event.details["slot_ids"] == ["slot-001", "slot-002"]
    assert event.details["expires_at"] == stored.expires_at.isoformat()


def test_no_slots_chosen_means_every_slot() -> None:
    assert new_gallery(slot_ids=[]).slot_ids == []


def test_the_public_address_comes_from_the_public_base_url() -> None:
    gallery = new_gallery()

    assert services.gallery_public_url(gallery.id) == f"https://booth.example/g/{gallery.id}"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"title": ""}, "title", "Give the gallery a title."),
        ({"title": "   "}, "title", "Give the gallery a title."),
        ({"title": "x" * 101}, "title", "At most 100 characters (this one has 101)."),
        ({"title": "bad\x00title"}, "title", "Must not contain control characters."),
        ({"slot_ids": ["slot-001", "slot-099"]}, "slot_ids", "Unknown slot: slot-099."),
        ({"slot_ids": ["nope\x00", "y" * 500]}, "slot_ids", "Unknown slots:"),
        ({"lifetime_hours": 0}, "lifetime_hours", "Between 1 and 168 hours (7 days)."),
        ({"lifetime_hours": 169}, "lifetime_hours", "Between 1 and 168 hours (7 days)."),
        ({"lifetime_hours": True}, "lifetime_hours", "Between 1 and 168 hours (7 days)."),
    ],
)
def test_invalid_fields_are_refused_with_a_message_each(
    overrides: dict[str, Any], field: str, message: str
) -> None:
    errors = field_errors(**overrides)

    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    assert not Gallery.objects.exists()
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.GALLERY_CREATED).exists()


def test_the_range_must_end_after_it_starts() -> None:
    since = timezone.now()

    for until in (since, since - timedelta(minutes=1)):
        errors = field_errors(results_since=since, results_until=until)
        assert errors == {"results_until": ["Must be later than the start of the range."]}
    assert not Gallery.objects.exists()


def test_times_without_a_time_zone_are_refused() -> None:
    naive = timezone.now().replace(tzinfo=None)

    assert field_errors(results_since=naive) == {"results_since": ["Needs a time zone."]}


def test_every_invalid_field_is_reported_at_once() -> None:
    errors = field_errors(title="", slot_ids=["slot-404"], lifetime_hours=500)

    assert set(errors) == {"title", "slot_ids", "lifetime_hours"}


def test_the_database_refuses_a_range_that_ends_before_it_starts() -> None:
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Gallery.objects.create(
            title="x",
            results_since=now,
            results_until=now - timedelta(seconds=1),
            expires_at=now + timedelta(hours=1),
            created_by="olga",
            created_at=now,
        )


# --- revoking and resolving ----------------------------------------------------------------------
def test_revoking_ends_the_gallery_once_and_is_audited_once() -> None:
    gallery = new_gallery()

    revoked = services.revoke_gallery(gallery_id=gallery.id, actor="piet")
    again = services.revoke_gallery(gallery_id=str(gallery.id), actor="piet")

    assert revoked.revoked_at is not None
    assert again.revoked_at == revoked.revoked_at
    assert revoked.state(timezone.now()) is GalleryState.REVOKED
    [event] = AuditEvent.objects.filter(kind=AuditEvent.Kind.GALLERY_REVOKED)
    assert event.actor == "piet" and event.details == {"gallery_id": str(gallery.id)}
    with pytest.raises(Gone):
        services.public_gallery(gallery.id)


@pytest.mark.parametrize("gallery_id", [uuid.uuid4(), "not-a-uuid", ""])
def test_unknown_or_malformed_ids_are_not_found(gallery_id: Any) -> None:
    with pytest.raises(NotFound):
        services.revoke_gallery(gallery_id=gallery_id, actor="olga")
    with pytest.raises(NotFound):
        services.public_gallery(gallery_id)
    with pytest.raises(NotFound):
        services.get_gallery(gallery_id)
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.GALLERY_REVOKED).exists()


def test_guests_get_an_active_gallery_and_gone_once_it_expired() -> None:
    active = a_gallery(expires_in=timedelta(minutes=5))
    expired = a_gallery(expires_in=-timedelta(seconds=1))

    assert services.public_gallery(active.id) == active
    with pytest.raises(Gone) as gone:
        services.public_gallery(expired.id)
    assert gone.value.status == 410 and gone.value.code == "gallery_expired"
    assert expired.state(timezone.now()) is GalleryState.EXPIRED
    # The moment it expires, not a second later.
    with pytest.raises(Gone):
        services.public_gallery(active.id, now=active.expires_at)


def test_a_revoked_gallery_says_revoked_even_after_it_expired() -> None:
    gallery = a_gallery(expires_in=-timedelta(hours=1), revoked=True)

    assert gallery.state(timezone.now()) is GalleryState.REVOKED


def test_galleries_are_listed_newest_first() -> None:
    first = new_gallery(title="Friday")
    second = new_gallery(title="Saturday")

    assert services.list_galleries() == [second, first]


# --- which photos --------------------------------------------------------------------------------
def test_the_gallery_shows_exactly_the_successful_results_of_its_slots_and_range() -> None:
    before_range = event_photo("slot-001")
    gallery = a_gallery(slot_ids=["slot-001", "slot-002"], since=timezone.now())
    first = event_photo("slot-001")
    other_chosen_slot = event_photo("slot-002")
    event_photo("slot-003")  # not chosen
    failed_photo("slot-001")
    expired = event_photo("slot-001")
    expire_result(expired)
    purged = event_photo("slot-002")
    Job.objects.filter(id=purged.id).update(result_path="")  # the cleanup removed its file
    dashboard_run_photo("slot-001")  # the operator trying the slot
    plain_metadata = event_photo("slot-002", metadata={})
    latest = event_photo("slot-001")
    queued_photo("slot-001")  # not finished yet

    assert shown(gallery) == [latest.id, plain_metadata.id, other_chosen_slot.id, first.id]
    assert before_range.id not in shown(gallery)


def test_an_open_gallery_shows_new_photos_and_a_closed_one_does_not() -> None:
    open_gallery = a_gallery(since=timezone.now())
    during = event_photo("slot-004")
    closed_gallery = a_gallery(since=open_gallery.results_since, until=timezone.now())
    after = event_photo("slot-004")

    assert shown(open_gallery) == [after.id, during.id]  # every slot: none chosen
    assert shown(closed_gallery) == [during.id]


def test_a_photo_whose_result_expired_leaves_the_gallery() -> None:
    gallery = a_gallery()
    photo = event_photo()
    assert shown(gallery) == [photo.id]

    expire_result(photo)

    assert shown(gallery) == []


def test_pages_hold_page_size_photos_newest_first(django_assert_num_queries: Any) -> None:
    gallery = a_gallery()
    photos = [event_photo() for _ in range(5)]
    newest_first = [photo.id for photo in reversed(photos)]

    with django_assert_num_queries(1):
        first = selectors.gallery_page(gallery, page=1, page_size=2)
    second = selectors.gallery_page(gallery, page=2, page_size=2)
    third = selectors.gallery_page(gallery, page=3, page_size=2)
    beyond = selectors.gallery_page(gallery, page=4, page_size=2)

    assert [p.job_id for p in first.photos] == newest_first[:2]
    assert (first.has_previous, first.has_next) == (False, True)
    assert [p.job_id for p in second.photos] == newest_first[2:4]
    assert (second.has_previous, second.has_next) == (True, True)
    assert [p.job_id for p in third.photos] == newest_first[4:]
    assert (third.has_previous, third.has_next) == (True, False)
    assert beyond.photos == [] and beyond.has_previous and not beyond.has_next
    assert [p.taken_at for p in first.photos] == [photos[4].created_at, photos[3].created_at]


def test_a_full_page_is_48_photos() -> None:
    gallery = a_gallery()
    for _ in range(selectors.GALLERY_PAGE_SIZE + 1):
        event_photo()

    first = selectors.gallery_page(gallery)
    second = selectors.gallery_page(gallery, page=2)

    assert len(first.photos) == 48 and first.has_next
    assert len(second.photos) == 1 and not second.has_next


@pytest.mark.parametrize(("asked", "given"), [(0, 1), (-3, 1), (10**9, selectors.MAX_PAGE)])
def test_page_numbers_are_kept_within_bounds(asked: int, given: int) -> None:
    assert selectors.gallery_page(a_gallery(), page=asked).page == given
