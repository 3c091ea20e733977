"""Queue operations: enqueue, acquire, finalize, time out. Each is one short transaction.

A job is finalized exactly once: every finalizing UPDATE is conditional on `is_finalized=False`
(and, for a worker, on still holding the job's lease token), and the caller learns from the
row count whether it won. Files are deleted only after the transaction that released them
commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from jobqueue import deadlines, files
from jobqueue.models import FailureReason, Job, JobStatus, MediaObject, ProcessingLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobConfiguration:
    """The slot configuration a job is snapshotted from."""

    slot_id: str
    provider_id: str
    operation_id: str
    settings: Mapping[str, Any]
    template_refs: Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class StoredPayload:
    path: str
    mime: str
    size: int
    sha256: str


def record_event(job_id: uuid.UUID, event: str, details: Mapping[str, Any] | None = None) -> None:
    """Append one entry to a job's processing log."""
    ProcessingLog.objects.create(
        job_id=job_id, event=event, created_at=timezone.now(), details=dict(details or {})
    )


def enqueue_job(
    *,
    job_id: uuid.UUID | None = None,
    configuration: JobConfiguration,
    payload: StoredPayload,
    metadata: Mapping[str, Any],
    received_at: datetime,
    sync_response: timedelta,
    result_retention: timedelta,
    received_details: Mapping[str, Any] | None = None,
) -> Job:
    """Create a pending job (deadline counted from when the request arrived) and its log."""
    job_deadlines = deadlines.job_deadlines(created_at=received_at, sync_response=sync_response)
    with transaction.atomic():
        job = Job.objects.create(
            id=job_id or uuid.uuid4(),
            slot_id=configuration.slot_id,
            provider_id=configuration.provider_id,
            operation_id=configuration.operation_id,
            settings_snapshot=dict(configuration.settings),
            template_refs={key: dict(ref) for key, ref in configuration.template_refs.items()},
            metadata=dict(metadata),
            created_at=received_at,
            expires_at=job_deadlines.expires_at,
            payload_path=payload.path,
            payload_mime=payload.mime,
            payload_size=payload.size,
            payload_sha256=payload.sha256,
            payload_expires_at=job_deadlines.payload_expires_at,
            result_retention_seconds=int(result_retention.total_seconds()),
        )
        now = timezone.now()
        ProcessingLog.objects.bulk_create(
            [
                ProcessingLog(
                    job=job,
                    event=ProcessingLog.Event.RECEIVED,
                    created_at=received_at,
                    details=dict(received_details or {}),
                ),
                ProcessingLog(
                    job=job,
                    event=ProcessingLog.Event.QUEUED,
                    created_at=now,
                    details={"expires_at": job.expires_at.isoformat()},
                ),
            ]
        )
    logger.info(
        "job queued",
        extra={"job_id": str(job.id), "slot_id": job.slot_id, "provider": job.provider_id},
    )
    return job


