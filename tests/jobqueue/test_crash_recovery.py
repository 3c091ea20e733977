"""Queue reliability with real processes: killed and stopped workers, hanging providers, retries
and concurrency caps (issue 3). Every job must end finalized exactly once, within its deadline.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone

from ingest.models import IngestSettings
from ingest.services import IngestUpload, accept_photo, update_slot
from jobqueue import files
from jobqueue.models import FailureReason, Job, JobStatus, ProcessingLog, WorkerHeartbeat
from tests.conftest import Stack
from tests.support.images import make_photo
from tests.support.stack import ManagedProcess, start_workers, wait_until

StartWorkers = Callable[..., ManagedProcess]

LEASE_SECONDS = 2.0
# A short lease renewed often, so that a dead worker's job is taken over within seconds.
FAST_TAKEOVER = {"WORKER_LEASE_SECONDS": str(LEASE_SECONDS), "WORKER_HEARTBEAT_SECONDS": "0.5"}
# How long after its lease lapses another worker may need to notice and take a job: its poll
# interval, plus the periodic cleanup it may be running, plus a loaded machine.
TAKEOVER_SLACK_SECONDS = 1.5


@pytest.fixture
def worker_processes(live_db: None, tmp_path: Path) -> Iterator[StartWorkers]:
    """Starts run_workers processes (with environment overrides); stops the survivors after."""
    started: list[ManagedProcess] = []

    def start(name: str, concurrency: int = 2, **env: str) -> ManagedProcess:
        process = start_workers(tmp_path, concurrency=concurrency, name=name, **env)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop(timeout=5)


# --- helpers -------------------------------------------------------------------------------------
def set_sync_response(seconds: int) -> None:
    """T_sync_response for jobs queued from now on (below the admin range, to keep tests short)."""
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=seconds)


def configure_slot(
    slot_id: str, operation_id: str, settings: Mapping[str, Any], provider_id: str = "testing"
) -> None:
    update_slot(
        slot_id=slot_id,
        provider_id=provider_id,
        operation_id=operation_id,
        settings=settings,
        is_active=True,
    )


def queue_photo(password: str, photo: bytes, slot_id: str = "slot-002") -> Job:
    """Queue a job the way the ingest view does, without a web server."""
    return accept_photo(
        IngestUpload(
            slot_id=slot_id,
            password=password,
            photo=io.BytesIO(photo),
            photo_size=len(photo),
            photo_name="IMG_0001.JPG",
            fields={},
            received_at=timezone.now(),
        ),
        max_upload_bytes=15 * 1024 * 1024,
    )


def worker_id_of(process: ManagedProcess) -> str:
    """The id run_workers gives itself by default: host name and pid."""
    assert process.process is not None
    return f"{socket.gethostname()}:{process.process.pid}"


def wait_ready(*processes: ManagedProcess) -> None:
    def all_ready() -> bool:
        for process in processes:
            if process.process is not None and process.process.poll() is not None:
                raise AssertionError(f"{process.name} exited:\n{process.output()}")
        return all("workers running" in process.output() for process in processes)

    wait_until(all_ready, timeout=30)


def wait_held(job: Job, *, logs: Callable[[], str]) -> str:
    """Wait until a worker is processing the job; returns that worker's id."""

    def holder() -> str:
        row = Job.objects.filter(id=job.id, status=JobStatus.PROCESSING, is_finalized=False)
        return row.values_list("worker_id", flat=True).first() or ""

    try:
        return str(wait_until(holder, timeout=10))
    except AssertionError as error:
        job.refresh_from_db()
        history = list(job.logs.order_by("created_at", "id").values_list("event", "details"))
        raise AssertionError(f"job {job.id} never seen processing: {history}\n{logs()}") from error


def wait_finalized(job: Job, *, timeout: float, logs: Callable[[], str]) -> Job:
    finalized = Job.objects.filter(id=job.id, is_finalized=True)
    try:
        wait_until(finalized.exists, timeout=timeout)
    except AssertionError as error:
        raise AssertionError(f"job {job.id} not finalized in time\n{logs()}") from error
    job.refresh_from_db()
    return job


