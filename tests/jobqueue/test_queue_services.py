"""The queue's services on the real database: enqueue, acquire, finalize exactly once, time out."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobqueue import files, services
from jobqueue.models import FailureReason, Job, JobStatus, MediaObject, ProcessingLog
from jobqueue.worker import process_job, publish_temporary_media
from providers.base import InputImage
from tests.support.images import make_photo

pytestmark = pytest.mark.django_db

CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]

SYNC = timedelta(seconds=48)
RETENTION = timedelta(hours=72)
LOOK = services.JobConfiguration(
    slot_id="slot-004",
    provider_id="local",
    operation_id="photo_look",
    settings={"look": "sepia", "jpeg_quality": 90},
    template_refs={},
)
# Echoes the photo at once, even past the deadline: stands for a provider whose answer arrives late.
ECHO = services.JobConfiguration(
    slot_id="slot-005",
    provider_id="testing",
    operation_id="sleep",
    settings={"seconds": 0},
    template_refs={},
)


def store_payload() -> services.StoredPayload:
    stored = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=64)
    )
    return services.StoredPayload(
        path=stored.path, mime="image/jpeg", size=stored.size, sha256=stored.sha256
    )


def enqueue(
    *,
    received_at: datetime | None = None,
    sync_response: timedelta = SYNC,
    configuration: services.JobConfiguration = LOOK,
) -> Job:
    return services.enqueue_job(
        configuration=configuration,
        payload=store_payload(),
        metadata={"model": "Canon EOS R6", "id": "0123456789-0003"},
        received_at=received_at or timezone.now(),
        sync_response=sync_response,
        result_retention=RETENTION,
        received_details={"mime": "image/jpeg"},
    )


def enqueue_expired() -> Job:
    """A job whose 2 s deadline passed 8 s ago."""
    return enqueue(
        received_at=timezone.now() - timedelta(seconds=10), sync_response=timedelta(seconds=2)
    )


def acquire_one(job: Job, worker_id: str = "worker-a") -> Job:
    acquired = services.acquire_jobs(worker_id=worker_id, limit=1)
    assert [j.id for j in acquired] == [job.id]
    return acquired[0]


def let_deadline_pass(job: Job) -> None:
    """Time moves on while a worker holds the job: its 48 s are over."""
    now = timezone.now()
    Job.objects.filter(id=job.id).update(
        created_at=now - timedelta(seconds=50), expires_at=now - timedelta(seconds=2)
    )


def store_result() -> files.StoredFile:
    return files.store_bytes(
        kind="results", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=32)
    )


def stored_files(kind: str) -> list[str]:
    root = files.default_storage.path(kind)
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]


def events(job: Job) -> list[str]:
    return list(job.logs.order_by("created_at", "id").values_list("event", flat=True))


def finalized_logs(job: Job) -> list[dict[str, Any]]:
    return list(
        job.logs.filter(event=ProcessingLog.Event.FINALIZED).values_list("details", flat=True)
    )


def job_state(job: Job) -> dict[str, object]:
    return dict(
        Job.objects.filter(id=job.id)
        .values(
            "status",
            "is_finalized",
            "failure_reason",
            "failure_detail",
            "finalized_at",
            "updated_at",
            "payload_path",
            "result_path",
            "result_sha256",
            "result_expires_at",
            "lease_token",
        )
        .get()
    )


# --- enqueue -------------------------------------------------------------------------------------


def test_enqueued_job_waits_pending_with_its_deadline_counted_from_reception() -> None:
    received_at = timezone.now() - timedelta(seconds=1)

    job = enqueue(received_at=received_at)

    job = Job.objects.get(id=job.id)
    assert job.status == JobStatus.PENDING
    assert not job.is_finalized and job.failure_reason is None
    assert job.created_at == received_at
    assert job.expires_at == received_at + SYNC
    assert job.payload_expires_at == job.expires_at
    assert job.attempt_count == 0 and job.lease_token is None
    assert job.result_retention_seconds == 72 * 3600
    assert files.exists(job.payload_path)
    assert job.metadata["model"] == "Canon EOS R6"
    assert events(job) == ["received", "queued"]
    received = job.logs.get(event=ProcessingLog.Event.RECEIVED)
    assert received.created_at == received_at
    assert received.details == {"mime": "image/jpeg"}
    queued = job.logs.get(event=ProcessingLog.Event.QUEUED)
    assert queued.details["expires_at"] == job.expires_at.isoformat()


def test_a_queued_job_keeps_the_slot_configuration_it_was_received_with() -> None:
    settings = {"look": "sepia", "jpeg_quality": 90}
    configuration = services.JobConfiguration(
        slot_id="slot-004",
        provider_id="local",
        operation_id="frame_overlay",
        settings=settings,
        template_refs={"frame_media_id": {"path": "templates/f.png", "mime": "image/png"}},
    )
    job = enqueue(configuration=configuration)

    settings["look"] = "vivid"  # the admin edits the slot afterwards

    job.refresh_from_db()
    assert job.provider_id == "local" and job.operation_id == "frame_overlay"
    assert job.settings_snapshot == {"look": "sepia", "jpeg_quality": 90}
    assert job.template_refs == {"frame_media_id": {"path": "templates/f.png", "mime": "image/png"}}


def test_a_new_sync_response_applies_to_new_jobs_only() -> None:
    received_at = timezone.now()
    before = enqueue(received_at=received_at, sync_response=timedelta(seconds=48))

    after = enqueue(received_at=received_at, sync_response=timedelta(seconds=60))

    before.refresh_from_db()
    assert before.expires_at == received_at + timedelta(seconds=48)
    assert after.expires_at == received_at + timedelta(seconds=60)


# --- acquire -------------------------------------------------------------------------------------


def test_workers_take_the_oldest_jobs_first_and_no_more_than_asked() -> None:
    now = timezone.now()
    # Enqueued out of order: age, not insertion order, decides.
    third = enqueue(received_at=now - timedelta(seconds=1))
    first = enqueue(received_at=now - timedelta(seconds=3))
    fourth = enqueue(received_at=now)
    second = enqueue(received_at=now - timedelta(seconds=2))

    taken = services.acquire_jobs(worker_id="worker-a", limit=2)

    assert [job.id for job in taken] == [first.id, second.id]
    for job in taken:
        assert job.status == JobStatus.PROCESSING
        assert job.worker_id == "worker-a"
        assert job.attempt_count == 1
        assert job.lease_token is not None
        assert job.started_at is not None
        stored = Job.objects.get(id=job.id)
        assert stored.status == JobStatus.PROCESSING and stored.lease_token == job.lease_token
        picked_up = job.logs.get(event=ProcessingLog.Event.PICKED_UP)
        assert picked_up.details["worker_id"] == "worker-a"
        assert picked_up.details["attempt"] == 1
        assert picked_up.details["queue_wait_ms"] >= 0
    assert set(Job.objects.filter(status=JobStatus.PENDING).values_list("id", flat=True)) == {
        third.id,
        fourth.id,
    }

    rest = services.acquire_jobs(worker_id="worker-b", limit=10)

    assert [job.id for job in rest] == [third.id, fourth.id]
    assert all(job.worker_id == "worker-b" for job in rest)
    assert services.acquire_jobs(worker_id="worker-c", limit=10) == []


def test_a_worker_with_no_free_slot_takes_nothing() -> None:
    job = enqueue()

    assert services.acquire_jobs(worker_id="worker-a", limit=0) == []

    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and job.attempt_count == 0
    assert events(job) == ["received", "queued"]


def test_a_job_whose_deadline_has_passed_is_never_picked_up() -> None:
    expired = enqueue_expired()  # the oldest job in the queue
    fresh = enqueue()

    taken = services.acquire_jobs(worker_id="worker-a", limit=5)

    assert [job.id for job in taken] == [fresh.id]
    expired.refresh_from_db()
    assert expired.status == JobStatus.PENDING and expired.attempt_count == 0
    assert not expired.logs.filter(event=ProcessingLog.Event.PICKED_UP).exists()


def test_finalized_and_already_running_jobs_are_not_picked_up_again() -> None:
    now = timezone.now()
    running = enqueue(received_at=now - timedelta(seconds=3))
    acquire_one(running)
    failed = enqueue(received_at=now - timedelta(seconds=2))
    failed_lease = acquire_one(failed).lease_token
    assert failed_lease is not None
    assert services.finalize_failure(
        job=failed, lease_token=failed_lease, reason=FailureReason.PROVIDER_ERROR
    )
    # Cancelled before any worker saw it: still "pending", but finalized.
    cancelled = enqueue(received_at=now - timedelta(seconds=1))
    Job.objects.filter(id=cancelled.id).update(
        is_finalized=True, finalized_at=now, failure_reason=FailureReason.CANCELLED
    )
    waiting = enqueue(received_at=now)

    taken = services.acquire_jobs(worker_id="worker-b", limit=10)

    assert [job.id for job in taken] == [waiting.id]
    for job in (running, failed, cancelled):
        job.refresh_from_db()
        assert job.worker_id != "worker-b"
        assert job.attempt_count <= 1


# --- finalize ------------------------------------------------------------------------------------


def test_success_stores_the_result_for_the_retention_and_deletes_the_payload(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    job = acquire_one(enqueue())
    payload_path = job.payload_path
    result = store_result()
    assert job.lease_token is not None

    with django_capture_on_commit_callbacks(execute=True):
        won = services.finalize_success(
            job=job,
            lease_token=job.lease_token,
            result=result,
            result_mime="image/jpeg",
            provider_job_reference="queue-42",
        )

    assert won
    job.refresh_from_db()
    assert job.succeeded
    assert job.finalized_at is not None
    assert job.result_path == result.path and files.exists(result.path)
    assert job.result_mime == "image/jpeg"
    assert job.result_size == result.size and job.result_sha256 == result.sha256
    assert job.result_expires_at == job.finalized_at + RETENTION
    assert job.provider_job_reference == "queue-42"
    assert job.payload_path == "" and not files.exists(payload_path)
    assert events(job) == ["received", "queued", "picked_up", "finalized"]
    [finalized] = finalized_logs(job)
    assert finalized["outcome"] == "success"
    assert finalized["result_size"] == result.size


def test_a_worker_that_lost_its_lease_cannot_finalize_the_job(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    job = acquire_one(enqueue())
    before = job_state(job)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        won = services.finalize_success(
            job=job, lease_token=uuid.uuid4(), result=store_result(), result_mime="image/jpeg"
        )
        lost_failure = services.finalize_failure(
            job=job, lease_token=uuid.uuid4(), reason=FailureReason.PROVIDER_ERROR
        )

    assert not won and not lost_failure
    assert callbacks == []
    assert job_state(job) == before
    assert files.exists(job.payload_path)
    assert finalized_logs(job) == []


def test_success_after_the_deadline_is_refused() -> None:
    job = acquire_one(enqueue())
    let_deadline_pass(job)
    assert job.lease_token is not None

    won = services.finalize_success(
        job=job, lease_token=job.lease_token, result=store_result(), result_mime="image/jpeg"
    )

    assert not won
    job.refresh_from_db()
    assert not job.is_finalized and job.result_path == ""
    assert finalized_logs(job) == []


def _succeed(job: Job) -> bool:
    assert job.lease_token is not None
    return services.finalize_success(
        job=job, lease_token=job.lease_token, result=store_result(), result_mime="image/jpeg"
    )


def _fail(job: Job) -> bool:
    assert job.lease_token is not None
    return services.finalize_failure(
        job=job, lease_token=job.lease_token, reason=FailureReason.PROVIDER_ERROR, detail="HTTP 400"
    )


def time_out(job: Job, *, by: str) -> bool:
    """Whether this call finalized the job as timeout (anyone may, once its deadline passed)."""
    return job.id in services.finalize_expired_many(job_ids=[job.id], finalized_by=by)


def _time_out(job: Job) -> bool:
    let_deadline_pass(job)
    return time_out(job, by="ingest")


def _reap(job: Job) -> bool:
    let_deadline_pass(job)
    return services.timeout_expired_jobs(finalized_by="reaper") == 1


FINALIZERS: dict[str, Callable[[Job], bool]] = {
    "success": _succeed,
    "failure": _fail,
    "timeout": _time_out,
    "reaper": _reap,
}


@pytest.mark.parametrize("second", FINALIZERS)
@pytest.mark.parametrize("first", ["success", "failure", "timeout"])
def test_a_job_is_finalized_exactly_once(
    first: str, second: str, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    job = acquire_one(enqueue())
    with django_capture_on_commit_callbacks(execute=True):
        assert FINALIZERS[first](job)
    after_first = job_state(job)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not FINALIZERS[second](job)

    assert callbacks == []
    assert job_state(job) == after_first
    assert len(finalized_logs(job)) == 1


def test_a_job_is_not_timed_out_before_its_deadline() -> None:
    pending = enqueue()
    running = acquire_one(enqueue(received_at=timezone.now() - timedelta(seconds=1)))

    assert not time_out(pending, by="ingest")
    assert not time_out(running, by="ingest")
    assert services.timeout_expired_jobs(finalized_by="reaper") == 0

    for job, status in ((pending, JobStatus.PENDING), (running, JobStatus.PROCESSING)):
        job.refresh_from_db()
        assert job.status == status and not job.is_finalized
        assert files.exists(job.payload_path)
        assert finalized_logs(job) == []


def test_the_reaper_times_out_every_expired_job_and_deletes_their_payloads(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    never_picked_up = enqueue_expired()
    abandoned = acquire_one(enqueue(received_at=timezone.now() - timedelta(seconds=5)))
    let_deadline_pass(abandoned)
    also_expired = enqueue_expired()
    fresh = enqueue()
    expired_jobs = [never_picked_up, abandoned, also_expired]
    payloads = [job.payload_path for job in expired_jobs]
    assert all(files.exists(path) for path in payloads)

    with django_capture_on_commit_callbacks(execute=True):
        timed_out = services.timeout_expired_jobs(finalized_by="reaper:worker-a")

    assert timed_out == 3
    for job, payload in zip(expired_jobs, payloads, strict=True):
        job.refresh_from_db()
        assert job.is_finalized and job.failure_reason == FailureReason.TIMEOUT
        assert job.finalized_at is not None
        assert job.payload_path == "" and not files.exists(payload)
        [finalized] = finalized_logs(job)
        assert finalized["outcome"] == "timeout"
        assert finalized["finalized_by"] == "reaper:worker-a"
    fresh.refresh_from_db()
    assert not fresh.is_finalized and files.exists(fresh.payload_path)
    # Nothing left to do on the next pass.
    assert services.timeout_expired_jobs(finalized_by="reaper:worker-a") == 0


def test_the_reaper_works_in_bounded_batches_oldest_deadline_first() -> None:
    now = timezone.now()
    oldest = enqueue(received_at=now - timedelta(seconds=30), sync_response=timedelta(seconds=2))
    newer = enqueue(received_at=now - timedelta(seconds=20), sync_response=timedelta(seconds=2))
    newest = enqueue(received_at=now - timedelta(seconds=10), sync_response=timedelta(seconds=2))

    assert services.timeout_expired_jobs(finalized_by="reaper", limit=2) == 2

    finalized = set(Job.objects.filter(is_finalized=True).values_list("id", flat=True))
    assert finalized == {oldest.id, newer.id}
    assert services.timeout_expired_jobs(finalized_by="reaper", limit=2) == 1
    newest.refresh_from_db()
    assert newest.failure_reason == FailureReason.TIMEOUT


def test_payload_file_is_gone_once_the_timeout_is_committed(live_db: None) -> None:
    job = enqueue_expired()
    assert files.exists(job.payload_path)

    assert services.timeout_expired_jobs(finalized_by="reaper") == 1

    assert not files.exists(job.payload_path)
    job.refresh_from_db()
    assert job.failure_reason == FailureReason.TIMEOUT and job.payload_path == ""


def test_late_provider_answer_does_not_change_a_timed_out_job(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    job = acquire_one(enqueue())
    let_deadline_pass(job)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.timeout_expired_jobs(finalized_by="reaper") == 1
    timed_out = job_state(job)
    assert job.lease_token is not None

    late_success = services.finalize_success(
        job=job, lease_token=job.lease_token, result=store_result(), result_mime="image/jpeg"
    )
    late_failure = services.finalize_failure(
        job=job, lease_token=job.lease_token, reason=FailureReason.PROVIDER_ERROR
    )

    assert not late_success and not late_failure
    assert job_state(job) == timed_out
    assert timed_out["failure_reason"] == FailureReason.TIMEOUT
    assert timed_out["result_path"] == "" and timed_out["result_expires_at"] is None
    assert len(finalized_logs(job)) == 1


def test_worker_ignores_a_late_answer_and_keeps_no_result_file(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    job = acquire_one(enqueue(configuration=ECHO))
    # The deadline passes and the ingest request times the job out. (Its payload deletion waits
    # for a commit that this test transaction never makes: the worker can still read the photo,
    # as it would had it read it a moment earlier.)
    let_deadline_pass(job)
    assert time_out(job, by="ingest")
    timed_out = job_state(job)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        process_job(job)

    assert callbacks == []
    assert job_state(job) == timed_out
    assert timed_out["failure_reason"] == FailureReason.TIMEOUT
    assert stored_files("results") == []
    assert events(job)[-2:] == ["provider_call", "late_result_ignored"]
    assert len(finalized_logs(job)) == 1


# --- temporary public media ----------------------------------------------------------------------


def test_temporary_public_media_never_outlives_its_job(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    job = acquire_one(enqueue())

    url = publish_temporary_media(
        job=job, image=InputImage(data=make_photo(width=48), mime="image/jpeg", name="photo")
    )

    media = MediaObject.objects.get(job=job)
    assert url.endswith(f"/public/media/{media.id}")
    assert media.expires_at <= job.expires_at
    assert files.exists(media.path)
    assert job.lease_token is not None

    with django_capture_on_commit_callbacks(execute=True):
        assert services.finalize_failure(
            job=job, lease_token=job.lease_token, reason=FailureReason.PROVIDER_ERROR
        )

    assert not MediaObject.objects.filter(id=media.id).exists()
    assert not files.exists(media.path)


def test_a_job_whose_settings_no_longer_fit_its_provider_ends_as_provider_error() -> None:
    stale = services.JobConfiguration(
        slot_id="slot-004",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "neon"},  # a look the provider no longer offers
        template_refs={},
    )
    job = acquire_one(enqueue(configuration=stale))

    process_job(job)

    job.refresh_from_db()
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert job.failure_detail.startswith("invalid_settings:")
    assert "look" in job.failure_detail


def test_a_batch_of_expired_jobs_is_finalized_together_skipping_the_others(
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    expired = [enqueue_expired() for _ in range(3)]
    running = acquire_one(enqueue(received_at=timezone.now() - timedelta(seconds=5)))
    let_deadline_pass(running)
    not_yet = enqueue()
    already = enqueue_expired()
    assert time_out(already, by="reaper")
    asked = [*expired, running, not_yet, already]

    with django_capture_on_commit_callbacks(execute=True):
        ours = services.finalize_expired_many(
            job_ids=[job.id for job in asked],
            finalized_by="ingest",
            request_ids={expired[0].id: "booth-request-1"},
        )

    assert ours == {job.id for job in [*expired, running]}
    for job in [*expired, running]:
        payload = job.payload_path
        job.refresh_from_db()
        assert job.failure_reason == FailureReason.TIMEOUT and not files.exists(payload)
        [finalized] = finalized_logs(job)
        assert finalized["finalized_by"] == "ingest"
    # The one that was running says how long it processed; all say how long they took.
    assert "processing_ms" in finalized_logs(running)[0]
    assert all("total_elapsed_ms" in finalized_logs(job)[0] for job in expired)
    not_yet.refresh_from_db()
    assert not not_yet.is_finalized and files.exists(not_yet.payload_path)
    [first] = finalized_logs(already)
    assert first["finalized_by"] == "reaper"  # not finalized twice
    # Nothing left: asking again changes nothing.
    assert (
        services.finalize_expired_many(job_ids=[job.id for job in asked], finalized_by="x") == set()
    )
