"""Queue operations: enqueue, acquire, finalize, time out. Each is one short transaction.

A job is finalized exactly once: every finalizing UPDATE is conditional on `is_finalized=False`
(and, for a worker, on still holding the job's lease token), and the caller learns from the
row count whether it won. Files are deleted only after the transaction that released them
commits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F
from django.utils import timezone

from jobqueue import deadlines, files
from jobqueue.models import (
    FailureReason,
    Job,
    JobStatus,
    MediaObject,
    ProcessingLog,
    WorkerHeartbeat,
)
from jobqueue.notifications import FINALIZED_CHANNEL, JOBS_CHANNEL, notify, notify_many
from photobooth import metrics
from photobooth.request_id import current_request_id, request_id_context

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobConfiguration:
    """The slot configuration a job is snapshotted from."""

    slot_id: str
    provider_id: str
    operation_id: str
    settings: Mapping[str, Any]
    template_refs: Mapping[str, Mapping[str, str]]
    qr_stamp: bool = False


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
    admit: Callable[[], None] | None = None,
) -> Job:
    """Create a pending job (deadline counted from when the request arrived) and its log.

    `admit`, if given, runs first inside the same transaction and may raise to refuse the job
    (back-pressure): on SQLite the transaction holds the write lock, so the check is exact.
    """
    job_deadlines = deadlines.job_deadlines(created_at=received_at, sync_response=sync_response)
    with transaction.atomic():
        if admit is not None:
            admit()
        job = Job.objects.create(
            id=job_id or uuid.uuid4(),
            slot_id=configuration.slot_id,
            provider_id=configuration.provider_id,
            operation_id=configuration.operation_id,
            settings_snapshot=dict(configuration.settings),
            template_refs={key: dict(ref) for key, ref in configuration.template_refs.items()},
            qr_stamp=configuration.qr_stamp,
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
                    # The request's correlation id: the worker logs this job's lines under it.
                    details=_with_request_id(received_details),
                ),
                ProcessingLog(
                    job=job,
                    event=ProcessingLog.Event.QUEUED,
                    created_at=now,
                    details={"expires_at": job.expires_at.isoformat()},
                ),
            ]
        )
        notify(JOBS_CHANNEL)
    logger.info(
        "job queued",
        extra={"job_id": str(job.id), "slot_id": job.slot_id, "provider": job.provider_id},
    )
    return job


def _with_request_id(details: Mapping[str, Any] | None) -> dict[str, Any]:
    request_id = current_request_id()
    return {**(details or {}), **({"request_id": request_id} if request_id else {})}


@dataclass(frozen=True)
class ConcurrencyLimits:
    """Caps on jobs processing at once across all worker processes and machines."""

    per_provider: Mapping[str, int]
    total: int = 0  # 0: no global cap

    @property
    def any(self) -> bool:
        return bool(self.per_provider) or self.total > 0


NO_LIMITS = ConcurrencyLimits(per_provider={})
DEFAULT_LEASE = timedelta(seconds=8)

# Key of the PostgreSQL advisory lock that serializes acquisitions while caps are configured.
_ACQUIRE_LOCK_KEY = 0x70686F746F  # "photo"


def acquire_jobs(
    *,
    worker_id: str,
    limit: int,
    lease: timedelta = DEFAULT_LEASE,
    limits: ConcurrencyLimits = NO_LIMITS,
) -> list[Job]:
    """Take up to `limit` jobs whose deadline is ahead, oldest first, under a fresh lease.

    Jobs whose previous holder's lease lapsed (the worker died) are taken over before pending
    ones. On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so concurrent workers
    take disjoint sets. On SQLite the transaction is IMMEDIATE (see settings): it holds the
    database's write lock from its first statement, so select-then-update is an atomic
    compare-and-set. With concurrency caps, acquisitions are serialized (an advisory lock on
    PostgreSQL) so that counting running jobs and taking new ones cannot interleave.
    """
    if limit <= 0:
        return []
    token = uuid.uuid4()
    with transaction.atomic():
        if limits.any and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ACQUIRE_LOCK_KEY])
        now = timezone.now()
        ready = Job.objects.select_for_update(skip_locked=True).filter(
            is_finalized=False, expires_at__gt=now
        )
        lapsed = ready.filter(status=JobStatus.PROCESSING, lease_expires_at__lt=now)
        pending = ready.filter(status=JobStatus.PENDING)
        # Candidates beyond `limit` only matter when caps may skip some of them.
        fetch = limit * 4 if limits.any else limit
        candidates = [
            *lapsed.order_by("created_at").values_list("id", "provider_id")[:fetch],
            *pending.order_by("created_at").values_list("id", "provider_id")[:fetch],
        ]
        ids = _within_limits(candidates, limit=limit, limits=limits, now=now)
        if not ids:
            return []
        # The SELECT may have waited for locks: jobs committed meanwhile must not look picked
        # up before they were queued.
        now = timezone.now()
        Job.objects.filter(id__in=ids, is_finalized=False).update(
            status=JobStatus.PROCESSING,
            lease_token=token,
            lease_expires_at=now + lease,
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


def _within_limits(
    candidates: list[tuple[uuid.UUID, str]],
    *,
    limit: int,
    limits: ConcurrencyLimits,
    now: datetime,
) -> list[uuid.UUID]:
    """The first `limit` candidates that fit under the per-provider and total caps."""
    if not limits.any:
        return [job_id for job_id, _ in candidates[:limit]]
    running = dict(
        Job.objects.filter(
            status=JobStatus.PROCESSING, is_finalized=False, lease_expires_at__gte=now
        )
        .values_list("provider_id")
        .annotate(count=Count("id"))
        .values_list("provider_id", "count")
    )
    room_total = limits.total - sum(running.values()) if limits.total else limit
    chosen: list[uuid.UUID] = []
    for job_id, provider_id in candidates:
        if len(chosen) >= min(limit, room_total):
            break
        cap = limits.per_provider.get(provider_id)
        if cap is not None and running.get(provider_id, 0) >= cap:
            continue
        chosen.append(job_id)
        running[provider_id] = running.get(provider_id, 0) + 1
    return chosen


def renew_leases(*, jobs: list[Job], lease: timedelta = DEFAULT_LEASE) -> set[uuid.UUID]:
    """Extend the leases this worker holds on running jobs. Returns the ids it still holds."""
    if not jobs:
        return set()
    held = Job.objects.filter(
        id__in=[job.id for job in jobs],
        lease_token__in={job.lease_token for job in jobs},
        is_finalized=False,
    )
    held.update(lease_expires_at=timezone.now() + lease)
    return set(held.values_list("id", flat=True))


def release_jobs(*, jobs: list[Job]) -> int:
    """Give jobs back to the queue (shutdown): other workers take them while time remains."""
    released = 0
    for job in jobs:
        with transaction.atomic():
            changed = Job.objects.filter(
                id=job.id, lease_token=job.lease_token, is_finalized=False
            ).update(
                status=JobStatus.PENDING,
                lease_token=None,
                lease_expires_at=None,
                worker_id="",
                updated_at=timezone.now(),
            )
            if changed:
                record_event(job.id, ProcessingLog.Event.RELEASED, {"worker_id": job.worker_id})
                notify(JOBS_CHANNEL)
        if changed:
            logger.info(
                "job released to the queue",
                extra={"job_id": str(job.id), "slot_id": job.slot_id, "worker_id": job.worker_id},
            )
        released += changed
    return released


def record_heartbeat(
    *, worker_id: str, concurrency: int, job_ids: list[uuid.UUID], is_stopping: bool
) -> None:
    """Note that this worker is alive and what it is doing."""
    now = timezone.now()
    host, _, pid = worker_id.rpartition(":")
    fields = {
        "hostname": host or worker_id,
        "pid": int(pid) if pid.isdigit() else 0,
        "concurrency": concurrency,
        "last_seen_at": now,
        "current_job_ids": [str(job_id) for job_id in job_ids],
        "is_stopping": is_stopping,
    }
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id, defaults=fields, create_defaults={**fields, "started_at": now}
    )


def forget_worker(*, worker_id: str) -> None:
    """A worker that stopped cleanly removes its heartbeat row."""
    WorkerHeartbeat.objects.filter(worker_id=worker_id).delete()


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


_TIMEOUT_FIELDS = {"failure_reason": FailureReason.TIMEOUT, "failure_detail": "deadline reached"}


def finalize_expired_many(
    *,
    job_ids: Sequence[uuid.UUID],
    finalized_by: str,
    request_ids: Mapping[uuid.UUID, str | None] | None = None,
) -> set[uuid.UUID]:
    """Finalize as `timeout` those of these jobs that are unfinalized and past their deadline,
    in one transaction of four statements however many there are; returns their ids.

    What a burst of requests reaching their deadline together needs: one transaction each
    would queue behind one another and answer the last booths late. The rows are locked in id
    order, so two batches (web processes, the reaper) cannot deadlock, and a finalization that
    got there first (a result, another batch) makes a job drop out. `request_ids`: the
    correlation id each job's "job finalized" log line carries.
    """
    if not job_ids:
        return set()
    with transaction.atomic():
        now = timezone.now()
        expired = list(
            Job.objects.select_for_update()
            .filter(id__in=job_ids, is_finalized=False, expires_at__lte=now)
            .order_by("id")
        )
        if not expired:
            return set()
        Job.objects.filter(id__in=[job.id for job in expired]).update(
            is_finalized=True, finalized_at=now, updated_at=now, payload_path="", **_TIMEOUT_FIELDS
        )
        details = {
            job.id: _finalized_details(
                job,
                now=now,
                log_details={"outcome": FailureReason.TIMEOUT, "finalized_by": finalized_by},
            )
            for job in expired
        }
        ProcessingLog.objects.bulk_create(
            ProcessingLog(
                job_id=job_id, event=ProcessingLog.Event.FINALIZED, created_at=now, details=d
            )
            for job_id, d in details.items()
        )
        notify_many(FINALIZED_CHANNEL, [str(job.id) for job in expired])
        payloads = {job.id: job.payload_path for job in expired}
        transaction.on_commit(lambda: _release_job_files(payloads))
    for job in expired:
        with request_id_context((request_ids or {}).get(job.id) or current_request_id()):
            _finalized(job, outcome=FailureReason.TIMEOUT, now=now, details=details[job.id])
    return {job.id for job in expired}


def timeout_expired_jobs(*, finalized_by: str, limit: int = 500) -> int:
    """Finalize every unfinalized job past its deadline as `timeout`. Returns how many."""
    now = timezone.now()
    expired = Job.objects.filter(is_finalized=False, expires_at__lte=now).order_by("expires_at")
    job_ids = list(expired.values_list("id", flat=True)[:limit])
    return len(finalize_expired_many(job_ids=job_ids, finalized_by=finalized_by))


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
        details = _finalized_details(job, now=now, log_details=log_details)
        record_event(job.id, ProcessingLog.Event.FINALIZED, details)
        notify(FINALIZED_CHANNEL, str(job.id))
        payloads = {job.id: job.payload_path}
        transaction.on_commit(lambda: _release_job_files(payloads))
    _finalized(job, outcome=str(log_details["outcome"]), now=now, details=details)
    return True


def _finalized_details(
    job: Job, *, now: datetime, log_details: Mapping[str, Any]
) -> dict[str, Any]:
    """What the FINALIZED log row (and log line) of a job says."""
    details = {**log_details, "total_elapsed_ms": _milliseconds(now - job.created_at)}
    if job.started_at:
        details["processing_ms"] = _milliseconds(now - job.started_at)
    return details


def _finalized(job: Job, *, outcome: str, now: datetime, details: Mapping[str, Any]) -> None:
    """After a finalization committed: its metrics and its log line."""
    metrics.observe_finalized(job, outcome=outcome, finalized_at=now)
    logger.info(
        "job finalized",
        extra={
            "job_id": str(job.id),
            "slot_id": job.slot_id,
            "provider": job.provider_id,
            **details,
        },
    )


def _release_job_files(payloads: Mapping[uuid.UUID, str]) -> None:
    """After finalization: the jobs' payloads (job id -> path) and their temporary public media
    are deleted."""
    for path in payloads.values():
        files.delete_quietly(path)
    media = list(MediaObject.objects.filter(job_id__in=list(payloads)))
    for item in media:
        files.delete_quietly(item.path)
    MediaObject.objects.filter(id__in=[item.id for item in media]).delete()


def _milliseconds(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)
