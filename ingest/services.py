"""Ingest-side state changes: accepting a photo, slot configuration, the ingest password."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from django.conf import settings as django_settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import DatabaseError, transaction
from django.http import HttpRequest
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from accounts.models import AuditEvent
from accounts.services import audit, client_address
from ingest.image_checks import unexpected_trailer
from ingest.image_types import HEIC, HEIF, JPEG, SNIFF_BYTES, WEBP, sniff_image_mime
from ingest.models import SLOT_FLAGS, IngestSettings, Slot, TemplateBinding, TemplateMedia
from jobqueue import files
from jobqueue.connections import release_connection
from jobqueue.models import Job
from jobqueue.selectors import any_live_worker, queue_load
from jobqueue.services import JobConfiguration, StoredPayload, enqueue_job
from photobooth.errors import (
    BadRequest,
    DatabaseUnavailable,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from providers.base import SettingsInvalid
from providers.registry import get_provider

logger = logging.getLogger(__name__)

FILE_FIELD = "fileToUpload"
PASSWORD_FIELD = "password"  # noqa: S105 (a form field name, not a secret)


# --- the ingest password -------------------------------------------------------------------------
# Hashing a password with Django's default hasher costs hundreds of milliseconds of CPU, which
# the booth would pay on every photo. A successful check is remembered for the stored hash in
# use, keyed by a keyed digest of the candidate (never the password itself).
_verified_candidates: dict[str, str] = {}


def _candidate_digest(stored_hash: str, candidate: str) -> str:
    return hmac.new(stored_hash.encode(), candidate.encode(), hashlib.sha256).hexdigest()


def check_ingest_password(candidate: str) -> None:
    """Nothing if `candidate` is the ingest password; Unauthorized otherwise (or if none is set)."""
    stored_hash = IngestSettings.load().ingest_password_hash
    if not stored_hash:
        raise Unauthorized(
            "No ingest password is configured: every upload is refused.",
            code="ingest_password_not_configured",
        )
    digest = _candidate_digest(stored_hash, candidate)
    if hmac.compare_digest(_verified_candidates.get(stored_hash, ""), digest):
        return
    if not candidate or not check_password(candidate, stored_hash):
        raise Unauthorized("Wrong or missing password.", code="invalid_password")
    _verified_candidates.clear()  # only the current password is worth remembering
    _verified_candidates[stored_hash] = digest


# Refusals that are the client's doing (not "no password configured"): logged and audited.
PASSWORD_FAILURE_CODES = frozenset({"invalid_password", "missing_password"})


def record_ingest_password_failure(*, slot_id: str, code: str, request: HttpRequest | None) -> None:
    """A refused ingest password: a warning and an audit row with the client's address.

    Never the password itself. The booth's answer (401) does not depend on the audit row: a
    database that cannot take it is only logged.
    """
    logger.warning(
        "ingest password refused",
        extra={"slot_id": slot_id, "code": code, "client_address": client_address(request)},
    )
    try:
        audit(
            AuditEvent.Kind.INGEST_PASSWORD_FAILED,
            request=request,
            details={"slot_id": slot_id, "code": code},
        )
    except DatabaseError:
        logger.warning("could not audit a refused ingest password", exc_info=True)


def refuse_throttled_address(request: HttpRequest | None) -> None:
    """429 (with Retry-After) for a client address with too many refused ingest passwords.

    Counted per address from the audit log, so every web process agrees. Not per target: the
    ingest password is one for all booths, and locking it would let anyone stop every booth.
    """
    address = client_address(request)
    if not address:
        return
    window = timedelta(seconds=django_settings.INGEST_THROTTLE_WINDOW_SECONDS)
    limit = django_settings.INGEST_MAX_PASSWORD_FAILURES_PER_ADDRESS
    recent = list(
        AuditEvent.objects.filter(
            kind=AuditEvent.Kind.INGEST_PASSWORD_FAILED,
            client_address=address,
            created_at__gte=timezone.now() - window,
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return
    retry_after = max(1, int((recent[-1] + window - timezone.now()).total_seconds()) + 1)
    raise TooManyRequests(
        "Too many wrong passwords from this address; try again later.",
        code="password_throttled",
        details={"retry_after_seconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def set_ingest_password(*, password: str, changed_by: str) -> None:
    """Store a new ingest password (as a hash); effective for the next upload."""
    if not password:
        raise BadRequest("The ingest password must not be empty.", code="empty_password")
    with transaction.atomic():
        row = IngestSettings.load()
        row.ingest_password_hash = make_password(password)
        row.ingest_password_updated_at = timezone.now()
        row.ingest_password_updated_by = changed_by
        row.save(
            update_fields=[
                "ingest_password_hash",
                "ingest_password_updated_at",
                "ingest_password_updated_by",
                "updated_at",
            ]
        )
    logger.info("ingest password changed", extra={"changed_by": changed_by})


# --- slot configuration --------------------------------------------------------------------------
def update_slot(
    *,
    slot_id: str,
    provider_id: str,
    operation_id: str,
    settings: Mapping[str, Any],
    is_active: bool,
    name: str | None = None,
    flags: Mapping[str, bool] | None = None,
) -> Slot:
    """Validate and store a slot's configuration, keeping its template bindings in step.

    `flags` sets some of the SLOT_FLAGS (the others stay as they are). Raises SettingsInvalid
    with per-field errors; an invalid slot is never saved.
    """
    provider = get_provider(provider_id)
    operation = provider.operation(operation_id)
    cleaned = provider.clean_settings(operation_id, settings)
    templates: dict[str, TemplateMedia] = {}
    errors: dict[str, list[str]] = {}
    for key in operation.template_keys():
        if key not in cleaned:
            continue
        template_id = _as_uuid_text(cleaned[key])
        template = TemplateMedia.objects.filter(id=template_id).first() if template_id else None
        if template is None:
            errors[key] = ["no template with this id"]
        else:
            templates[key] = template
    if errors:
        raise SettingsInvalid(errors)
    with transaction.atomic():
        slot = Slot.objects.select_for_update().filter(id=slot_id).first()
        if slot is None:
            raise NotFound(f"No slot '{slot_id}'.", code="slot_not_found")
        slot.provider_id = provider_id
        slot.operation_id = operation_id
        slot.settings_json = cleaned
        slot.is_active = is_active
        if name is not None:
            slot.name = name
        for flag, value in (flags or {}).items():
            if flag not in SLOT_FLAGS:
                raise ValueError(f"not a slot flag: {flag}")
            setattr(slot, flag, bool(value))
        slot.save()
        slot.template_bindings.exclude(setting_key__in=templates).delete()
        for key, template in templates.items():
            TemplateBinding.objects.update_or_create(
                slot=slot, setting_key=key, defaults={"template": template}
            )
    return slot


def _as_uuid_text(value: str) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def register_template(*, stream: IO[bytes], original_name: str) -> TemplateMedia:
    """Store an uploaded template image after checking it really is a supported image."""
    mime, width, height = inspect_image(stream)
    template = TemplateMedia(
        mime=mime, width=width, height=height, original_name=original_name[:255]
    )
    stored = files.store_stream(kind="templates", stem=str(template.id), mime=mime, stream=stream)
    template.path, template.size, template.sha256 = stored.path, stored.size, stored.sha256
    try:
        template.save()
    except Exception:
        files.delete_quietly(stored.path)
        raise
    return template


def job_configuration(slot: Slot) -> JobConfiguration:
    """The snapshot a job takes of its slot: provider, operation, settings and template files."""
    bindings = {
        b.setting_key: b.template for b in slot.template_bindings.select_related("template")
    }
    return JobConfiguration(
        slot_id=slot.id,
        provider_id=slot.provider_id,
        operation_id=slot.operation_id,
        settings=dict(slot.settings_json),
        template_refs={
            key: {"path": template.path, "mime": template.mime, "id": str(template.id)}
            for key, template in bindings.items()
        },
        qr_stamp=slot.qr_stamp,
    )


# --- accepting a photo ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestUpload:
    """A parsed ingest request: the photo and the text fields that came with it."""

    slot_id: str
    password: str
    photo: IO[bytes] | None
    photo_size: int
    photo_name: str
    fields: Mapping[str, Any]
    received_at: datetime


def accept_photo(
    upload: IngestUpload, *, max_upload_bytes: int, job_id: uuid.UUID | None = None
) -> Job:
    """Check an ingest request, store the photo and queue its job. Raises PhotoboothError."""
    if upload.photo is None or upload.photo_size == 0:
        raise BadRequest(
            f"The photo is missing: send it in the '{FILE_FIELD}' field.",
            code="missing_file",
            details={"field": FILE_FIELD},
        )
    if not upload.password:
        raise Unauthorized(f"The '{PASSWORD_FIELD}' field is missing.", code="missing_password")
    try:
        check_ingest_password(upload.password)
        slot = Slot.objects.filter(id=upload.slot_id, is_active=True).first()
        settings_row = IngestSettings.load()
    except DatabaseError as error:
        raise DatabaseUnavailable() from error
    if slot is None:
        raise NotFound(
            f"No active slot '{upload.slot_id}'.",
            code="slot_not_found",
            details={"slot_id": upload.slot_id},
        )
    if upload.photo_size > max_upload_bytes:
        raise PayloadTooLarge(
            f"The photo is larger than {max_upload_bytes} bytes.",
            details={"max_bytes": max_upload_bytes, "size": upload.photo_size},
        )
    ensure_can_accept(slot)  # cheap early refusal when full, before any decoding
    configuration = job_configuration(slot)
    # Decoding and storing the photo take the longest and need no database: the connection goes
    # back to the pool meanwhile, so a burst of uploads does not queue for connections.
    release_connection()
    mime, width, height = inspect_image(upload.photo)
    provider = get_provider(slot.provider_id)
    if mime not in provider.accepted_mimes:
        raise UnsupportedMediaType(
            f"Provider '{provider.id}' does not accept {mime}.",
            details={"mime": mime, "accepted": sorted(provider.accepted_mimes)},
        )
    job_id = job_id or uuid.uuid4()
    stored = files.store_stream(
        kind="payloads",
        stem=str(job_id),
        mime=mime,
        stream=upload.photo,
        # The booth's `hash` field may be a SHA-1: computed only when there is one to check.
        with_sha1=bool(upload.fields.get("hash")),
    )
    integrity = _integrity(upload.fields.get("hash"), stored)
    try:
        job = enqueue_job(
            job_id=job_id,
            configuration=configuration,
            payload=StoredPayload(
                path=stored.path, mime=mime, size=stored.size, sha256=stored.sha256
            ),
            metadata=upload.fields,
            received_at=upload.received_at,
            sync_response=timedelta(seconds=settings_row.sync_response_timeout_sec),
            result_retention=timedelta(seconds=settings_row.result_retention_sec),
            # Again at the insert: other uploads may have taken the room while this one was
            # decoded and stored.
            admit=lambda: ensure_queue_room(slot, at_insert=True),
            received_details={
                "mime": mime,
                "size": stored.size,
                "width": width,
                "height": height,
                "integrity": integrity,
            },
        )
    except DatabaseError as error:
        files.delete_quietly(stored.path)
        raise DatabaseUnavailable() from error
    except BaseException:
        files.delete_quietly(stored.path)
        raise
    if integrity == "mismatch":
        logger.warning("upload hash field does not match the file", extra={"job_id": str(job.id)})
    return job


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(django_settings.INGEST_RETRY_AFTER_SECONDS)}


def ensure_can_accept(slot: Slot) -> None:
    """The checks before a photo is read: a worker is alive (503) and there is room (429)."""
    if django_settings.INGEST_REQUIRE_LIVE_WORKER and not any_live_worker(
        stale_after=timedelta(seconds=django_settings.WORKER_STALE_SECONDS)
    ):
        raise ServiceUnavailable(
            "No worker is running: the photo cannot be processed now.",
            code="no_workers",
            headers=_retry_after(),
        )
    ensure_queue_room(slot)


def ensure_queue_room(slot: Slot, *, at_insert: bool = False) -> None:
    """429 while too many jobs are unfinished for the slot or in total (back-pressure), or,
    for a slot taking one photo at a time, while any of its jobs is unfinished (slot_busy).

    `at_insert`: called inside the job's insert transaction. A one-at-a-time slot's row is then
    locked first, so that of two photos arriving together exactly one is admitted (PostgreSQL;
    SQLite's IMMEDIATE transactions are serialized already).
    """
    if slot.one_at_a_time and at_insert:
        list(Slot.objects.select_for_update().filter(id=slot.id).values_list("id", flat=True))
    load = queue_load(slot_id=slot.id)
    if slot.one_at_a_time and load.unfinished_for_slot:
        raise TooManyRequests(
            "This slot takes one photo at a time and is busy; try again shortly.",
            code="slot_busy",
            details={"slot_unfinished": load.unfinished_for_slot},
            headers=_retry_after(),
        )
    per_slot = django_settings.INGEST_MAX_UNFINISHED_PER_SLOT
    total = django_settings.INGEST_MAX_UNFINISHED_TOTAL
    if load.unfinished_for_slot >= per_slot or load.unfinished_total >= total:
        raise TooManyRequests(
            "Too many photos are waiting to be processed; try again shortly.",
            code="queue_full",
            details={
                "slot_unfinished": load.unfinished_for_slot,
                "slot_limit": per_slot,
                "total_unfinished": load.unfinished_total,
                "total_limit": total,
            },
            headers=_retry_after(),
        )


def inspect_image(stream: IO[bytes]) -> tuple[str, int, int]:
    """(mime, width, height) decided from the bytes; BadRequest if it is not a usable image.

    The pixel count is checked from the header before anything is decoded (decompression bombs).
    With INGEST_IMAGE_CHECK=decode every byte of image data is then decoded (JPEG at 1/8 scale:
    all of the compressed data is still read), which finds truncated and corrupt files; with
    "structure" only the container is checked (PNG checksums, the end-of-image marker, the
    declared WebP size).
    """
    stream.seek(0)
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    mime = sniff_image_mime(head)
    if mime is None:
        raise BadRequest("The file is not a JPEG, PNG, WebP or HEIC image.", code="not_an_image")
    if mime in (HEIC, HEIF):
        return mime, 0, 0  # Pillow cannot read HEIC; the provider decides whether it accepts it
    limit = django_settings.INGEST_MAX_IMAGE_PIXELS
    try:
        with Image.open(stream) as image:
            width, height = image.size
            if width * height > limit:
                raise BadRequest(
                    "The image has too many pixels.",
                    code="too_many_pixels",
                    details={"width": width, "height": height, "max_pixels": limit},
                )
            if getattr(image, "n_frames", 1) > 1:
                raise BadRequest(
                    "Animated or multi-frame images are not photos.", code="animated_image"
                )
            image.verify()  # structure and checksums (PNG); a no-op for JPEG
        stream.seek(0)
        if unexpected_trailer(stream.read(), mime):
            raise BadRequest(
                "The file carries data after the end of the image.",
                code="unexpected_trailing_data",
            )
        stream.seek(0)
        if django_settings.INGEST_IMAGE_CHECK == "decode":
            with Image.open(stream) as image:
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
        elif not _container_complete(stream, mime):
            raise OSError("image data ends early")
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as error:
        raise BadRequest("The image is damaged or unreadable.", code="invalid_image") from error
    finally:
        stream.seek(0)
    return mime, width, height


# Cameras may append padding after a JPEG's end-of-image marker; look for it this far back.
_JPEG_TAIL_BYTES = 64 * 1024


def _container_complete(stream: IO[bytes], mime: str) -> bool:
    """Whether the file is as long as its format says (PNG is checked by verify())."""
    stream.seek(0, 2)
    size = stream.tell()
    if mime == JPEG:
        stream.seek(max(0, size - _JPEG_TAIL_BYTES))
        return b"\xff\xd9" in stream.read()
    if mime == WEBP:
        stream.seek(4)
        declared = int.from_bytes(stream.read(4), "little")
        return size >= declared + 8
    return True


def _integrity(declared: Any, stored: files.StoredFile) -> str:
    """'verified' when the booth's `hash` field is the file's SHA-1 or SHA-256, else why not."""
    if not isinstance(declared, str) or not declared:
        return "absent"
    declared = declared.strip().lower()
    given = declared.encode("utf-8", "surrogatepass")  # any text a booth sends, never a crash
    if hmac.compare_digest(given, stored.sha1.encode()) or hmac.compare_digest(
        given, stored.sha256.encode()
    ):
        return "verified"
    return "mismatch"
