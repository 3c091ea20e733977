"""Reads about the queue that other layers need: load and worker liveness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from jobqueue.models import Job, WorkerHeartbeat


@dataclass(frozen=True)
class QueueLoad:
    unfinished_for_slot: int
    unfinished_total: int


def retained_results(*, now: datetime) -> QuerySet[Job]:
    """Jobs whose result can still be downloaded at `now`: succeeded, with a result file, not
    past its retention. What galleries, archives and the recent results of a slot show."""
    return Job.objects.filter(
        is_finalized=True, failure_reason__isnull=True, result_expires_at__gt=now
    ).exclude(result_path="")


def queue_load(*, slot_id: str) -> QueueLoad:
    """Unfinalized jobs for one slot and in total, in one query."""
    counts = Job.objects.filter(is_finalized=False).aggregate(
        total=Count("id"), slot=Count("id", filter=Q(slot_id=slot_id))
    )
    return QueueLoad(unfinished_for_slot=counts["slot"], unfinished_total=counts["total"])


def any_live_worker(*, stale_after: timedelta) -> bool:
    """True if a worker sent a heartbeat within `stale_after` and is not stopping."""
    since = timezone.now() - stale_after
    return WorkerHeartbeat.objects.filter(last_seen_at__gte=since, is_stopping=False).exists()
