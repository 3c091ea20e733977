"""The slot page through Django's test client: configuration form, templates, ingest URL, test
runs through the real queue and worker, recent results and statistics."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from accounts.models import SCOPES, AuditEvent
from adminui.forms import SETTING_PREFIX, setting_fields
from ingest.models import IngestSettings, Slot, TemplateBinding, TemplateMedia
from ingest.selectors import slot_etag, update_slot_if_current
from ingest.services import job_configuration, register_template
from jobqueue import files, services
from jobqueue.models import FailureReason, Job
from jobqueue.stats import slot_stats
from jobqueue.worker import process_job
from tests.adminui.test_pages import logged_in
from tests.api.conftest import make_admin
from tests.support.images import make_frame_png, make_photo

pytestmark = pytest.mark.django_db

BASE_URL = "https://booth.example"
SLOT = "slot-001"
PAGE = f"/dashboard/slots/{SLOT}"
WRITER = ("slots:read", "slots:write", "media:write")


@pytest.fixture(autouse=True)
def fast_setup(settings: Any) -> None:
    """Public links on a known origin; admins' passwords hashed cheaply (tests only)."""
    settings.PUBLIC_BASE_URL = BASE_URL
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- helpers -------------------------------------------------------------------------------------
def text(response: Any) -> str:
    return unescape(response.content.decode())


def form_data(slot_id: str = SLOT, **overrides: Any) -> dict[str, Any]:
    """What the configuration form posts for the slot as it is saved now (Save pressed)."""
    slot = Slot.objects.get(id=slot_id)
    data: dict[str, Any] = {
        "etag": slot_etag(slot),
        "rendered_provider": slot.provider_id,
        "rendered_operation": slot.operation_id,
        "name": slot.name,
        "provider": slot.provider_id,
        "operation": slot.operation_id,
        "action": "save",
    }
    if slot.is_active:
        data["is_active"] = "on"
    for key, value in slot.settings_json.items():
        if value is True:
            data[SETTING_PREFIX + key] = "on"
        elif value is not False:
            data[SETTING_PREFIX + key] = str(value)
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def configure(client: Client, data: dict[str, Any], slot_id: str = SLOT) -> Any:
    return client.post(f"/dashboard/slots/{slot_id}/configure", data)


def snapshot(slot_id: str = SLOT) -> dict[str, Any]:
    return dict(
        Slot.objects.filter(id=slot_id)
        .values("name", "provider_id", "operation_id", "settings_json", "is_active", "updated_at")
        .get()
    )


def a_template(name: str = "frame.png") -> TemplateMedia:
    return register_template(stream=io.BytesIO(make_frame_png()), original_name=name)


def upload(name: str = "frame.png", data: bytes | None = None, mime: str = "image/png") -> Any:
    return SimpleUploadedFile(name, make_frame_png() if data is None else data, content_type=mime)


def photo_upload(data: bytes | None = None, name: str = "guest.jpg") -> Any:
    return SimpleUploadedFile(name, data or make_photo(width=96, height=72), "image/jpeg")


def set_frame_overlay(slot_id: str = SLOT, *, active: bool = True) -> TemplateMedia:
    """Put the slot on local/frame_overlay with a bound frame."""
    template = a_template()
    update_slot_if_current(
        slot_id=slot_id,
        if_match=slot_etag(Slot.objects.get(id=slot_id)),
        updated_at=None,
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(template.id)},
        is_active=active,
        actor="setup",
    )
    return template


def finished_job(slot_id: str = SLOT, *, succeed: bool = True) -> Job:
    stored = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=64)
    )
    job = services.enqueue_job(
        configuration=job_configuration(Slot.objects.get(id=slot_id)),
        payload=services.StoredPayload(
            path=stored.path, mime="image/jpeg", size=stored.size, sha256=stored.sha256
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=72),
    )
    [taken] = services.acquire_jobs(worker_id="tests", limit=1)
    assert taken.lease_token is not None
    if succeed:
        result = files.store_bytes(
            kind="results", stem=str(job.id), mime="image/jpeg", data=make_photo(width=48)
        )
        assert services.finalize_success(
            job=taken, lease_token=taken.lease_token, result=result, result_mime="image/jpeg"
        )
    else:
        services.finalize_failure(
            job=taken, lease_token=taken.lease_token, reason=FailureReason.PROVIDER_ERROR
        )
    return Job.objects.get(id=job.id)


