"""Removing what has expired: jobs past their deadline, temporary media, results past retention.

Run by `run_workers` every WORKER_REAP_SECONDS and on demand by `manage.py cleanup`. Job rows and
their processing logs feed the statistics: they are kept for JOB_HISTORY_DAYS (90 by default)
after the job finalized, then deleted together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from jobqueue import files, services
from jobqueue.models import Job, MediaObject, WorkerHeartbeat

logger = logging.getLogger(__name__)

BATCH = 500
# Heartbeat rows of workers that vanished without a clean stop stay visible this long.
STALE_HEARTBEAT_KEPT = timedelta(days=1)


# A file no row refers to is an orphan once it is this old: a process died between writing it
# and committing its row (payload before the job insert, result before finalization). Far
# longer than any job lives, so a file about to be referenced is never taken.
ORPHAN_MIN_AGE = timedelta(minutes=10)
# "incoming" holds upload spool files, left behind only by a process killed mid-upload;
# "templates" files whose row was deleted while a queued job still needed them.
ORPHAN_FOLDERS = ("payloads", "results", "media", "incoming", "templates")


@dataclass(frozen=True)
class CleanupReport:
    jobs_timed_out: int
    media_removed: int
    results_removed: int
    orphans_removed: int = 0
    history_removed: int = 0


def run_cleanup(
    *, actor: str, sweep_orphans: bool = False, history: timedelta | None = None
) -> CleanupReport:
    """One pass over everything that has expired; optionally also over orphaned files."""
    WorkerHeartbeat.objects.filter(last_seen_at__lt=timezone.now() - STALE_HEARTBEAT_KEPT).delete()
    report = CleanupReport(
        jobs_timed_out=services.timeout_expired_jobs(finalized_by=actor, limit=BATCH),
        media_removed=purge_expired_media(),
        results_removed=purge_expired_results(),
        orphans_removed=sweep_orphan_files(min_age=ORPHAN_MIN_AGE) if sweep_orphans else 0,
        history_removed=purge_old_history(
            keep=history or timedelta(days=settings.JOB_HISTORY_DAYS)
        ),
    )
    if any(vars(report).values()):
        logger.info("cleanup", extra={"actor": actor, **vars(report)})
    return report


def purge_old_history(*, keep: timedelta) -> int:
    """Delete finalized jobs (and their logs) older than `keep` whose result file is gone."""
    old = list(
        Job.objects.filter(
            is_finalized=True, finalized_at__lt=timezone.now() - keep, result_path=""
        ).values_list("id", flat=True)[:BATCH]
    )
    if old:
        Job.objects.filter(id__in=old).delete()
    return len(old)


def sweep_orphan_files(*, min_age: timedelta) -> int:
    """Delete job files older than `min_age` that no job or media row refers to."""
    cutoff = timezone.now() - min_age
    removed = 0
    for folder in ORPHAN_FOLDERS:
        old = [path for path in files.walk(folder) if files.modified_at(path) < cutoff]
        for start in range(0, len(old), BATCH):
            batch = old[start : start + BATCH]
            referenced = _still_referenced(folder, batch)
            for path in batch:
                if path not in referenced:
                    files.delete_quietly(path)
                    removed += 1
    return removed


def _still_referenced(folder: str, batch: list[str]) -> set[str]:
    if folder == "templates":
        # Template files belong to the ingest app: a template row or an unfinished job's
        # snapshot may still need them.
        from ingest.media_service import template_paths_still_needed

        return template_paths_still_needed(batch)
    return {
        *Job.objects.filter(payload_path__in=batch).values_list("payload_path", flat=True),
        *Job.objects.filter(result_path__in=batch).values_list("result_path", flat=True),
        *MediaObject.objects.filter(path__in=batch).values_list("path", flat=True),
    }


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
