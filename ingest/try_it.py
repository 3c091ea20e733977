"""Test runs from the dashboard: a photo from an admin's browser through the real queue.

An admin who is logged in to the dashboard may try a slot with a photo of their own. The photo
takes the booth's path through the system: the same image checks, the same configuration
snapshot, the same queue (with its back-pressure and its worker liveness check), the same
worker and provider, the same deadline and result retention. What differs:

- There is no ingest password: the dashboard session (and its `slots:write` permission) is the
  authorization, so the booth's password is never handled here.
- The slot need not be active (an operator tries a slot before switching it on), but its saved
  settings must be valid for its operation: a run that could only fail is refused at once.
- Nobody holds a request open for the result: the dashboard polls the job, and a job that
  reaches its deadline unprocessed is finalized as timeout by the workers' cleanup.
- The job's metadata is {"source": "dashboard"}; it counts in the statistics like any job.

These are the steps `ingest.services.accept_photo` takes, minus the password check; see the
refactoring note in the report that introduced this module.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from django.db import DatabaseError
from django.utils import timezone

from ingest.models import IngestSettings, Slot
from ingest.services import (
    ensure_can_accept,
    ensure_queue_room,
    inspect_image,
    job_configuration,
)
from jobqueue import files
from jobqueue.models import Job
from jobqueue.services import StoredPayload, enqueue_job
from photobooth.errors import (
    BadRequest,
    DatabaseUnavailable,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from providers.base import SettingsInvalid
from providers.registry import get_provider

logger = logging.getLogger(__name__)

# What marks a job as a dashboard test run (the booth's own metadata never has `source`).
DASHBOARD_METADATA = {"source": "dashboard"}
_SLOT_ID_MAX_LENGTH = 32


@dataclass(frozen=True)
class TestPhoto:
    """A photo an admin uploaded to try a slot with."""

    __test__ = False  # not a pytest test class

    slot_id: str
    photo: IO[bytes] | None
    photo_size: int
    photo_name: str
    requested_by: str


def start_test_run(
    test: TestPhoto,
    *,
    max_upload_bytes: int,
    received_at: datetime | None = None,
    job_id: uuid.UUID | None = None,
) -> Job:
    """Check the photo and the slot, store the photo and queue its job. Raises PhotoboothError.

    400 no photo / not an image / damaged, 404 unknown slot, 413 too large, 415 a type the
    slot's provider does not take, 422 the slot's saved settings are not valid, 429 the queue
    is full, 503 no worker is alive or the database is unavailable.
    """
    received_at = received_at or timezone.now()
    if test.photo is None or test.photo_size == 0:
        raise BadRequest("Choose a photo to try the slot with.", code="missing_file")
    if test.photo_size > max_upload_bytes:
        raise PayloadTooLarge(
            f"The photo is larger than {max_upload_bytes} bytes.",
            details={"max_bytes": max_upload_bytes, "size": test.photo_size},
        )
    try:
        slot = (
            Slot.objects.filter(id=test.slot_id).first()
            if 0 < len(test.slot_id) <= _SLOT_ID_MAX_LENGTH and "\x00" not in test.slot_id
            else None
        )
        settings_row = IngestSettings.load()
    except DatabaseError as error:
        raise DatabaseUnavailable() from error
    if slot is None:
        raise NotFound(
            f"No slot '{test.slot_id}'.",
            code="slot_not_found",
            details={"slot_id": test.slot_id},
        )
    try:
        provider = get_provider(slot.provider_id)
        provider.clean_settings(slot.operation_id, slot.settings_json)
    except SettingsInvalid as invalid:
        raise Unprocessable(
            "The slot's saved settings are not valid: save a working configuration first.",
            code="slot_settings_invalid",
            details=invalid.errors,
        ) from invalid
    ensure_can_accept(slot)
    configuration = job_configuration(slot)
    mime, width, height = inspect_image(test.photo)
    if mime not in provider.accepted_mimes:
        raise UnsupportedMediaType(
            f"{provider.label} does not accept {mime} photos.",
            details={"mime": mime, "accepted": sorted(provider.accepted_mimes)},
        )
    job_id = job_id or uuid.uuid4()
    stored = files.store_stream(kind="payloads", stem=str(job_id), mime=mime, stream=test.photo)
    try:
        job = enqueue_job(
            job_id=job_id,
            configuration=configuration,
            payload=StoredPayload(
                path=stored.path, mime=mime, size=stored.size, sha256=stored.sha256
            ),
            metadata=DASHBOARD_METADATA,
            received_at=received_at,
            sync_response=timedelta(seconds=settings_row.sync_response_timeout_sec),
            result_retention=timedelta(seconds=settings_row.result_retention_sec),
            admit=lambda: ensure_queue_room(slot, at_insert=True),
            received_details={
                "mime": mime,
                "size": stored.size,
                "width": width,
                "height": height,
                "source": "dashboard",
                "requested_by": test.requested_by,
                "file_name": test.photo_name[:255],
            },
        )
    except DatabaseError as error:
        files.delete_quietly(stored.path)
        raise DatabaseUnavailable() from error
    except BaseException:
        files.delete_quietly(stored.path)
        raise
    logger.info(
        "dashboard test run queued",
        extra={"job_id": str(job.id), "slot_id": slot.id, "requested_by": test.requested_by},
    )
    return job