def run_worker_once() -> None:
    """What a worker process does for each queued job, here in the test process."""
    for job in services.acquire_jobs(worker_id="in-process", limit=10):
        process_job(job)


def squash(html: str) -> str:
    """Text without tags, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- access --------------------------------------------------------------------------------------
def test_the_page_needs_a_login() -> None:
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/dashboard/login?next={PAGE}")


def test_the_page_needs_slots_read() -> None:
    response = logged_in("stats:read").get(PAGE)

    assert response.status_code == 403
    assert "slots:read" in text(response)


@pytest.mark.parametrize("slot_id", ["slot-999", "x" * 40])
def test_an_unknown_slot_is_a_404_page(slot_id: str) -> None:
    response = logged_in(*SCOPES).get(f"/dashboard/slots/{slot_id}")

    assert response.status_code == 404
    assert "Not found" in text(response)


def test_a_reader_sees_the_configuration_but_cannot_change_anything() -> None:
    client = logged_in("slots:read")
    before = snapshot()

    page = text(client.get(PAGE))

    assert '<fieldset class="plain" disabled>' in page
    assert 'id="save-slot"' not in page
    assert 'id="try-form"' not in page and 'id="reset-stats"' not in page
    assert "needs the slots:write permission" in squash(page)
    denied = [
        configure(client, form_data(name="Hacked")),
        client.post(f"{PAGE}/reset-stats"),
        client.post(f"{PAGE}/try", {"photo": photo_upload()}),
    ]
    assert [response.status_code for response in denied] == [403, 403, 403]
    assert snapshot() == before
    assert not Job.objects.exists()


def test_templates_need_media_write() -> None:
    set_frame_overlay()
    client = logged_in("slots:read", "slots:write")
    bound = TemplateBinding.objects.get(slot_id=SLOT)

    page = text(client.get(PAGE))
    upload_response = client.post(
        f"{PAGE}/templates/frame_media_id/upload", {"file": upload("other.png")}
    )
    remove_response = client.post(f"{PAGE}/templates/frame_media_id/remove", {"force": "1"})

    assert "needs the media:write permission" in squash(page)
    assert 'id="template-frame_media_id-upload-form"' not in page
    assert (upload_response.status_code, remove_response.status_code) == (403, 403)
    assert TemplateBinding.objects.get(slot_id=SLOT).template_id == bound.template_id


@pytest.mark.parametrize(
    "route", ["configure", "reset-stats", "try", "templates/frame_media_id/upload"]
)
def test_every_change_needs_the_csrf_token(route: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_admin("olga", SCOPES))
    before = snapshot()

    response = client.post(f"{PAGE}/{route}", form_data(name="Changed"))

    assert response.status_code == 403
    assert snapshot() == before
    assert not Job.objects.exists()


def test_change_routes_opened_with_get_lead_back_to_the_page() -> None:
    client = logged_in(*SCOPES)

    for route in ("configure", "reset-stats", "try"):
        response = client.get(f"{PAGE}/{route}")
        assert response.status_code == 302
        assert response["Location"].startswith(PAGE)


# --- what the page shows -------------------------------------------------------------------------
def test_the_page_shows_the_saved_configuration() -> None:
    Slot.objects.filter(id=SLOT).update(
        name="Wedding booth", settings_json={"look": "sepia", "jpeg_quality": 80}
    )

    page = text(logged_in("slots:read").get(PAGE))

    assert "<h1" in page and "Wedding booth" in page
    assert '<option value="local" selected>Local (offline)</option>' in page
    assert '<option value="photo_look" selected>Photo look</option>' in page
    assert '<option value="sepia" selected>sepia</option>' in page
    assert re.search(r'name="setting-jpeg_quality" value="80"[^>]*min="50" max="95"', page)
    assert 'name="is_active" id="id_is_active" checked' in page


def test_the_ingest_url_comes_from_the_public_base_url_never_the_request() -> None:
    client = logged_in("slots:read")

    page = text(client.get(PAGE, HTTP_HOST="evil.example"))

    assert f'<code id="ingest-url">{BASE_URL}/ingest/{SLOT}</code>' in page
    assert 'data-copy="ingest-url"' in page
    assert "evil.example" not in page
    assert "<code>fileToUpload</code>" in page and "<code>password</code>" in page


def test_the_form_has_a_field_for_every_kind_of_setting() -> None:
    template = a_template("logo.png")
    declaration = [
        {"name": "model", "kind": "string", "label": "Model", "required": False,
         "default": "m1", "choices": [], "minimum": None, "maximum": None, "help_text": ""},
        {"name": "prompt", "kind": "text", "label": "Prompt", "required": True, "default": None,
         "choices": [], "minimum": None, "maximum": None, "help_text": "What to do."},
        {"name": "look", "kind": "choice", "label": "Look", "required": False, "default": None,
         "choices": ["a", "b"], "minimum": None, "maximum": None, "help_text": ""},
        {"name": "strength", "kind": "integer", "label": "Strength", "required": False,
         "default": None, "choices": [], "minimum": 0, "maximum": 80, "help_text": ""},
        {"name": "scale", "kind": "number", "label": "Scale", "required": False,
         "default": None, "choices": [], "minimum": 0.1, "maximum": 20, "help_text": ""},
        {"name": "restore", "kind": "boolean", "label": "Restore", "required": False,
         "default": True, "choices": [], "minimum": None, "maximum": None, "help_text": ""},
        {"name": "style", "kind": "template", "label": "Style", "required": True,
         "default": None, "choices": [], "minimum": None, "maximum": None, "help_text": ""},
    ]  # fmt: skip
    from adminui.forms import template_options

    fields = setting_fields(declaration, templates=template_options())
    html = {name: str(field.widget.render(name, None)) for name, field in fields.items()}

    assert html["setting-model"].startswith('<input type="text"')
    assert html["setting-prompt"].startswith("<textarea") and "required" in html["setting-prompt"]
    assert '<option value="" selected>— none —</option>' in html["setting-look"]
    assert 'step="1"' in html["setting-strength"] and 'min="0" max="80"' in html["setting-strength"]
    assert 'step="any"' in html["setting-scale"] and 'min="0.1" max="20"' in html["setting-scale"]
    assert 'type="checkbox"' in html["setting-restore"]
    assert f'<option value="{template.id}">logo.png (400×300)</option>' in html["setting-style"]
    assert 'type="file"' in html["setting-style-upload"]


def test_changing_provider_and_operation_shows_the_new_settings_without_saving() -> None:
    client = logged_in(*WRITER)
    before = snapshot()
    data = form_data(provider="turbotext", operation="image_edit", action="change", name="Renamed")

    response = configure(client, data)
    page = text(response)

    assert response.status_code == 200
    assert snapshot() == before
    assert "Nothing is saved until you press Save" in page
    assert "Settings for Turbotext · Edit the photo with a prompt" in page
    assert re.search(r'<textarea name="setting-prompt"[^>]*required', page)
    assert re.search(r'name="setting-strength"[^>]*step="1"[^>]*min="0" max="80"', page)
    assert re.search(r'name="setting-scale"[^>]*step="any"[^>]*min="0.1" max="20"', page)
    assert "setting-look" not in page  # the previous operation's settings are gone
    assert 'value="Renamed"' in page  # what was typed stays
    assert f'name="etag" value="{slot_etag(Slot.objects.get(id=SLOT))}"' in page
    assert 'name="rendered_provider" value="turbotext"' in page


def test_settings_the_new_operation_shares_keep_their_typed_values() -> None:
    Slot.objects.filter(id=SLOT).update(
        provider_id="gemini", operation_id="image_edit", settings_json={"prompt": "A cat"}
    )
    client = logged_in(*WRITER)
    data = form_data(operation="style_transfer", action="change", **{"setting-prompt": "A dog"})

    page = text(configure(client, data))

    assert "Settings for Google Gemini · Style transfer" in page
    assert re.search(r'<textarea name="setting-prompt"[^>]*>\s*A dog</textarea>', page)
    assert "Style reference" in page and 'name="setting-style_media_id-upload"' in page


def test_saving_after_choosing_another_operation_without_js_shows_it_first() -> None:
    client = logged_in(*WRITER)
    before = snapshot()

    response = configure(client, form_data(operation="frame_overlay"))  # Save pressed

    assert response.status_code == 200
    assert snapshot() == before
    assert "Settings for Local (offline) · Frame or logo overlay" in text(response)


def test_an_unknown_provider_choice_falls_back_to_an_installed_one() -> None:
    client = logged_in(*WRITER)

    response = configure(client, form_data(provider="nope", operation="nope", action="change"))

    assert response.status_code == 200
    assert "Settings for Local (offline) · Photo look" in text(response)


# --- saving --------------------------------------------------------------------------------------
def test_saving_stores_the_configuration_and_audits_it() -> None:
    client = logged_in(*WRITER)
    data = form_data(name="Garden party", **{"setting-look": "sepia", "setting-jpeg_quality": "85"})

    response = configure(client, data)

    assert response.status_code == 302 and response["Location"] == PAGE
    slot = Slot.objects.get(id=SLOT)
    assert slot.name == "Garden party"
    assert slot.settings_json == {"look": "sepia", "jpeg_quality": 85}
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.SLOT_CHANGED)
    assert event.actor == "olga"
    assert event.details["setting_keys"] == ["jpeg_quality", "look"]
    page = client.get(PAGE)
    assert "Saved “Garden party”. The slot is active" in messages_of(page)[0]


def test_saving_can_switch_the_slot_off_and_on() -> None:
    client = logged_in(*WRITER)

    configure(client, form_data(is_active=None))
    assert not Slot.objects.get(id=SLOT).is_active

    configure(client, form_data(is_active="on"))
    assert Slot.objects.get(id=SLOT).is_active


@pytest.mark.parametrize("flag", ["qr_stamp", "one_at_a_time"])
def test_saving_can_turn_a_slot_option_on_and_off(flag: str) -> None:
    client = logged_in(*WRITER)

    configure(client, form_data(**{flag: "on"}))
    assert getattr(Slot.objects.get(id=SLOT), flag)
    box = re.search(rf'<input[^>]*id="id_{flag}"[^>]*>', client.get(PAGE).content.decode())
    assert box is not None and "checked" in box.group(0)

    configure(client, form_data())
    assert not getattr(Slot.objects.get(id=SLOT), flag)


def test_saving_another_operation_with_an_uploaded_template_chosen() -> None:
    template = a_template("gold frame.png")
    client = logged_in(*WRITER)
    rendered = text(configure(client, form_data(operation="frame_overlay", action="change")))
    assert f'<option value="{template.id}" data-preview-url="/dashboard/templates/' in rendered
    data = form_data(
        operation="frame_overlay",
        rendered_operation="frame_overlay",
        **{
            "setting-jpeg_quality": "90",
            "setting-frame_media_id": str(template.id),
            "setting-fit": "cover",
            "setting-look": "none",
        },
    )

    response = configure(client, data)

    assert response.status_code == 302
    slot = Slot.objects.get(id=SLOT)
    assert (slot.operation_id, slot.settings_json["frame_media_id"]) == (
        "frame_overlay",
        str(template.id),
    )
    assert TemplateBinding.objects.get(slot=slot, setting_key="frame_media_id").template == template
    page = text(client.get(PAGE))
    assert f'src="/dashboard/templates/{template.id}/file" alt="Preview of gold frame.png' in page


def test_saving_with_a_new_template_file_uploads_and_binds_it() -> None:
    client = logged_in(*WRITER)
    data = form_data(
        operation="frame_overlay",
        rendered_operation="frame_overlay",
        **{"setting-look": "none", "setting-frame_media_id-upload": upload("new frame.png")},
    )

    response = configure(client, data)

    assert response.status_code == 302
    template = TemplateMedia.objects.get()
    assert template.original_name == "new frame.png"
    assert Slot.objects.get(id=SLOT).settings_json["frame_media_id"] == str(template.id)
    assert TemplateBinding.objects.get(slot_id=SLOT).template == template


def test_invalid_settings_are_shown_next_to_their_fields_and_nothing_is_saved() -> None:
    client = logged_in(*WRITER)
    before = snapshot()

    response = configure(client, form_data(**{"setting-jpeg_quality": "200"}))
    page = text(response)

    assert response.status_code == 422
    assert snapshot() == before
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.SLOT_CHANGED).exists()
    assert re.search(r'name="setting-jpeg_quality" value="200"[^>]*aria-invalid="true"', page)
    assert '<ul class="errorlist" id="id_setting-jpeg_quality_error"><li>must be at most 95' in page
    assert "Not saved: please correct the fields marked below." in page


@pytest.mark.parametrize(
    ("value", "message"), [("lots", "must be a number"), ("7.5", "must be a whole number")]
)
def test_a_number_that_is_not_one_is_refused_by_the_provider(value: str, message: str) -> None:
    client = logged_in(*WRITER)

    response = configure(client, form_data(**{"setting-jpeg_quality": value}))

    assert response.status_code == 422
    assert message in text(response)


def test_a_missing_required_template_is_refused_and_nothing_saved() -> None:
    client = logged_in(*WRITER)
    before = snapshot()
    data = form_data(
        operation="frame_overlay",
        rendered_operation="frame_overlay",
        **{"setting-look": "none", "setting-frame_media_id": ""},
    )

    response = configure(client, data)

    assert response.status_code == 422
    assert snapshot() == before
    page = text(response)
    assert '<ul class="errorlist" id="id_setting-frame_media_id_error">' in page
    assert "this setting is required" in page


def test_an_upload_with_invalid_settings_keeps_no_template() -> None:
    client = logged_in(*WRITER)
    data = form_data(
        operation="frame_overlay",
        rendered_operation="frame_overlay",
        **{
            "setting-look": "none",
            "setting-jpeg_quality": "10",
            "setting-frame_media_id-upload": upload(),
        },
    )

    response = configure(client, data)

    assert response.status_code == 422
    assert not TemplateMedia.objects.exists()
    assert files_under("templates") == []
    assert "must be at least 50" in text(response)


def test_a_template_upload_that_is_not_an_image_is_an_error_on_its_field() -> None:
    client = logged_in(*WRITER)
    before = snapshot()
    data = form_data(
        operation="frame_overlay",
        rendered_operation="frame_overlay",
        **{
            "setting-look": "none",
            "setting-frame_media_id-upload": upload("notes.png", b"just text", "image/png"),
        },
    )

    response = configure(client, data)

    assert response.status_code == 422
    assert snapshot() == before
    assert not TemplateMedia.objects.exists()
    assert "Upload a JPEG, PNG or WebP image." in text(response)


def files_under(kind: str) -> list[str]:
    return list(files.walk(kind))


def test_an_empty_name_is_refused() -> None:
    client = logged_in(*WRITER)
    before = snapshot()

    response = configure(client, form_data(name=""))

    assert response.status_code == 422
    assert snapshot() == before
    assert '<ul class="errorlist" id="id_name_error"><li>This field is required.' in text(response)


def test_a_concurrent_edit_is_reported_and_nothing_is_saved() -> None:
    client = logged_in(*WRITER)
    stale = form_data(name="Mine", **{"setting-look": "vivid"})
    # Someone else saves the slot after the form was rendered.
    update_slot_if_current(
        slot_id=SLOT,
        if_match=stale["etag"],
        updated_at=None,
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "sepia"},
        is_active=True,
        name="Theirs",
        actor="someone",
    )
    theirs = snapshot()

    response = configure(client, stale)
    page = text(response)

    assert response.status_code == 409
    assert snapshot() == theirs
    assert "someone else changed this slot since you opened it" in page
    assert 'id="conflict-error"' in page and f'href="{PAGE}" id="reload-slot"' in page
    assert 'value="Mine"' in page  # the user's entries are not lost


def test_a_form_without_its_version_is_not_saved() -> None:
    client = logged_in(*WRITER)
    before = snapshot()

    response = configure(client, form_data(etag="", name="No version"))

    assert response.status_code == 409
    assert snapshot() == before


# --- templates -----------------------------------------------------------------------------------
def test_a_template_preview_is_served_to_logged_in_users_only() -> None:
    template = a_template()
    url = f"/dashboard/templates/{template.id}/file"

    anonymous = Client().get(url)
    response = logged_in("slots:read").get(url)

    assert anonymous.status_code == 302
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == make_frame_png()  # type: ignore[attr-defined]


def test_an_unknown_template_preview_is_404() -> None:
    response = logged_in("slots:read").get(f"/dashboard/templates/{uuid.uuid4()}/file")

    assert response.status_code == 404


def test_the_templates_section_shows_each_template_setting_with_its_preview() -> None:
    template = set_frame_overlay()

    page = text(logged_in(*WRITER).get(PAGE))

    assert 'id="templates"' in page
    assert "Frame template (PNG with transparency)" in page
    assert f'<img src="/dashboard/templates/{template.id}/file" alt="Current template' in page
    assert 'id="template-frame_media_id-file"' in page
    assert 'id="template-frame_media_id-force"' in page  # required: removal must be confirmed


def test_uploading_a_template_replaces_the_bound_one() -> None:
    old = set_frame_overlay()
    client = logged_in(*WRITER)

    response = client.post(
        f"{PAGE}/templates/frame_media_id/upload", {"file": upload("winter.png")}, follow=True
    )

    new = TemplateMedia.objects.get(original_name="winter.png")
    assert TemplateBinding.objects.get(slot_id=SLOT).template == new
    assert Slot.objects.get(id=SLOT).settings_json["frame_media_id"] == str(new.id)
    assert TemplateMedia.objects.filter(id=old.id).exists()  # kept in the library
    assert "Template uploaded and set as" in messages_of(response)[0]
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.TEMPLATE_CHANGED, actor="olga", details__action="uploaded"
    ).exists()


def test_an_upload_that_is_not_an_image_changes_nothing() -> None:
    old = set_frame_overlay()
    client = logged_in(*WRITER)

    response = client.post(
        f"{PAGE}/templates/frame_media_id/upload",
        {"file": upload("x.png", b"GIF89a not really", "image/png")},
        follow=True,
    )

    assert TemplateBinding.objects.get(slot_id=SLOT).template == old
    assert TemplateMedia.objects.count() == 1
    assert "Not uploaded: Upload a JPEG, PNG or WebP image." in messages_of(response)[0]


def test_an_upload_without_a_file_is_refused() -> None:
    set_frame_overlay()
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/templates/frame_media_id/upload", {}, follow=True)

    assert "Not uploaded: choose an image" in messages_of(response)[0]
    assert TemplateMedia.objects.count() == 1


def test_uploading_for_a_setting_the_operation_does_not_have_is_refused() -> None:
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/templates/style/upload", {"file": upload()}, follow=True)

    assert "is not a template setting of the slot's operation" in messages_of(response)[0]
    assert not TemplateMedia.objects.exists()


def test_removing_a_required_template_needs_confirmation_then_switches_the_slot_off() -> None:
    template = set_frame_overlay()
    client = logged_in(*WRITER)
    url = f"{PAGE}/templates/frame_media_id/remove"

    refused = client.post(url, {}, follow=True)

    assert "Not removed" in messages_of(refused)[0] and "force" in messages_of(refused)[0]
    assert TemplateBinding.objects.filter(slot_id=SLOT).exists()
    assert Slot.objects.get(id=SLOT).is_active

    removed = client.post(url, {"force": "1"}, follow=True)

    assert "it was switched off" in messages_of(removed)[0]
    slot = Slot.objects.get(id=SLOT)
    assert not slot.is_active and "frame_media_id" not in slot.settings_json
    assert not TemplateBinding.objects.filter(slot_id=SLOT).exists()
    assert TemplateMedia.objects.filter(id=template.id).exists()


def test_removing_an_optional_template_keeps_the_slot_on() -> None:
    template = a_template("reference.png")
    update_slot_if_current(
        slot_id=SLOT,
        if_match=slot_etag(Slot.objects.get(id=SLOT)),
        updated_at=None,
        provider_id="gemini",
        operation_id="image_edit",
        settings={"prompt": "Make it art", "reference_media_id": str(template.id)},
        is_active=True,
        actor="setup",
    )
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/templates/reference_media_id/remove", {}, follow=True)

    assert "stays in the template library" in messages_of(response)[0]
    slot = Slot.objects.get(id=SLOT)
    assert slot.is_active and "reference_media_id" not in slot.settings_json


def test_removing_when_nothing_is_bound_says_so() -> None:
    Slot.objects.filter(id=SLOT).update(operation_id="frame_overlay", settings_json={})
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/templates/frame_media_id/remove", {"force": "1"}, follow=True)

    assert "Nothing removed" in messages_of(response)[0]


# --- try it --------------------------------------------------------------------------------------
def test_a_test_run_goes_through_the_queue_and_shows_its_result() -> None:
    assert not IngestSettings.load().ingest_password_hash  # no password needed, none handled
    client = logged_in(*WRITER)

    started = client.post(f"{PAGE}/try", {"photo": photo_upload()})

    job = Job.objects.get()
    assert started.status_code == 302
    assert started["Location"] == f"{PAGE}/try/{job.id}"
    assert job.metadata == {"source": "dashboard"}
    assert (job.provider_id, job.operation_id) == ("local", "photo_look")
    waiting = client.get(started["Location"])
    waiting_page = text(waiting)
    assert "Waiting for a worker" in waiting_page
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in waiting_page
    assert f'data-status-url="{PAGE}/try/{job.id}/status"' in waiting_page
    status = client.get(f"{PAGE}/try/{job.id}/status").json()
    assert (status["status"], status["done"]) == ("pending", False)

    run_worker_once()

    done = text(client.get(started["Location"]))
    assert "Done." in done
    assert 'http-equiv="refresh"' not in done and "data-status-url" not in done
    assert f'<img src="/public/results/{job.id}/thumbnail" alt="Result of the test run"' in done
    assert f'href="{BASE_URL}/public/results/{job.id}" download id="try-download"' in done
    # What to give the guest is their page (preview, download, QR code), not the bare file.
    assert f'href="{BASE_URL}/r/{job.id}" id="try-guest-link"' in done
    assert client.get(f"{PAGE}/try/{job.id}/status").json()["done"] is True
    thumbnail = Client().get(f"/public/results/{job.id}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/jpeg"
    # Counted like any job, and shown in the slot's gallery.
    assert slot_stats(SLOT).totals.success == 1
    assert f"/public/results/{job.id}/thumbnail" in text(client.get(PAGE))


def test_a_failed_test_run_shows_why() -> None:
    Slot.objects.filter(id=SLOT).update(
        provider_id="testing", operation_id="fail", settings_json={"retryable": False}
    )
    client = logged_in(*WRITER)
    location = client.post(f"{PAGE}/try", {"photo": photo_upload()})["Location"]

    run_worker_once()

    page = text(client.get(location))
    assert "The provider could not process the photo." in page
    assert "<code>provider_error</code>" in page
    assert "the testing provider was told to fail" in page


def test_an_inactive_slot_can_be_tried() -> None:
    assert not Slot.objects.get(id="slot-002").is_active
    client = logged_in(*WRITER)

    response = client.post("/dashboard/slots/slot-002/try", {"photo": photo_upload()})

    assert response.status_code == 302
    assert Job.objects.get().slot_id == "slot-002"


@pytest.mark.parametrize(
    ("files_", "message"),
    [
        ({}, "Choose a photo"),
        ({"photo": SimpleUploadedFile("a.jpg", b"not an image", "image/jpeg")}, "not a JPEG"),
    ],
)
def test_a_test_run_without_a_usable_photo_is_refused(files_: dict[str, Any], message: str) -> None:
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/try", files_, follow=True)

    assert "Test run not started" in messages_of(response)[0]
    assert message in messages_of(response)[0]
    assert not Job.objects.exists()
    assert files_under("payloads") == []


def test_a_slot_with_invalid_saved_settings_cannot_be_tried() -> None:
    Slot.objects.filter(id=SLOT).update(operation_id="frame_overlay", settings_json={})
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/try", {"photo": photo_upload()}, follow=True)

    assert "saved settings are not valid" in messages_of(response)[0]
    assert "frame_media_id: this setting is required" in messages_of(response)[0]
    assert not Job.objects.exists()


def test_a_test_run_is_refused_while_no_worker_runs(settings: Any) -> None:
    settings.INGEST_REQUIRE_LIVE_WORKER = True
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/try", {"photo": photo_upload()}, follow=True)

    assert "No worker is running" in messages_of(response)[0]
    assert not Job.objects.exists()


def test_a_test_run_respects_the_queue_limit(settings: Any) -> None:
    settings.INGEST_MAX_UNFINISHED_PER_SLOT = 0
    client = logged_in(*WRITER)

    response = client.post(f"{PAGE}/try", {"photo": photo_upload()}, follow=True)

    assert "Too many photos are waiting" in messages_of(response)[0]
    assert not Job.objects.exists()


def test_a_job_of_another_slot_is_not_shown_as_this_slots_run() -> None:
    job = finished_job("slot-002")
    client = logged_in(*WRITER)

    assert client.get(f"{PAGE}/try/{job.id}").status_code == 404
    assert client.get(f"{PAGE}/try/{job.id}/status").status_code == 404
    assert client.get(f"{PAGE}/try/{uuid.uuid4()}").status_code == 404


# --- recent results and statistics --------------------------------------------------------------
def test_recent_results_show_thumbnail_download_and_expiry() -> None:
    kept = finished_job()
    expired = finished_job()
    Job.objects.filter(id=expired.id).update(
        result_expires_at=timezone.now() - timedelta(seconds=1)
    )
    finished_job(succeed=False)

    page = text(logged_in("slots:read").get(PAGE))

    assert page.count('class="result"') == 1
    assert f'<img src="/public/results/{kept.id}/thumbnail"' in page
    assert f'<a href="{BASE_URL}/public/results/{kept.id}" download>Download</a>' in page
    assert kept.result_expires_at is not None
    expires = timezone.localtime(kept.result_expires_at).strftime("%Y-%m-%d %H:%M")
    assert f">{expires}</time>" in page
    assert str(expired.id) not in page


def test_statistics_show_today_and_the_last_seven_days() -> None:
    finished_job()
    finished_job()
    finished_job(succeed=False)
    old = finished_job()
    Job.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=3))

    page = text(logged_in("slots:read").get(PAGE))

    today_line = re.search(r'<p id="stats-today">(.*?)</p>', page, re.S)
    assert today_line is not None
    assert (
        squash(today_line.group(1))
        == "Today (since midnight, UTC): 3 photos, 2 succeeded, 1 failed."
    )
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", page)
    assert len(rows) == 7 + 1  # seven days and the total
    today = timezone.now().strftime("%Y-%m-%d")
    assert re.search(rf"{today}</time></th><td>3</td><td>2</td><td>0</td><td>1</td>", page)
    assert '<th scope="row">Total</th><td>4</td><td>3</td>' in page


def test_resetting_statistics_starts_the_counts_afresh() -> None:
    finished_job()
    client = logged_in(*WRITER)
    etag = slot_etag(Slot.objects.get(id=SLOT))

    response = client.post(f"{PAGE}/reset-stats", follow=True)

    assert "start afresh from now" in messages_of(response)[0]
    slot = Slot.objects.get(id=SLOT)
    assert slot.last_reset_at is not None
    assert slot_etag(slot) == etag  # an edit in progress elsewhere stays valid
    assert slot_stats(SLOT).totals.ingest_count == 0
    assert Job.objects.count() == 1  # jobs are kept
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.SLOT_STATS_RESET, actor="olga").exists()
    page = text(response)
    assert 'id="stats-reset"' in page and "Total</th><td>0</td>" in page
