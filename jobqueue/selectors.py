"""Reads about the queue that other layers need: load and worker liveness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from jobqueue.models import Job, WorkerHeartbeat


@dataclass(frozen=True)
class QueueLoad:
    unfinished_for_slot: int
    unfinished_total: int


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
