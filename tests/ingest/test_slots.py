"""The 15 static slots, their configuration and the templates bound to them."""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db.models import ProtectedError
from django.utils import timezone

from ingest.models import Slot, TemplateBinding, TemplateMedia
from ingest.services import IngestUpload, accept_photo, register_template, update_slot
from jobqueue.models import Job
from photobooth.errors import BadRequest
from providers.base import SettingsInvalid
from tests.support.images import make_frame_png, make_photo


def slot_row(slot_id: str) -> dict[str, Any]:
    """Everything stored about a slot, to compare before and after a refused change."""
    return dict(Slot.objects.filter(id=slot_id).values().get())


def stored_files(root: Path) -> list[str]:
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]


def frame_template() -> TemplateMedia:
    return register_template(stream=io.BytesIO(make_frame_png()), original_name="frame.png")


def queue_photo(slot_id: str, password: str) -> Job:
    photo = make_photo()
    return accept_photo(
        IngestUpload(
            slot_id=slot_id,
            password=password,
            photo=io.BytesIO(photo),
            photo_size=len(photo),
            photo_name="IMG_0001.JPG",
            fields={},
            received_at=timezone.now(),
        ),
        max_upload_bytes=15 * 1024 * 1024,
    )


def test_a_fresh_install_has_exactly_the_15_static_slots_and_only_the_first_is_active(
    db: None,
) -> None:
    slots = list(Slot.objects.order_by("id"))

    assert [slot.id for slot in slots] == [f"slot-{n:03d}" for n in range(1, 16)]
    first = slots[0]
    assert first.is_active
    assert (first.provider_id, first.operation_id) == ("local", "photo_look")
    assert [slot.id for slot in slots if slot.is_active] == ["slot-001"]


def test_valid_slot_settings_are_saved_with_defaults_filled_in(db: None) -> None:
    before: datetime = Slot.objects.get(id="slot-004").updated_at

    update_slot(
        slot_id="slot-004",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "sepia"},
        is_active=True,
        name="Sepia corner",
    )

    slot = Slot.objects.get(id="slot-004")
    assert slot.settings_json == {"look": "sepia", "jpeg_quality": 90}
    assert slot.is_active
    assert slot.name == "Sepia corner"
    assert slot.updated_at > before


def test_invalid_settings_are_refused_per_field_and_the_slot_is_unchanged(db: None) -> None:
    before = slot_row("slot-001")

    with pytest.raises(SettingsInvalid) as refused:
        update_slot(
            slot_id="slot-001",
            provider_id="local",
            operation_id="photo_look",
            settings={"look": "neon", "jpeg_quality": 10, "sharpen": True},
            is_active=False,
            name="Broken",
        )

    assert set(refused.value.errors) == {"look", "jpeg_quality", "sharpen"}
    assert all(refused.value.errors[key] for key in refused.value.errors)
    assert slot_row("slot-001") == before


@pytest.mark.parametrize(
    ("provider_id", "operation_id", "field"),
    [("midjourney", "photo_look", "provider_id"), ("local", "cartoonify", "operation_id")],
)
def test_unknown_provider_or_operation_is_refused_and_the_slot_is_unchanged(
    db: None, provider_id: str, operation_id: str, field: str
) -> None:
    before = slot_row("slot-001")

    with pytest.raises(SettingsInvalid) as refused:
        update_slot(
            slot_id="slot-001",
            provider_id=provider_id,
            operation_id=operation_id,
            settings={},
            is_active=True,
        )

    assert list(refused.value.errors) == [field]
    assert slot_row("slot-001") == before


def test_frame_overlay_slot_binds_its_template(db: None) -> None:
    template = frame_template()

    update_slot(
        slot_id="slot-002",
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(template.id)},
        is_active=True,
    )

    binding = TemplateBinding.objects.get(slot_id="slot-002")
    assert binding.setting_key == "frame_media_id"
    assert binding.template == template
    assert Slot.objects.get(id="slot-002").settings_json == {
        "frame_media_id": str(template.id),
        "fit": "stretch",
        "look": "none",
        "jpeg_quality": 90,
    }


@pytest.mark.parametrize("frame_media_id", ["not-a-uuid", "6f1c1c2e-8f7e-4a8e-9a55-0c6a4f0f7b11"])
def test_frame_overlay_with_an_unknown_template_is_refused(db: None, frame_media_id: str) -> None:
    before = slot_row("slot-002")

    with pytest.raises(SettingsInvalid) as refused:
        update_slot(
            slot_id="slot-002",
            provider_id="local",
            operation_id="frame_overlay",
            settings={"frame_media_id": frame_media_id},
            is_active=True,
        )

    assert list(refused.value.errors) == ["frame_media_id"]
    assert slot_row("slot-002") == before
    assert not TemplateBinding.objects.exists()


def test_switching_a_slot_to_another_operation_releases_its_template(db: None) -> None:
    template = frame_template()
    update_slot(
        slot_id="slot-002",
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(template.id)},
        is_active=True,
    )

    update_slot(
        slot_id="slot-002",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "vivid"},
        is_active=True,
    )

    assert not TemplateBinding.objects.filter(slot_id="slot-002").exists()
    # Released, the template stays (it is never deleted automatically) and may now be deleted.
    assert TemplateMedia.objects.filter(id=template.id).exists()
    template.delete()


def test_a_template_bound_to_a_slot_cannot_be_deleted(db: None) -> None:
    template = frame_template()
    update_slot(
        slot_id="slot-003",
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(template.id)},
        is_active=True,
    )

    with pytest.raises(ProtectedError):
        template.delete()

    assert TemplateMedia.objects.filter(id=template.id).exists()
    assert TemplateBinding.objects.filter(slot_id="slot-003", template=template).exists()


def test_a_queued_job_keeps_the_slot_configuration_it_was_queued_with(
    ingest_password: str,
) -> None:
    template = frame_template()
    update_slot(
        slot_id="slot-001",
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(template.id), "look": "sepia"},
        is_active=True,
    )
    job = queue_photo("slot-001", ingest_password)
    snapshot = {
        "provider_id": job.provider_id,
        "operation_id": job.operation_id,
        "settings_snapshot": job.settings_snapshot,
        "template_refs": job.template_refs,
    }
    assert snapshot["provider_id"] == "local"
    assert snapshot["template_refs"]["frame_media_id"]["id"] == str(template.id)

    update_slot(
        slot_id="slot-001",
        provider_id="testing",
        operation_id="sleep",
        settings={"seconds": 1},
        is_active=True,
    )

    job.refresh_from_db()
    assert {
        "provider_id": job.provider_id,
        "operation_id": job.operation_id,
        "settings_snapshot": job.settings_snapshot,
        "template_refs": job.template_refs,
    } == snapshot
    assert job.settings_snapshot == {
        "frame_media_id": str(template.id),
        "fit": "stretch",
        "look": "sepia",
        "jpeg_quality": 90,
    }


def test_registering_a_template_that_is_not_an_image_is_refused(db: None, media_root: Path) -> None:
    with pytest.raises(BadRequest) as refused:
        register_template(stream=io.BytesIO(b"%PDF-1.7 not an image"), original_name="frame.png")

    assert refused.value.code == "not_an_image"
    assert not TemplateMedia.objects.exists()
    assert stored_files(media_root) == []


def test_a_registered_template_keeps_its_image_facts(db: None) -> None:
    template = frame_template()

    stored = TemplateMedia.objects.get(id=template.id)
    assert (stored.mime, stored.width, stored.height) == ("image/png", 400, 300)
    assert stored.size == len(make_frame_png())
    assert stored.original_name == "frame.png"
