"""Reading jobs for people: filtered, sorted pages of jobs and one job with its history.

Used by the admin API (GET /api/jobs, GET /api/jobs/<id>) and the dashboard. A page costs two
queries whatever its size (the count and the rows); the timings are computed by the database
from the job's recorded instants, the deadline from the job's `expires_at` and the current time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    CharField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobqueue import deadlines
from jobqueue.models import FailureReason, Job, JobStatus, ProcessingLog
from photobooth.errors import NotFound
from photobooth.links import result_download_url

# What a person sees as a job's status: the queue's own status while the job is unfinalized,
# then whether it succeeded (no failure_reason) or failed (failure_reason says why).
PENDING, PROCESSING, SUCCEEDED, FAILED = "pending", "processing", "succeeded", "failed"
STATUSES = (PENDING, PROCESSING, SUCCEEDED, FAILED)
FAILURE_REASONS = tuple(str(reason) for reason in FailureReason.values)

SORTS = ("created_at", "-created_at", "expires_at", "-expires_at")
DEFAULT_SORT = "-created_at"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Far beyond any real history; keeps the row offset within what every database accepts.
MAX_PAGE = 1_000_000

_STATUS_CONDITIONS: Mapping[str, Q] = {
    PENDING: Q(is_finalized=False, status=JobStatus.PENDING),
    PROCESSING: Q(is_finalized=False, status=JobStatus.PROCESSING),
    SUCCEEDED: Q(is_finalized=True, failure_reason__isnull=True),
    FAILED: Q(is_finalized=True, failure_reason__isnull=False),
}

# The columns a job view needs: never the settings snapshot, metadata or payload details.
_COLUMNS = (
    "id",
    "slot_id",
    "provider_id",
    "operation_id",
    "is_finalized",
    "failure_reason",
    "failure_detail",
    "created_at",
    "started_at",
    "finalized_at",
    "expires_at",
    "attempt_count",
    "result_path",
    "result_mime",
    "result_size",
    "result_expires_at",
)


@dataclass(frozen=True)
class JobFilters:
    """Which jobs to show; None means "any". Times are inclusive after, exclusive before."""

    status: str | None = None
    is_finalized: bool | None = None
    failure_reason: str | None = None
    slot_id: str | None = None
    provider_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def condition(self) -> Q:
        """The filters as one database condition."""
        condition = Q()
        if self.status is not None:
            if self.status not in _STATUS_CONDITIONS:
                raise ValueError(f"unknown status {self.status!r}")
            condition &= _STATUS_CONDITIONS[self.status]
        if self.is_finalized is not None:
            condition &= Q(is_finalized=self.is_finalized)
        if self.failure_reason is not None:
            condition &= Q(failure_reason=self.failure_reason)
        if self.slot_id is not None:
            condition &= Q(slot_id=self.slot_id)
        if self.provider_id is not None:
            condition &= Q(provider_id=self.provider_id)
        if self.created_after is not None:
            condition &= Q(created_at__gte=self.created_after)
        if self.created_before is not None:
            condition &= Q(created_at__lt=self.created_before)
        return condition


@dataclass(frozen=True)
class Deadline:
    """Time left before the booth's answer is due; 0 and expired once it has passed."""

    remaining_ms: int
    is_expired: bool


@dataclass(frozen=True)
class Timings:
    """Durations in milliseconds; None until the instants they span are known.

    queue_wait_ms: from arrival until a worker (last) picked the job up — or, for a job that
    was finalized while still waiting, until it was finalized. processing_ms: from the (last)
    pick-up until finalization. total_elapsed_ms: from arrival until finalization.
    """

    queue_wait_ms: int | None
    processing_ms: int | None
    total_elapsed_ms: int | None


@dataclass(frozen=True)
class Result:
    """A succeeded job's result, downloadable by guests at `download_url` until `expires_at`."""

    download_url: str
    mime: str
    size: int
    expires_at: datetime


@dataclass(frozen=True)
class LogEntry:
    event: str
    created_at: datetime
    details: dict[str, Any]


@dataclass(frozen=True)
class JobView:
    """One job as the API and the dashboard show it."""

    id: uuid.UUID
    slot_id: str
    provider_id: str
    operation_id: str
    status: str
    is_finalized: bool
    failure_reason: str | None
    failure_detail: str
    created_at: datetime
    started_at: datetime | None
    finalized_at: datetime | None
    expires_at: datetime
    attempt_count: int
    deadline: Deadline
    timings: Timings
    result: Result | None


@dataclass(frozen=True)
class JobDetail(JobView):
    """A job with its processing log, oldest event first."""

    log: list[LogEntry] = field(default_factory=list)