def process_by_worker_id(
    worker_id: str, processes: list[ManagedProcess]
) -> tuple[ManagedProcess, ManagedProcess]:
    """(the process with this worker id, the other one)."""
    first, second = processes
    if worker_id == worker_id_of(first):
        return first, second
    assert worker_id == worker_id_of(second), worker_id
    return second, first


def outputs(*processes: ManagedProcess) -> Callable[[], str]:
    return lambda: "\n".join(f"--- {p.name} ---\n{p.output()}" for p in processes)


def logs_of(job: Job, event: str) -> list[ProcessingLog]:
    return list(job.logs.filter(event=event).order_by("created_at", "id"))


def provider_call_outcomes(job: Job) -> list[str]:
    return [log.details["outcome"] for log in logs_of(job, ProcessingLog.Event.PROVIDER_CALL)]


def current_job_ids(worker_id: str) -> list[str]:
    """What a worker's heartbeat row says it is doing."""
    row = WorkerHeartbeat.objects.filter(worker_id=worker_id).first()
    return list(row.current_job_ids) if row is not None else []


def files_under(media_root: Path, kind: str) -> list[str]:
    return [os.path.join(d, f) for d, _, names in os.walk(media_root / kind) for f in names]


def processing_interval(job: Job) -> tuple[datetime, datetime]:
    """From the job's (only) pick-up to its finalization, as the processing log recorded them."""
    (picked_up,) = logs_of(job, ProcessingLog.Event.PICKED_UP)
    (finalized,) = logs_of(job, ProcessingLog.Event.FINALIZED)
    return picked_up.created_at, finalized.created_at


def assert_no_two_overlap(jobs: list[Job]) -> None:
    intervals = sorted(processing_interval(job) for job in jobs)
    for (_, previous_end), (next_start, _) in zip(intervals, intervals[1:], strict=False):
        assert previous_end <= next_start, intervals