def acquire_jobs(*, worker_id: str, limit: int) -> list[Job]:
    """Take up to `limit` pending jobs whose deadline is ahead, oldest first, for this worker.

    On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so concurrent workers take
    disjoint sets. On SQLite the transaction is IMMEDIATE (see settings): it holds the database's
    write lock from its first statement, so select-then-update is an atomic compare-and-set.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        ids = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(status=JobStatus.PENDING, is_finalized=False, expires_at__gt=now)
            .order_by("created_at")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        # The SELECT may have waited for locks: jobs committed meanwhile must not look picked
        # up before they were queued.
        now = timezone.now()
        Job.objects.filter(id__in=ids, status=JobStatus.PENDING, is_finalized=False).update(
            status=JobStatus.PROCESSING,
            lease_token=token,
            worker_id=worker_id,
            started_at=now,
            attempt_count=F("attempt_count") + 1,
            updated_at=now,
        )
        jobs = list(Job.objects.filter(id__in=ids, lease_token=token).order_by("created_at"))
        ProcessingLog.objects.bulk_create(
            [
                ProcessingLog(
                    job=job,
                    event=ProcessingLog.Event.PICKED_UP,
                    created_at=now,
                    details={
                        "worker_id": worker_id,
                        "attempt": job.attempt_count,
                        "queue_wait_ms": _milliseconds(now - job.created_at),
                    },
                )
                for job in jobs
            ]
        )
    return jobs


def finalize_success(
    *,
    job: Job,
    lease_token: uuid.UUID,
    result: files.StoredFile,
    result_mime: str,
    provider_job_reference: str = "",
) -> bool:
    """Mark the job succeeded with its stored result, if this worker still holds it in time.

    Returns False (and changes nothing) when the job was already finalized, the lease moved on,
    or the deadline passed: the caller then deletes its result file.
    """
    now = timezone.now()
    return _finalize(
        job=job,
        conditions={"lease_token": lease_token, "expires_at__gt": now},
        now=now,
        fields={
            "failure_reason": None,
            "result_path": result.path,
            "result_mime": result_mime,
            "result_size": result.size,
            "result_sha256": result.sha256,
            "result_expires_at": deadlines.result_expires_at(
                finalized_at=now, retention=timedelta(seconds=job.result_retention_seconds)
            ),
            "provider_job_reference": provider_job_reference or job.provider_job_reference,
        },
        log_details={"outcome": "success", "result_size": result.size, "result_mime": result_mime},
    )


def finalize_failure(
    *, job: Job, lease_token: uuid.UUID, reason: FailureReason, detail: str = ""
) -> bool:
    """Mark the job failed, if this worker still holds it. Returns whether it did.

    A failure known only after the deadline is recorded as what the booth saw: a timeout.
    """
    now = timezone.now()
    if deadlines.is_expired(deadline=job.expires_at, now=now):
        reason = FailureReason.TIMEOUT
    return _finalize(
        job=job,
        conditions={"lease_token": lease_token},
        now=now,
        fields={"failure_reason": reason, "failure_detail": detail[:2000]},
        log_details={"outcome": str(reason), "detail": detail[:500]},
    )


def finalize_expired(*, job: Job, finalized_by: str) -> bool:
    """Finalize a job whose deadline has passed as `timeout`; anyone may do this.

    Returns False when the job was finalized already or its deadline is still ahead.
    """
    now = timezone.now()
    return _finalize(
        job=job,
        conditions={"expires_at__lte": now},
        now=now,
        fields={"failure_reason": FailureReason.TIMEOUT, "failure_detail": "deadline reached"},
        log_details={"outcome": FailureReason.TIMEOUT, "finalized_by": finalized_by},
    )


def timeout_expired_jobs(*, finalized_by: str, limit: int = 500) -> int:
    """Finalize every unfinalized job past its deadline as `timeout`. Returns how many."""
    now = timezone.now()
    expired = list(
        Job.objects.filter(is_finalized=False, expires_at__lte=now).order_by("expires_at")[:limit]
    )
    return sum(finalize_expired(job=job, finalized_by=finalized_by) for job in expired)


def _finalize(
    *,
    job: Job,
    conditions: Mapping[str, Any],
    now: datetime,
    fields: Mapping[str, Any],
    log_details: Mapping[str, Any],
) -> bool:
    with transaction.atomic():
        changed = Job.objects.filter(id=job.id, is_finalized=False, **conditions).update(
            is_finalized=True, finalized_at=now, updated_at=now, payload_path="", **fields
        )
        if not changed:
            return False
        details = {
            **log_details,
            "total_elapsed_ms": _milliseconds(now - job.created_at),
        }
        if job.started_at:
            details["processing_ms"] = _milliseconds(now - job.started_at)
        record_event(job.id, ProcessingLog.Event.FINALIZED, details)
        payload_path = job.payload_path
        transaction.on_commit(lambda: _release_job_files(job.id, payload_path))
    logger.info(
        "job finalized",
        extra={"job_id": str(job.id), "slot_id": job.slot_id, "outcome": log_details["outcome"]},
    )
    return True


def _release_job_files(job_id: uuid.UUID, payload_path: str) -> None:
    """After finalization: the payload and the job's temporary public media are deleted."""
    files.delete_quietly(payload_path)
    for media in MediaObject.objects.filter(job_id=job_id):
        files.delete_quietly(media.path)
        media.delete()


def _milliseconds(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)
