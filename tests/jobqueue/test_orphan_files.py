"""Files a killed process left behind (written, never referenced) are swept; nothing else is."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage

from jobqueue import files
from jobqueue.cleanup import ORPHAN_MIN_AGE, sweep_orphan_files
from tests.jobqueue.test_queue_services import enqueue

pytestmark = pytest.mark.django_db


def age(path: str, by: timedelta) -> None:
    """Make a stored file look older (its modification time), as the disk would after a while."""
    when = time.time() - by.total_seconds()
    os.utime(default_storage.path(path), (when, when))


def orphan(kind: str) -> str:
    return files.store_bytes(
        kind=kind, stem=str(uuid.uuid4()), mime="image/jpeg", data=b"\xff\xd8\xff" + b"0" * 64
    ).path


def test_old_files_no_row_refers_to_are_swept_and_referenced_ones_are_kept() -> None:
    queued = enqueue()
    age(queued.payload_path, ORPHAN_MIN_AGE * 2)
    # "incoming": an upload spool file left by a web process killed mid-upload.
    old_orphans = [orphan("payloads"), orphan("results"), orphan("media"), orphan("incoming")]
    for path in old_orphans:
        age(path, ORPHAN_MIN_AGE * 2)
    young_orphan = orphan("results")  # maybe a result about to be finalized: not touched

    removed = sweep_orphan_files(min_age=ORPHAN_MIN_AGE)

    assert removed == 4
    assert not any(files.exists(path) for path in old_orphans)
    assert files.exists(queued.payload_path)
    assert files.exists(young_orphan)


def test_template_files_are_kept_while_a_template_or_an_unfinished_job_needs_them() -> None:
    from ingest.models import TemplateMedia
    from jobqueue.models import Job

    def template_file() -> str:
        path = files.store_bytes(
            kind="templates", stem=str(uuid.uuid4()), mime="image/png", data=b"\x89PNG\r\n\x1a\n"
        ).path
        age(path, ORPHAN_MIN_AGE * 100)
        return path

    in_use = template_file()
    TemplateMedia.objects.create(
        path=in_use, mime="image/png", size=8, sha256="0" * 64, width=1, height=1
    )
    needed_by_queued_job = template_file()  # its template row was deleted meanwhile
    queued = enqueue()
    Job.objects.filter(id=queued.id).update(
        template_refs={"frame_media_id": {"path": needed_by_queued_job, "mime": "image/png"}}
    )
    forgotten = template_file()

    sweep_orphan_files(min_age=ORPHAN_MIN_AGE)

    assert files.exists(in_use)
    assert files.exists(needed_by_queued_job)
    assert not files.exists(forgotten)


def test_job_history_is_kept_for_its_retention_then_deleted_with_its_logs() -> None:
    from django.utils import timezone

    from jobqueue.cleanup import purge_old_history
    from jobqueue.models import Job, ProcessingLog

    old, recent = enqueue(), enqueue()
    for job, days in ((old, 91), (recent, 89)):
        Job.objects.filter(id=job.id).update(
            is_finalized=True,
            failure_reason="provider_error",
            payload_path="",
            finalized_at=timezone.now() - timedelta(days=days),
        )

    assert purge_old_history(keep=timedelta(days=90)) == 1

    assert not Job.objects.filter(id=old.id).exists()
    assert not ProcessingLog.objects.filter(job_id=old.id).exists()
    assert Job.objects.filter(id=recent.id).exists()
