"""Template images bound to slots, and temporary public media: what the API and dashboard call.

Templates are permanent images (frames, logos, style or scene references) an operator uploads and
binds to a slot under one of its operation's template settings. Binding goes through
`ingest.services.update_slot`, so a slot's settings and its bindings never disagree.

Rules an operator notices:

- An upload's type is decided from its bytes: JPEG, PNG or WebP (415 otherwise); a damaged image
  is a 400; a file over INGEST_MAX_UPLOAD_BYTES is a 413. A refused upload leaves nothing behind.
- Unbinding never deletes the template: it stays in the library, ready to be bound elsewhere.
- Unbinding a *required* template setting (or deleting a template some slot uses) is refused with
  409 unless forced. Forcing removes the setting from each slot and switches off every slot that
  needed it: ingest then answers 404 at once for that slot instead of queuing photos that could
  only fail. The operator re-enables it by choosing a new template (which validation requires).
- Deleting a template removes its row at once. Its file is removed too, unless a job that is
  still queued or processing took it in its snapshot: then the file stays for that job, and
  the orphan sweep removes it later.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, ProtectedError, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import audit
from ingest.image_types import JPEG, PNG, SNIFF_BYTES, WEBP, sniff_image_mime
from ingest.models import Slot, TemplateBinding, TemplateMedia
from ingest.services import inspect_image, register_template, update_slot
from jobqueue import files
from jobqueue.models import Job, MediaObject
from photobooth import links
from photobooth.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from providers.base import Operation, SettingsInvalid
from providers.registry import all_providers, get_provider

logger = logging.getLogger(__name__)

ACCEPTED_MIMES = (JPEG, PNG, WEBP)
# Temporary public media live at most this long (and this long unless asked otherwise).
MAX_TTL_SECONDS = 3600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Upload:
    """An uploaded file: its content, its size in bytes and the name the client gave it."""

    stream: IO[bytes]
    size: int
    name: str = ""


@dataclass(frozen=True)
class BindingTarget:
    """Where a template goes: a slot and one of its operation's template settings."""

    slot_id: str
    setting_key: str


@dataclass(frozen=True)
class TemplatePage:
    count: int
    page: int
    page_size: int
    results: list[TemplateMedia]


@dataclass(frozen=True)
class DeletionOutcome:
    """What deleting a template did: bindings removed, slots switched off, whether the file
    stays for unfinished jobs."""

    unbound: list[dict[str, str]]
    deactivated_slots: list[str]
    file_kept: bool


# --- checks shared by both kinds of upload -------------------------------------------------------
def max_upload_bytes() -> int:
    return int(django_settings.INGEST_MAX_UPLOAD_BYTES)


def refuse_oversized_body(declared_length: str | int | None) -> None:
    """413 when a request announces a body larger than an upload may be (before reading it)."""
    if declared_length is None or declared_length == "":
        return
    try:
        declared = int(declared_length)
    except ValueError:
        return  # not a number: the server's own parsing decides
    limit = max_upload_bytes()
    if declared > limit + django_settings.INGEST_MAX_FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(
            f"The upload is larger than {limit} bytes.",
            details={"max_bytes": limit, "size": declared},
        )


def check_upload(upload: Upload) -> str:
    """The upload's image type (from its bytes); 413 when too large, 415 when not supported."""
    limit = max_upload_bytes()
    if upload.size > limit:
        raise PayloadTooLarge(
            f"The upload is larger than {limit} bytes.",
            details={"max_bytes": limit, "size": upload.size},
        )
    upload.stream.seek(0)
    head = upload.stream.read(SNIFF_BYTES)
    upload.stream.seek(0)
    mime = sniff_image_mime(head)
    if mime not in ACCEPTED_MIMES:
        raise UnsupportedMediaType(
            "Upload a JPEG, PNG or WebP image.",
            details={"detected": mime, "accepted": list(ACCEPTED_MIMES)},
        )
    return mime