@dataclass(frozen=True)
class JobPage:
    """One page of jobs; `count` is the number of matching jobs on all pages."""

    count: int
    page: int
    page_size: int
    results: list[JobView]


def _duration(end: Combinable, start: Combinable) -> ExpressionWrapper:
    return ExpressionWrapper(end - start, output_field=DurationField())


def _with_views(jobs: QuerySet[Job]) -> QuerySet[Job, dict[str, Any]]:
    """The columns a view needs plus its status and timings, computed by the database."""
    return jobs.values(*_COLUMNS).annotate(
        view_status=Case(
            When(_STATUS_CONDITIONS[PENDING], then=Value(PENDING)),
            When(_STATUS_CONDITIONS[PROCESSING], then=Value(PROCESSING)),
            When(_STATUS_CONDITIONS[SUCCEEDED], then=Value(SUCCEEDED)),
            default=Value(FAILED),
            output_field=CharField(),
        ),
        queue_wait=_duration(Coalesce(F("started_at"), F("finalized_at")), F("created_at")),
        processing_time=_duration(F("finalized_at"), F("started_at")),
        total_elapsed=_duration(F("finalized_at"), F("created_at")),
    )


def _milliseconds(duration: timedelta | None) -> int | None:
    """Whole milliseconds, never negative (clocks of different machines may disagree)."""
    if duration is None:
        return None
    return max(0, int(duration.total_seconds() * 1000))


def _view_fields(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    result = None
    succeeded = row["view_status"] == SUCCEEDED
    if succeeded and row["result_path"] and row["result_expires_at"] is not None:
        result = Result(
            download_url=result_download_url(row["id"]),
            mime=row["result_mime"],
            size=row["result_size"] or 0,
            expires_at=row["result_expires_at"],
        )
    expires_at: datetime = row["expires_at"]
    return {
        "id": row["id"],
        "slot_id": row["slot_id"],
        "provider_id": row["provider_id"],
        "operation_id": row["operation_id"],
        "status": row["view_status"],
        "is_finalized": row["is_finalized"],
        "failure_reason": row["failure_reason"],
        "failure_detail": row["failure_detail"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finalized_at": row["finalized_at"],
        "expires_at": expires_at,
        "attempt_count": row["attempt_count"],
        "deadline": Deadline(
            remaining_ms=_milliseconds(deadlines.remaining(deadline=expires_at, now=now)) or 0,
            is_expired=deadlines.is_expired(deadline=expires_at, now=now),
        ),
        "timings": Timings(
            queue_wait_ms=_milliseconds(row["queue_wait"]),
            processing_ms=_milliseconds(row["processing_time"]),
            total_elapsed_ms=_milliseconds(row["total_elapsed"]),
        ),
        "result": result,
    }


def job_page(
    filters: JobFilters = JobFilters(),  # noqa: B008 (frozen, so sharing it is safe)
    *,
    sort: str = DEFAULT_SORT,
    page: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    now: datetime | None = None,
) -> JobPage:
    """Page `page` (from 1) of the jobs matching `filters`, in `sort` order.

    A page past the last one is empty (with the true count). Ties in the sort order are broken
    by job id, so pages never repeat or skip a job while the data stays the same.
    """
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE}")
    now = now or timezone.now()
    matching = Job.objects.filter(filters.condition())
    count = matching.count()
    offset = (page - 1) * page_size
    rows: list[dict[str, Any]] = []
    if offset < count:
        tie_breaker = "-id" if sort.startswith("-") else "id"
        ordered = _with_views(matching).order_by(sort, tie_breaker)
        rows = list(ordered[offset : offset + page_size])
    return JobPage(
        count=count,
        page=page,
        page_size=page_size,
        results=[JobView(**_view_fields(row, now)) for row in rows],
    )


def job_detail(job_id: uuid.UUID | str, *, now: datetime | None = None) -> JobDetail:
    """One job with its processing log; NotFound for an unknown (or malformed) id."""
    try:
        key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except ValueError as error:
        raise NotFound("No job with this id.", code="job_not_found") from error
    row = _with_views(Job.objects.filter(id=key)).first()
    if row is None:
        raise NotFound("No job with this id.", code="job_not_found")
    log = [
        LogEntry(event=event, created_at=created_at, details=details)
        for event, created_at, details in ProcessingLog.objects.filter(job_id=key)
        .order_by("created_at", "id")
        .values_list("event", "created_at", "details")
    ]
    return JobDetail(**_view_fields(row, now or timezone.now()), log=log)
