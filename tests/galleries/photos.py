"""Event photos for gallery tests: jobs that went through the real queue, with result files."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from galleries.models import Gallery
from ingest.models import Slot
from ingest.services import job_configuration
from jobqueue import files, services
from jobqueue.models import FailureReason, Job
from tests.support.images import make_photo


def queued_photo(slot_id: str = "slot-001", *, metadata: Mapping[str, Any] | None = None) -> Job:
    """A photo queued from the slot's configuration, as ingest queues it."""
    stored = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=64)
    )
    return services.enqueue_job(
        configuration=job_configuration(Slot.objects.get(id=slot_id)),
        payload=services.StoredPayload(
            path=stored.path, mime="image/jpeg", size=stored.size, sha256=stored.sha256
        ),
        metadata=dict(metadata or {"time": "2026-06-01 18:00:00"}),
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=72),
    )


def _taken(job: Job) -> tuple[Job, uuid.UUID]:
    [taken] = services.acquire_jobs(worker_id="tests", limit=1)
    assert taken.id == job.id and taken.lease_token is not None
    return taken, taken.lease_token


def event_photo(
    slot_id: str = "slot-001",
    *,
    metadata: Mapping[str, Any] | None = None,
    data: bytes | None = None,
) -> Job:
    """A photo the booth sent that the provider turned into a result (kept 72 h)."""
    job = queued_photo(slot_id, metadata=metadata)
    taken, token = _taken(job)
    result = files.store_bytes(
        kind="results", stem=str(job.id), mime="image/jpeg", data=data or make_photo(width=96)
    )
    assert services.finalize_success(
        job=taken, lease_token=token, result=result, result_mime="image/jpeg"
    )
    return Job.objects.get(id=job.id)


def failed_photo(slot_id: str = "slot-001") -> Job:
    job = queued_photo(slot_id)
    taken, token = _taken(job)
    assert services.finalize_failure(
        job=taken, lease_token=token, reason=FailureReason.PROVIDER_ERROR
    )
    return Job.objects.get(id=job.id)


def dashboard_run_photo(slot_id: str = "slot-001") -> Job:
    """A dashboard test run (ingest.try_it marks them so): the operator's photo, not a guest's."""
    return event_photo(slot_id, metadata={"source": "dashboard"})


def expire_result(job: Job) -> None:
    """Time moves past the result's retention (the one thing these tests fake)."""
    Job.objects.filter(id=job.id).update(result_expires_at=timezone.now() - timedelta(seconds=1))


def a_gallery(
    *,
    title: str = "Anna & Ben's wedding",
    slot_ids: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    expires_in: timedelta = timedelta(hours=24),
    revoked: bool = False,
) -> Gallery:
    """A gallery row as the service would store it (or one whose time has run out)."""
    now = timezone.now()
    created_at = min(now, now + expires_in - timedelta(hours=1))
    return Gallery.objects.create(
        title=title,
        slot_ids=slot_ids or [],
        results_since=since or now - timedelta(hours=1),
        results_until=until,
        expires_at=now + expires_in,
        created_by="olga",
        created_at=created_at,
        revoked_at=now if revoked else None,
    )
