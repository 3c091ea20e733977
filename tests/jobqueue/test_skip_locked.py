"""Concurrent workers on PostgreSQL: a locked job is skipped, never waited for or taken twice."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from jobqueue import services
from jobqueue.models import Job, JobStatus, ProcessingLog

pytestmark = pytest.mark.postgres_only

CONFIGURATION = services.JobConfiguration(
    slot_id="slot-006",
    provider_id="local",
    operation_id="photo_look",
    settings={"look": "sepia"},
    template_refs={},
)


def enqueue(*, seconds_ago: float) -> Job:
    # The payload file is never read by these tests: only the queue rows matter.
    return services.enqueue_job(
        configuration=CONFIGURATION,
        payload=services.StoredPayload(
            path=f"payloads/{uuid.uuid4()}.jpg", mime="image/jpeg", size=1, sha256="0" * 64
        ),
        metadata={},
        received_at=timezone.now() - timedelta(seconds=seconds_ago),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=72),
    )


def second_connection() -> psycopg.Connection[tuple[object, ...]]:
    """A connection of its own to the test database, like another worker process's."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
    )


@pytest.fixture
def lock_timeout(live_db: None) -> Iterator[None]:
    """Without SKIP LOCKED an acquire would wait for the lock: fail after 5 s, never hang."""
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout")


def test_a_job_locked_by_another_worker_is_skipped_for_the_next_one(lock_timeout: None) -> None:
    oldest = enqueue(seconds_ago=3)
    next_oldest = enqueue(seconds_ago=2)
    newest = enqueue(seconds_ago=1)
    other_worker = second_connection()
    try:
        # psycopg opens a transaction with the first statement: the lock is held until rollback.
        other_worker.execute("SELECT id FROM jobqueue_job WHERE id = %s FOR UPDATE", [oldest.id])

        taken = services.acquire_jobs(worker_id="worker-a", limit=1)

        assert [job.id for job in taken] == [next_oldest.id]
        oldest.refresh_from_db()
        assert oldest.status == JobStatus.PENDING and oldest.attempt_count == 0
        rest = services.acquire_jobs(worker_id="worker-a", limit=10)
        assert [job.id for job in rest] == [newest.id]
    finally:
        other_worker.rollback()
        other_worker.close()

    # Once the other transaction ends, the job it held is available again.
    taken = services.acquire_jobs(worker_id="worker-b", limit=10)
    assert [job.id for job in taken] == [oldest.id]


def test_concurrent_workers_take_disjoint_jobs_and_together_take_all(live_db: None) -> None:
    jobs = [enqueue(seconds_ago=(200 - index) / 100) for index in range(200)]
    workers = 8
    start = threading.Barrier(workers)
    taken_by: dict[str, list[uuid.UUID]] = {}
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        mine: list[uuid.UUID] = []
        try:
            start.wait(timeout=10)
            while batch := services.acquire_jobs(worker_id=worker_id, limit=7):
                mine.extend(job.id for job in batch)
        except BaseException as error:
            errors.append(error)
        finally:
            taken_by[worker_id] = mine
            connection.close()

    threads = [
        threading.Thread(target=work, args=(f"worker-{number}",), name=f"worker-{number}")
        for number in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker is stuck"

    assert errors == []
    all_taken = [job_id for ids in taken_by.values() for job_id in ids]
    assert len(all_taken) == len(set(all_taken)), "a job was taken by two workers"
    assert set(all_taken) == {job.id for job in jobs}
    # More than one worker got work: they really ran side by side.
    assert sum(1 for ids in taken_by.values() if ids) > 1
    for worker_id, ids in taken_by.items():
        rows = Job.objects.filter(id__in=ids)
        assert all(
            job.worker_id == worker_id
            and job.status == JobStatus.PROCESSING
            and job.attempt_count == 1
            for job in rows
        )
    assert ProcessingLog.objects.filter(event=ProcessingLog.Event.PICKED_UP).count() == 200