# --- templates: reading --------------------------------------------------------------------------
def _with_bindings(queryset: QuerySet[TemplateMedia]) -> QuerySet[TemplateMedia]:
    return queryset.prefetch_related(
        Prefetch("bindings", queryset=TemplateBinding.objects.order_by("slot_id", "setting_key"))
    )


def template_page(*, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> TemplatePage:
    """Templates, newest first, with their bindings; a page past the last one is empty."""
    queryset = TemplateMedia.objects.order_by("-created_at", "id")
    start = (page - 1) * page_size
    results = list(_with_bindings(queryset)[start : start + page_size])
    return TemplatePage(count=queryset.count(), page=page, page_size=page_size, results=results)


def get_template(template_id: str | uuid.UUID) -> TemplateMedia:
    """One template with its bindings; 404 for an unknown (or malformed) id."""
    key = _as_uuid(template_id)
    template = _with_bindings(TemplateMedia.objects.filter(id=key)).first() if key else None
    if template is None:
        raise NotFound(
            "No template with this id.",
            code="template_not_found",
            details={"template_id": str(template_id)},
        )
    return template


def bindings_of(template: TemplateMedia) -> list[dict[str, str]]:
    """[{"slot_id", "setting_key"}] by slot, for answers and audit details."""
    return [
        {"slot_id": binding.slot_id, "setting_key": binding.setting_key}
        for binding in template.bindings.all()
    ]


def _as_uuid(value: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# --- templates: upload and binding ---------------------------------------------------------------
def upload_template(
    upload: Upload,
    *,
    bind_to: BindingTarget | None = None,
    actor: str,
    request: HttpRequest | None = None,
) -> TemplateMedia:
    """Store a template image and, if asked, bind it to a slot at once (all or nothing).

    Errors: 413/415 for the file, 400 for a damaged image, 404 for an unknown slot, 422 when the
    setting is not a template setting of the slot's operation or the slot's settings do not
    validate. On any error neither a row nor a file is left behind.
    """
    check_upload(upload)
    if bind_to is not None:  # fail before the (slower) decoding and storing
        _template_operation(_slot(bind_to.slot_id), bind_to.setting_key)
    stored_path = ""
    try:
        with transaction.atomic():
            template = register_template(stream=upload.stream, original_name=upload.name)
            stored_path = template.path
            if bind_to is not None:
                _bind(template, bind_to)
    except BaseException:
        files.delete_quietly(stored_path)
        raise
    template = get_template(template.id)
    audit(
        AuditEvent.Kind.TEMPLATE_CHANGED,
        actor=actor,
        request=request,
        details={
            "action": "uploaded",
            "template_id": str(template.id),
            "mime": template.mime,
            "size": template.size,
            "bindings": bindings_of(template),
        },
    )
    return template


def _slot(slot_id: str, *, lock: bool = False) -> Slot:
    queryset = Slot.objects.select_for_update() if lock else Slot.objects.all()
    slot = queryset.filter(id=slot_id).first()
    if slot is None:
        raise NotFound(f"No slot '{slot_id}'.", code="slot_not_found", details={"slot_id": slot_id})
    return slot


def _template_operation(slot: Slot, setting_key: str) -> Operation:
    """The slot's operation, if `setting_key` is one of its template settings; 422 otherwise."""
    try:
        operation = get_provider(slot.provider_id).operation(slot.operation_id)
    except SettingsInvalid as invalid:
        raise Unprocessable(
            "The slot's provider or operation is not available.", details=invalid.errors
        ) from invalid
    keys = operation.template_keys()
    if setting_key not in keys:
        allowed = ", ".join(keys) if keys else "none"
        raise Unprocessable(
            f"'{setting_key}' is not a template setting of the slot's operation.",
            details={
                "setting_key": [
                    f"operation {slot.operation_id!r} of slot {slot.id!r} takes these template "
                    f"settings: {allowed}"
                ]
            },
        )
    return operation


def _bind(template: TemplateMedia, target: BindingTarget) -> None:
    """Point the slot's setting at the template, through the slot validation (same transaction)."""
    slot = _slot(target.slot_id, lock=True)
    _template_operation(slot, target.setting_key)
    try:
        update_slot(
            slot_id=slot.id,
            provider_id=slot.provider_id,
            operation_id=slot.operation_id,
            settings={**slot.settings_json, target.setting_key: str(template.id)},
            is_active=slot.is_active,
        )
    except SettingsInvalid as invalid:
        raise Unprocessable(
            "The slot's settings are not valid with this template.", details=invalid.errors
        ) from invalid


def _required(slot: Slot, setting_key: str) -> bool:
    """Whether the slot's operation cannot work without this setting."""
    provider = all_providers().get(slot.provider_id)
    operation = provider.operations.get(slot.operation_id) if provider else None
    for field in operation.fields if operation else ():
        if field.name == setting_key:
            return field.required and field.default is None
    return False


def _detach(binding: TemplateBinding, *, force: bool) -> bool:
    """Remove a binding and its setting from the slot; True when the slot was switched off.

    A required setting is only removed when forced (409 otherwise), and the slot is switched off.
    """
    slot = Slot.objects.select_for_update().get(id=binding.slot_id)
    required = _required(slot, binding.setting_key)
    if required and not force:
        raise Conflict(
            f"Slot '{slot.id}' needs a template for '{binding.setting_key}'; bind another one "
            "first, or force (the slot is then switched off).",
            code="template_required",
            details={"slot_id": slot.id, "setting_key": binding.setting_key},
        )
    settings = dict(slot.settings_json)
    settings.pop(binding.setting_key, None)
    slot.settings_json = settings
    deactivated = required and slot.is_active
    if deactivated:
        slot.is_active = False
    slot.save(update_fields=["settings_json", "is_active", "updated_at"])
    binding.delete()
    return deactivated


def unbind_template(
    template_id: str | uuid.UUID,
    target: BindingTarget,
    *,
    force: bool = False,
    actor: str,
    request: HttpRequest | None = None,
) -> bool:
    """Remove one binding (the template stays); True when the slot was switched off.

    404 for an unknown template or binding; 409 `template_required` for a required setting
    unless forced.
    """
    template = get_template(template_id)
    with transaction.atomic():
        binding = (
            TemplateBinding.objects.select_for_update()
            .filter(template=template, slot_id=target.slot_id, setting_key=target.setting_key)
            .first()
        )
        if binding is None:
            raise NotFound(
                "This template is not bound to that slot setting.",
                code="binding_not_found",
                details={"slot_id": target.slot_id, "setting_key": target.setting_key},
            )
        deactivated = _detach(binding, force=force)
    audit(
        AuditEvent.Kind.TEMPLATE_CHANGED,
        actor=actor,
        request=request,
        details={
            "action": "unbound",
            "template_id": str(template.id),
            "slot_id": target.slot_id,
            "setting_key": target.setting_key,
            "slot_deactivated": deactivated,
        },
    )
    return deactivated


def delete_template(
    template_id: str | uuid.UUID,
    *,
    force: bool = False,
    actor: str,
    request: HttpRequest | None = None,
) -> DeletionOutcome:
    """Delete a template. 409 `template_in_use` (details: its bindings) while a slot binds it,
    unless forced: every binding is then removed first (see the module docstring)."""
    template = get_template(template_id)
    deleted_id, path = str(template.id), template.path
    try:
        with transaction.atomic():
            # Slots are locked (in id order) before the template row, as a slot update does.
            bindings = list(template.bindings.order_by("slot_id", "setting_key"))
            unbound = [{"slot_id": b.slot_id, "setting_key": b.setting_key} for b in bindings]
            if bindings and not force:
                raise _in_use(unbound)
            deactivated = [b.slot_id for b in bindings if _detach(b, force=True)]
            template.delete()
    except (ProtectedError, IntegrityError) as error:
        # Bound to another slot while this deletion ran: still in use.
        raise _in_use(bindings_of(get_template(deleted_id))) from error
    file_kept = path in template_paths_still_needed([path])
    if not file_kept:
        files.delete_quietly(path)
    audit(
        AuditEvent.Kind.TEMPLATE_CHANGED,
        actor=actor,
        request=request,
        details={
            "action": "deleted",
            "template_id": deleted_id,
            "unbound": unbound,
            "deactivated_slots": deactivated,
            "file_kept_for_jobs": file_kept,
        },
    )
    return DeletionOutcome(unbound=unbound, deactivated_slots=deactivated, file_kept=file_kept)


def _in_use(bindings: list[dict[str, str]]) -> Conflict:
    return Conflict(
        "The template is still bound to a slot: unbind it first, or force.",
        code="template_in_use",
        details={"bindings": bindings},
    )


def template_paths_still_needed(paths: Iterable[str]) -> set[str]:
    """The template files among `paths` that a template row or an unfinished job refers to.

    Unfinished jobs are few (the queue is bounded by INGEST_MAX_UNFINISHED_TOTAL), so their
    snapshots are read whole.
    """
    wanted = set(paths)
    needed = set(TemplateMedia.objects.filter(path__in=wanted).values_list("path", flat=True))
    for refs in Job.objects.filter(is_finalized=False).values_list("template_refs", flat=True):
        for ref in (refs or {}).values():
            path = ref.get("path") if isinstance(ref, dict) else None
            if path in wanted:
                needed.add(path)
    return needed


# --- temporary public media ----------------------------------------------------------------------
def default_ttl_seconds() -> int:
    """MEDIA_REGISTER_DEFAULT_TTL_SECONDS when configured, else the maximum (one hour)."""
    configured = getattr(django_settings, "MEDIA_REGISTER_DEFAULT_TTL_SECONDS", MAX_TTL_SECONDS)
    return max(1, min(int(configured), MAX_TTL_SECONDS))


def public_media_url(media_id: uuid.UUID) -> str:
    """The media's public address, built from PUBLIC_BASE_URL."""
    return links.media_url(media_id)


def register_temporary_media(
    upload: Upload, *, ttl_seconds: int | None = None, now: datetime | None = None
) -> MediaObject:
    """Store an image behind a public link that answers until it expires (then 410).

    Same checks as templates (413/415/400); the lifetime is 1..MAX_TTL_SECONDS seconds.
    """
    ttl = default_ttl_seconds() if ttl_seconds is None else ttl_seconds
    if not 1 <= ttl <= MAX_TTL_SECONDS:
        raise Unprocessable(
            "The lifetime is out of range.",
            details={"ttl_seconds": [f"must be between 1 and {MAX_TTL_SECONDS}"]},
        )
    check_upload(upload)
    mime, _, _ = inspect_image(upload.stream)
    media_id = uuid.uuid4()
    stored = files.store_stream(kind="media", stem=str(media_id), mime=mime, stream=upload.stream)
    created = now or timezone.now()
    try:
        media = MediaObject.objects.create(
            id=media_id,
            job=None,
            path=stored.path,
            mime=mime,
            size=stored.size,
            created_at=created,
            expires_at=created + timedelta(seconds=ttl),
        )
    except BaseException:
        files.delete_quietly(stored.path)
        raise
    logger.info(
        "temporary media registered",
        extra={"media_id": str(media.id), "size": media.size, "ttl_seconds": ttl},
    )
    return media


def template_file_info(template: TemplateMedia) -> tuple[IO[bytes], str]:
    """The template's file opened for reading and its download name; 404 if the file is gone."""
    if not files.exists(template.path):
        raise NotFound(
            "The template's file is missing.",
            code="template_file_missing",
            details={"template_id": str(template.id)},
        )
    extension = files.EXTENSIONS.get(template.mime, "bin")
    return files.open_file(template.path), f"template-{template.id}.{extension}"


def serialize_template(template: TemplateMedia) -> dict[str, Any]:
    """A template as the API and the dashboard show it."""
    return {
        "id": str(template.id),
        "mime": template.mime,
        "size": template.size,
        "width": template.width,
        "height": template.height,
        "sha256": template.sha256,
        "original_name": template.original_name,
        "created_at": template.created_at,
        "bindings": bindings_of(template),
    }
