"""Real `manage.py run_workers` processes draining the queue: exactly once, and stopping cleanly."""

from __future__ import annotations

import io
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from ingest.models import IngestSettings
from ingest.services import IngestUpload, accept_photo, update_slot
from jobqueue.models import Job, JobStatus, ProcessingLog
from tests.support.images import make_photo
from tests.support.stack import ManagedProcess, start_workers, wait_until

StartWorkers = Callable[..., ManagedProcess]


@pytest.fixture
def worker_processes(live_db: None, tmp_path: Path) -> Iterator[StartWorkers]:
    """Starts run_workers processes for one test; stops those still running afterwards."""
    started: list[ManagedProcess] = []

    def start(name: str, concurrency: int = 2) -> ManagedProcess:
        process = start_workers(tmp_path, concurrency=concurrency, name=name)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


def sleeping_slot(seconds: float) -> None:
    update_slot(
        slot_id="slot-002",
        provider_id="testing",
        operation_id="sleep",
        settings={"seconds": seconds},
        is_active=True,
    )


def queue_photo(password: str, photo: bytes) -> Job:
    return accept_photo(
        IngestUpload(
            slot_id="slot-002",
            password=password,
            photo=io.BytesIO(photo),
            photo_size=len(photo),
            photo_name="IMG_0001.JPG",
            fields={},
            received_at=timezone.now(),
        ),
        max_upload_bytes=15 * 1024 * 1024,
    )


def is_ready(process: ManagedProcess) -> bool:
    if process.process is not None and process.process.poll() is not None:
        raise AssertionError(f"{process.name} exited:\n{process.output()}")
    return "workers running" in process.output()


def test_two_worker_processes_run_every_queued_job_exactly_once(
    worker_processes: StartWorkers, ingest_password: str, settings: Any
) -> None:
    settings.INGEST_MAX_UNFINISHED_PER_SLOT = 100  # the burst is the point here
    sleeping_slot(0.05)
    first, second = worker_processes("workers-a"), worker_processes("workers-b")
    wait_until(lambda: is_ready(first) and is_ready(second), timeout=20)
    photo = make_photo(width=160, height=120)

    queued = {queue_photo(ingest_password, photo).id for _ in range(40)}

    wait_until(
        lambda: Job.objects.filter(id__in=queued, is_finalized=True).count() == 40, timeout=30
    )
    jobs = Job.objects.filter(id__in=queued).annotate(
        picked_up=Count("logs", filter=Q(logs__event=ProcessingLog.Event.PICKED_UP)),
        finalized=Count("logs", filter=Q(logs__event=ProcessingLog.Event.FINALIZED)),
    )
    assert len(jobs) == 40
    for job in jobs:
        assert job.succeeded, (job.failure_reason, job.failure_detail, first.output())
        assert (job.picked_up, job.finalized, job.attempt_count) == (1, 1, 1), job.id
        assert job.result_path and job.payload_path == ""
    worker_ids = set(jobs.values_list("worker_id", flat=True))
    assert worker_ids and "" not in worker_ids and len(worker_ids) <= 2


def test_sigterm_lets_the_job_in_flight_finish_and_takes_no_new_job(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=20)
    sleeping_slot(1.5)
    workers = worker_processes("workers", concurrency=2)
    wait_until(lambda: is_ready(workers), timeout=20)
    in_flight = queue_photo(ingest_password, photo_jpeg)
    wait_until(
        lambda: Job.objects.filter(id=in_flight.id, status=JobStatus.PROCESSING).exists(),
        timeout=10,
    )
    assert workers.process is not None

    workers.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in workers.output(), timeout=5)
    # The worker has a free slot, but is stopping: this job must wait for another worker.
    after_stop = queue_photo(ingest_password, photo_jpeg)
    returncode = workers.process.wait(timeout=15)

    assert returncode == 0, workers.output()
    in_flight.refresh_from_db()
    assert in_flight.succeeded, (in_flight.failure_reason, workers.output())
    after_stop.refresh_from_db()
    assert after_stop.status == JobStatus.PENDING and not after_stop.is_finalized
    assert not after_stop.logs.filter(event=ProcessingLog.Event.PICKED_UP).exists()


@pytest.mark.postgres_only
def test_a_job_is_never_recorded_as_picked_up_before_it_was_queued(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    sleeping_slot(0)
    workers = worker_processes("workers", concurrency=1)
    wait_until(lambda: is_ready(workers), timeout=20)

    # Make the worker's next look for jobs wait, then queue a job while it waits. Without the
    # lock this happens by chance now and then when a job arrives just as a worker polls.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE jobqueue_job IN EXCLUSIVE MODE")

        def worker_is_waiting() -> bool:
            cursor.execute(
                "SELECT count(*) FROM pg_locks"
                " WHERE relation = 'jobqueue_job'::regclass AND NOT granted"
            )
            row = cursor.fetchone()
            return bool(row and row[0])

        wait_until(worker_is_waiting, timeout=10)
        job = queue_photo(ingest_password, photo_jpeg)

    wait_until(lambda: Job.objects.filter(id=job.id, is_finalized=True).exists(), timeout=10)
    job.refresh_from_db()
    assert job.succeeded
    events = list(job.logs.order_by("created_at", "id").values_list("event", flat=True))
    assert events == ["received", "queued", "picked_up", "provider_call", "finalized"]
    assert job.started_at is not None and job.started_at >= job.created_at
    picked_up = job.logs.get(event=ProcessingLog.Event.PICKED_UP)
    assert picked_up.details["queue_wait_ms"] >= 0
