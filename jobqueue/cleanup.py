"""Removing what has expired: jobs past their deadline, temporary media, results past retention.

Run by `run_workers` every WORKER_REAP_SECONDS and on demand by `manage.py cleanup`. Job rows and
their processing logs are kept: they feed the statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from jobqueue import files, services
from jobqueue.models import Job, MediaObject, WorkerHeartbeat

logger = logging.getLogger(__name__)

BATCH = 500
# Heartbeat rows of workers that vanished without a clean stop stay visible this long.
STALE_HEARTBEAT_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class CleanupReport:
    jobs_timed_out: int
    media_removed: int
    results_removed: int


def run_cleanup(*, actor: str) -> CleanupReport:
    """One pass over everything that has expired."""
    WorkerHeartbeat.objects.filter(last_seen_at__lt=timezone.now() - STALE_HEARTBEAT_KEPT).delete()
    report = CleanupReport(
        jobs_timed_out=services.timeout_expired_jobs(finalized_by=actor, limit=BATCH),
        media_removed=purge_expired_media(),
        results_removed=purge_expired_results(),
    )
    if any((report.jobs_timed_out, report.media_removed, report.results_removed)):
        logger.info(
            "cleanup",
            extra={
                "jobs_timed_out": report.jobs_timed_out,
                "media_removed": report.media_removed,
                "results_removed": report.results_removed,
            },
        )
    return report


def purge_expired_media() -> int:
    """Delete temporary public media past their expiry (file and row)."""
    expired = list(MediaObject.objects.filter(expires_at__lte=timezone.now())[:BATCH])
    for media in expired:
        files.delete_quietly(media.path)
        media.delete()
    return len(expired)


def purge_expired_results() -> int:
    """Delete result files past retention; the job row keeps its history, the link answers 410."""
    expired = list(
        Job.objects.filter(result_expires_at__lte=timezone.now())
        .exclude(result_path="")
        .values_list("id", "result_path")[:BATCH]
    )
    for job_id, path in expired:
        files.delete_quietly(path)
        Job.objects.filter(id=job_id, result_path=path).update(result_path="")
    return len(expired)