# --- a worker killed in the middle of a job ------------------------------------------------------
def test_a_killed_workers_job_is_taken_over_after_its_lease_lapses_and_succeeds_once(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    set_sync_response(20)
    configure_slot("slot-002", "sleep", {"seconds": 2})
    processes = [
        worker_processes("workers-a", **FAST_TAKEOVER),
        worker_processes("workers-b", **FAST_TAKEOVER),
    ]
    wait_ready(*processes)
    job = queue_photo(ingest_password, photo_jpeg)
    victim, survivor = process_by_worker_id(wait_held(job, logs=outputs(*processes)), processes)
    assert victim.process is not None

    victim.process.kill()
    victim.process.wait(timeout=10)
    killed_at = timezone.now()
    # The dead worker's last renewal: nobody may take the job before this.
    held = Job.objects.get(id=job.id)
    assert held.worker_id == worker_id_of(victim) and held.lease_expires_at is not None

    job = wait_finalized(job, timeout=15, logs=outputs(victim, survivor))

    assert job.succeeded, (job.failure_reason, job.failure_detail, survivor.output())
    assert job.finalized_at is not None and job.finalized_at <= job.expires_at
    assert len(logs_of(job, ProcessingLog.Event.FINALIZED)) == 1
    assert job.attempt_count == 2
    first_pickup, takeover = logs_of(job, ProcessingLog.Event.PICKED_UP)
    assert first_pickup.details["worker_id"] == worker_id_of(victim)
    assert takeover.details["worker_id"] == worker_id_of(survivor) == job.worker_id
    assert takeover.details["attempt"] == 2
    # Fencing: not taken while the lease was live; but taken soon after it lapsed.
    assert takeover.created_at >= held.lease_expires_at
    takeover_delay = (takeover.created_at - killed_at).total_seconds()
    assert takeover_delay <= LEASE_SECONDS + TAKEOVER_SLACK_SECONDS, takeover_delay
    assert job.payload_path == "" and not files.exists(held.payload_path)
    assert files.exists(job.result_path)


def test_a_killed_workers_job_ends_as_timeout_when_its_deadline_leaves_no_time_to_retry(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    set_sync_response(3)
    configure_slot("slot-002", "sleep", {"seconds": 10})
    # The lease outlives the deadline: once the holder is killed, no attempt is possible anymore.
    env = {"WORKER_LEASE_SECONDS": "3", "WORKER_HEARTBEAT_SECONDS": "0.5"}
    processes = [worker_processes("workers-a", **env), worker_processes("workers-b", **env)]
    wait_ready(*processes)
    job = queue_photo(ingest_password, photo_jpeg)
    payload_path = job.payload_path
    assert files.exists(payload_path)
    victim, survivor = process_by_worker_id(wait_held(job, logs=outputs(*processes)), processes)
    assert victim.process is not None

    victim.process.kill()
    victim.process.wait(timeout=10)
    job = wait_finalized(job, timeout=15, logs=outputs(victim, survivor))

    assert job.failure_reason == FailureReason.TIMEOUT
    (finalized,) = logs_of(job, ProcessingLog.Event.FINALIZED)
    assert finalized.details["outcome"] == FailureReason.TIMEOUT
    assert finalized.details["finalized_by"] == f"reaper:{worker_id_of(survivor)}"
    assert job.attempt_count == 1 and len(logs_of(job, ProcessingLog.Event.PICKED_UP)) == 1
    assert job.payload_path == "" and not files.exists(payload_path)
    assert job.result_path == ""


# --- graceful shutdown ---------------------------------------------------------------------------
def test_sigterm_releases_a_job_that_outlasts_the_grace_period_to_another_worker(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    grace = 1.0
    set_sync_response(20)
    configure_slot("slot-002", "sleep", {"seconds": 6})
    env = {"WORKER_SHUTDOWN_GRACE_SECONDS": str(grace), **FAST_TAKEOVER}
    processes = [worker_processes("workers-a", **env), worker_processes("workers-b", **env)]
    wait_ready(*processes)
    job = queue_photo(ingest_password, photo_jpeg)
    holder_id = wait_held(job, logs=outputs(*processes))
    stopping, other = process_by_worker_id(holder_id, processes)
    assert stopping.process is not None
    # The heartbeat row shows what the worker is doing.
    wait_until(lambda: str(job.id) in current_job_ids(holder_id), timeout=5)

    signalled = time.monotonic()
    stopping.process.send_signal(signal.SIGTERM)
    returncode = stopping.process.wait(timeout=grace + 10)
    stopped_after = time.monotonic() - signalled

    assert returncode == 0, stopping.output()
    assert stopped_after >= grace  # the job was given its grace period first
    assert not WorkerHeartbeat.objects.filter(worker_id=holder_id).exists()
    (released,) = logs_of(job, ProcessingLog.Event.RELEASED)
    assert released.details["worker_id"] == holder_id

    job = wait_finalized(job, timeout=15, logs=outputs(stopping, other))

    assert job.succeeded, (job.failure_reason, job.failure_detail, other.output())
    assert len(logs_of(job, ProcessingLog.Event.FINALIZED)) == 1
    first_pickup, second_pickup = logs_of(job, ProcessingLog.Event.PICKED_UP)
    assert first_pickup.details["worker_id"] == holder_id
    assert second_pickup.details["worker_id"] == worker_id_of(other) == job.worker_id
    assert first_pickup.created_at <= released.created_at <= second_pickup.created_at
    assert job.attempt_count == 2


# --- a provider that never answers in time -------------------------------------------------------
def test_a_provider_that_never_answers_gets_the_booth_a_504_at_the_deadline_and_is_ignored_later(
    stack: Stack, ingest_password: str, photo_jpeg: bytes, media_root: Path
) -> None:
    deadline = 3
    set_sync_response(deadline)
    configure_slot("slot-002", "hang", {"seconds": deadline + 2})

    started = time.monotonic()
    response = requests.post(
        f"{stack.base_url}/ingest/slot-002",
        data={"password": ingest_password},
        files={"fileToUpload": ("IMG_0003.JPG", photo_jpeg, "image/jpeg")},
        timeout=30,
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 504, stack.logs()
    assert deadline - 0.5 <= elapsed <= deadline + 1, elapsed
    job = Job.objects.get(id=response.json()["error"]["details"]["job_id"])
    assert job.is_finalized and job.failure_reason == FailureReason.TIMEOUT

    wait_until(
        lambda: job.logs.filter(event=ProcessingLog.Event.LATE_RESULT_IGNORED).exists(),
        timeout=deadline + 10,
    )
    job.refresh_from_db()
    assert job.failure_reason == FailureReason.TIMEOUT
    assert len(logs_of(job, ProcessingLog.Event.FINALIZED)) == 1
    assert job.result_path == "" and files_under(media_root, "results") == []
    assert job.payload_path == "" and files_under(media_root, "payloads") == []


# --- retries -------------------------------------------------------------------------------------
RETRIES = {"PROVIDER_MAX_RETRIES": "2", "PROVIDER_RETRY_BACKOFF_SECONDS": "0.1"}


def test_retryable_errors_are_retried_with_backoff_until_the_provider_succeeds(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    set_sync_response(20)
    configure_slot("slot-002", "flaky", {"failures": 2})
    workers = worker_processes("workers", concurrency=1, **RETRIES)
    wait_ready(workers)

    job = wait_finalized(
        queue_photo(ingest_password, photo_jpeg), timeout=15, logs=outputs(workers)
    )

    assert job.succeeded, (job.failure_reason, job.failure_detail, workers.output())
    assert provider_call_outcomes(job) == ["retry", "retry", "success"]
    retries = logs_of(job, ProcessingLog.Event.PROVIDER_CALL)[:2]
    assert [log.details["retry"] for log in retries] == [1, 2]
    assert [log.details["backoff_ms"] for log in retries] == [100, 200]
    assert job.attempt_count == 1


def test_retries_stop_at_the_configured_count_and_other_errors_are_not_retried(
    worker_processes: StartWorkers, ingest_password: str
) -> None:
    set_sync_response(20)
    configure_slot("slot-002", "flaky", {"failures": 3})
    configure_slot("slot-003", "fail", {"retryable": False})
    workers = worker_processes("workers", concurrency=2, **RETRIES)
    wait_ready(workers)

    # The flaky provider counts calls per photo: each job gets its own.
    flaky = queue_photo(ingest_password, make_photo(color=(10, 20, 30)), slot_id="slot-002")
    failing = queue_photo(ingest_password, make_photo(color=(40, 50, 60)), slot_id="slot-003")
    flaky = wait_finalized(flaky, timeout=15, logs=outputs(workers))
    failing = wait_finalized(failing, timeout=15, logs=outputs(workers))

    assert flaky.failure_reason == FailureReason.PROVIDER_ERROR, flaky.failure_detail
    assert provider_call_outcomes(flaky) == ["retry", "retry", "error"]
    assert failing.failure_reason == FailureReason.PROVIDER_ERROR, failing.failure_detail
    assert provider_call_outcomes(failing) == ["error"]
    assert "told_to_fail" in failing.failure_detail
    for job in (flaky, failing):
        assert len(logs_of(job, ProcessingLog.Event.FINALIZED)) == 1
        assert job.payload_path == ""


# --- concurrency caps ----------------------------------------------------------------------------
def test_a_per_provider_cap_holds_across_worker_processes(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    set_sync_response(20)
    configure_slot("slot-002", "sleep", {"seconds": 0.5})
    env = {"PROVIDER_CONCURRENCY": "testing=1"}
    processes = [worker_processes("workers-a", **env), worker_processes("workers-b", **env)]
    wait_ready(*processes)

    queued = [queue_photo(ingest_password, photo_jpeg) for _ in range(4)]
    jobs = [wait_finalized(job, timeout=20, logs=outputs(*processes)) for job in queued]

    for job in jobs:
        assert job.succeeded, (job.failure_reason, job.failure_detail)
    assert_no_two_overlap(jobs)


def test_the_global_cap_limits_all_providers_together(
    worker_processes: StartWorkers, ingest_password: str, photo_jpeg: bytes
) -> None:
    set_sync_response(20)
    configure_slot("slot-002", "sleep", {"seconds": 0.5})
    configure_slot("slot-001", "photo_look", {"look": "black_and_white"}, provider_id="local")
    workers = worker_processes("workers", concurrency=3, WORKER_GLOBAL_CONCURRENCY="1")
    wait_ready(workers)

    queued = [queue_photo(ingest_password, photo_jpeg) for _ in range(3)]
    queued.append(queue_photo(ingest_password, photo_jpeg, slot_id="slot-001"))
    jobs = [wait_finalized(job, timeout=20, logs=outputs(workers)) for job in queued]

    for job in jobs:
        assert job.succeeded, (job.failure_reason, job.failure_detail)
    assert {job.provider_id for job in jobs} == {"testing", "local"}
    assert_no_two_overlap(jobs)
