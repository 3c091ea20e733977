"""Back-pressure at ingest: 503 while no worker is alive, 429 while too much is unfinished.

A refused upload is answered at once with the JSON error shape and a `Retry-After` header, and
leaves nothing behind; an accepted one is never lost. The liveness and limit rules are checked
in-process; a worker that stops and a burst of uploads are checked through real processes.
"""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from ingest.models import IngestSettings, Slot
from ingest.services import IngestUpload, accept_photo, update_slot
from jobqueue import services
from jobqueue.models import FailureReason, Job, ProcessingLog, WorkerHeartbeat
from jobqueue.selectors import any_live_worker
from photobooth.errors import TooManyRequests
from tests.conftest import Stack
from tests.support.images import make_photo
from tests.support.slots import configure_testing_slot
from tests.support.stack import (
    ManagedProcess,
    WebServer,
    all_at_once,
    start_web,
    start_workers,
    wait_until,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

MAX_UPLOAD_BYTES = 15 * 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------
def stored_files(root: Path, kind: str = "") -> list[str]:
    folder = root / kind if kind else root
    return [os.path.join(d, name) for d, _, names in os.walk(folder) for name in names]


def assert_json_error(
    status: int, content_type: str, cache_control: str, body: dict[str, Any], code: str
) -> dict[str, Any]:
    """The product's JSON error shape with this code; returns the `error` object."""
    assert content_type == "application/json", (status, body)
    assert cache_control == "no-store"
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return dict(error)


def client_error(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    return assert_json_error(
        response.status_code,
        response["Content-Type"],
        response["Cache-Control"],
        response.json(),
        code,
    )


def http_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return assert_json_error(
        response.status_code,
        response.headers["Content-Type"],
        response.headers["Cache-Control"],
        response.json(),
        code,
    )


def client_upload(client: Client, slot_id: str, password: str) -> TestResponse:
    photo = SimpleUploadedFile("IMG_0003.JPG", make_photo(), content_type="image/jpeg")
    return client.post(f"/ingest/{slot_id}", {"password": password, "fileToUpload": photo})


def accept(slot_id: str, password: str) -> Job:
    photo = make_photo(width=160, height=120)
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
        max_upload_bytes=MAX_UPLOAD_BYTES,
    )


def heartbeat(*, seconds_ago: float, is_stopping: bool = False) -> WorkerHeartbeat:
    seen = timezone.now() - timedelta(seconds=seconds_ago)
    return WorkerHeartbeat.objects.create(
        worker_id=f"booth-host:{uuid.uuid4().int % 100000}",
        hostname="booth-host",
        pid=4242,
        concurrency=1,
        started_at=seen - timedelta(minutes=5),
        last_seen_at=seen,
        is_stopping=is_stopping,
    )


def queue_unfinished(slot_id: str) -> Job:
    """An unfinalized job for `slot_id`, as if a photo were waiting (its file is never read)."""
    return services.enqueue_job(
        configuration=services.JobConfiguration(
            slot_id=slot_id,
            provider_id="local",
            operation_id="photo_look",
            settings={"look": "sepia"},
            template_refs={},
        ),
        payload=services.StoredPayload(
            path=f"payloads/{uuid.uuid4()}.jpg", mime="image/jpeg", size=1, sha256="0" * 64
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=72),
    )


def activate_local_slots(*slot_ids: str) -> None:
    for slot_id in slot_ids:
        update_slot(
            slot_id=slot_id,
            provider_id="local",
            operation_id="photo_look",
            settings={"look": "sepia"},
            is_active=True,
        )


# --- 503: no live worker (in-process) -------------------------------------------------------------
@pytest.fixture
def require_live_worker(settings: Any) -> Any:
    settings.INGEST_REQUIRE_LIVE_WORKER = True
    settings.INGEST_RETRY_AFTER_SECONDS = 7
    return settings


@pytest.mark.parametrize("worker", ["none", "stale", "stopping"])
def test_upload_without_a_live_worker_is_refused_with_503_and_leaves_nothing(
    client: Client,
    ingest_password: str,
    require_live_worker: Any,
    media_root: Path,
    worker: str,
) -> None:
    stale_after = require_live_worker.WORKER_STALE_SECONDS
    if worker == "stale":
        heartbeat(seconds_ago=stale_after + 1)
    elif worker == "stopping":
        heartbeat(seconds_ago=0, is_stopping=True)

    response = client_upload(client, "slot-001", ingest_password)

    client_error(response, 503, "no_workers")
    assert response["Retry-After"] == "7"
    assert not Job.objects.exists()
    assert not ProcessingLog.objects.exists()
    assert stored_files(media_root) == []


def test_upload_is_accepted_while_a_worker_heartbeat_is_fresh(
    live_db: None,
    client: Client,
    ingest_password: str,
    require_live_worker: Any,
    media_root: Path,
) -> None:
    # No worker process runs here: the job is queued and the request is answered at its
    # (shortened) deadline. Committed data (live_db): the view's waiter reads the job from a
    # thread of its own.
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=1)
    heartbeat(seconds_ago=0)

    response = client_upload(client, "slot-001", ingest_password)

    error = client_error(response, 504, "timeout")
    job = Job.objects.get(id=error["details"]["job_id"])
    assert job.is_finalized and job.failure_reason == FailureReason.TIMEOUT
    assert stored_files(media_root, "payloads") == []


def test_a_heartbeat_just_inside_the_stale_window_still_counts_as_alive(
    ingest_password: str, require_live_worker: Any
) -> None:
    heartbeat(seconds_ago=require_live_worker.WORKER_STALE_SECONDS - 2)

    job = accept("slot-001", ingest_password)

    assert Job.objects.filter(id=job.id, is_finalized=False).exists()


# --- 503: the worker process stops (real processes) ----------------------------------------------
def post_photo(base_url: str, slot_id: str, password: str, photo: bytes) -> requests.Response:
    return requests.post(
        f"{base_url}/ingest/{slot_id}",
        data={"password": password},
        files={"fileToUpload": ("IMG_0003.JPG", photo, "image/jpeg")},
        timeout=60,
    )


def test_stopping_the_only_worker_makes_the_next_upload_fail_with_503_at_once(
    stack: Stack, ingest_password: str, photo_jpeg: bytes, media_root: Path
) -> None:
    served = post_photo(stack.base_url, "slot-001", ingest_password, photo_jpeg)
    assert served.status_code == 200, stack.logs()
    workers = stack.workers.process
    assert workers is not None

    workers.send_signal(signal.SIGTERM)
    assert workers.wait(timeout=15) == 0, stack.logs()
    assert not WorkerHeartbeat.objects.exists()

    started = time.monotonic()
    refused = post_photo(stack.base_url, "slot-001", ingest_password, photo_jpeg)
    elapsed = time.monotonic() - started

    http_error(refused, 503, "no_workers")
    assert int(refused.headers["Retry-After"]) > 0
    assert elapsed < 10, elapsed  # not held until the 48 s deadline (bound loose for busy CI)
    assert list(Job.objects.values_list("id", flat=True)) == [uuid.UUID(served.headers["X-Job-Id"])]
    assert stored_files(media_root, "payloads") == []


# --- 429: a burst beyond the per-slot limit (real processes) -------------------------------------
@dataclass
class SmallStack:
    web: WebServer
    workers: ManagedProcess

    def logs(self) -> str:
        return f"--- web ---\n{self.web.process.output()}\n--- workers ---\n{self.workers.output()}"


@pytest.fixture
def small_stack(live_db: None, tmp_path: Path) -> Iterator[SmallStack]:
    """One worker running one job at a time; ingest allows two unfinished jobs per slot."""
    workers = start_workers(tmp_path, concurrency=1)
    web: WebServer | None = None
    try:
        web = start_web(
            tmp_path, INGEST_MAX_UNFINISHED_PER_SLOT="2", INGEST_RETRY_AFTER_SECONDS="3"
        )
        wait_until(lambda: any_live_worker(stale_after=timedelta(seconds=10)), timeout=30)
        yield SmallStack(web=web, workers=workers)
    finally:
        if web is not None:
            web.process.stop()
        workers.stop()


def burst_of_uploads(stack: SmallStack, slot_id: str, password: str) -> list[requests.Response]:
    """Eight booths sending a photo each at the same moment."""

    def upload(number: int) -> requests.Response:
        photo = make_photo(width=160, height=120, color=(number * 20, 80, 40))
        return post_photo(stack.web.base_url, slot_id, password, photo)

    return all_at_once(8, upload)


def test_burst_beyond_the_slot_limit_gets_429s_and_every_accepted_photo_is_processed(
    small_stack: SmallStack, ingest_password: str, media_root: Path
) -> None:
    configure_testing_slot("slot-002", settings={"seconds": 1}, sync_response_seconds=20)
    responses = burst_of_uploads(small_stack, "slot-002", ingest_password)

    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 429}, (statuses, small_stack.logs())
    accepted = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code == 429]
    assert refused, statuses
    assert accepted, statuses
    for response in refused:
        error = http_error(response, 429, "queue_full")
        assert response.headers["Retry-After"] == "3"
        assert error["details"]["slot_limit"] == 2
        assert error["details"]["slot_unfinished"] >= 2
    accepted_ids = {uuid.UUID(response.headers["X-Job-Id"]) for response in accepted}
    assert len(accepted_ids) == len(accepted)
    for response in accepted:
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.content[:2] == b"\xff\xd8"

    # Nothing accepted was lost, nothing refused was queued.
    jobs = list(Job.objects.all())
    assert {job.id for job in jobs} == accepted_ids
    for job in jobs:
        assert job.succeeded, (job.failure_reason, job.failure_detail)
        assert job.logs.filter(event=ProcessingLog.Event.FINALIZED).count() == 1
    wait_until(lambda: stored_files(media_root, "payloads") == [], timeout=5)


# --- 429: the limits themselves (in-process) ------------------------------------------------------
def test_total_limit_refuses_uploads_to_every_slot_until_a_job_finishes(
    client: Client, ingest_password: str, settings: Any, media_root: Path
) -> None:
    settings.INGEST_MAX_UNFINISHED_PER_SLOT = 10
    settings.INGEST_MAX_UNFINISHED_TOTAL = 3
    activate_local_slots("slot-003", "slot-004", "slot-005")
    waiting = [queue_unfinished(slot_id) for slot_id in ("slot-003", "slot-004", "slot-005")]

    # slot-001 has nothing waiting of its own, yet the total is reached.
    with pytest.raises(TooManyRequests) as refused:
        accept("slot-001", ingest_password)
    assert refused.value.code == "queue_full"
    assert refused.value.details == {
        "slot_unfinished": 0,
        "slot_limit": 10,
        "total_unfinished": 3,
        "total_limit": 3,
    }
    assert refused.value.headers["Retry-After"] == str(settings.INGEST_RETRY_AFTER_SECONDS)

    response = client_upload(client, "slot-003", ingest_password)
    client_error(response, 429, "queue_full")
    assert response["Retry-After"] == str(settings.INGEST_RETRY_AFTER_SECONDS)
    assert {job.id for job in Job.objects.all()} == {job.id for job in waiting}
    assert stored_files(media_root) == []

    # A finished job no longer counts: the next upload is queued.
    (taken,) = services.acquire_jobs(worker_id="tests:1", limit=1)
    assert taken.lease_token is not None
    assert services.finalize_failure(
        job=taken, lease_token=taken.lease_token, reason=FailureReason.CANCELLED
    )
    job = accept("slot-001", ingest_password)
    assert not job.is_finalized and job.slot_id == "slot-001"


def test_slot_limit_refuses_only_the_busy_slot(
    ingest_password: str, settings: Any, media_root: Path
) -> None:
    settings.INGEST_MAX_UNFINISHED_PER_SLOT = 2
    settings.INGEST_MAX_UNFINISHED_TOTAL = 100
    activate_local_slots("slot-003")
    accept("slot-001", ingest_password)
    accept("slot-001", ingest_password)

    with pytest.raises(TooManyRequests) as refused:
        accept("slot-001", ingest_password)

    assert refused.value.code == "queue_full"
    assert refused.value.details["slot_unfinished"] == 2
    assert Job.objects.count() == 2
    assert len(stored_files(media_root, "payloads")) == 2  # the refused photo was never stored
    other = accept("slot-003", ingest_password)
    assert other.slot_id == "slot-003" and Job.objects.count() == 3


# --- 429: one photo at a time per slot ------------------------------------------------------------
def test_a_one_at_a_time_slot_refuses_a_second_photo_until_the_first_is_finished(
    client: Client, ingest_password: str, settings: Any, media_root: Path
) -> None:
    settings.INGEST_MAX_UNFINISHED_PER_SLOT = 10
    activate_local_slots("slot-003")
    Slot.objects.filter(id="slot-001").update(one_at_a_time=True)
    first = accept("slot-001", ingest_password)

    response = client_upload(client, "slot-001", ingest_password)
    error = client_error(response, 429, "slot_busy")
    assert error["details"] == {"slot_unfinished": 1}
    assert response["Retry-After"] == str(settings.INGEST_RETRY_AFTER_SECONDS)
    assert list(Job.objects.values_list("id", flat=True)) == [first.id]
    assert len(stored_files(media_root, "payloads")) == 1  # the refused photo was never stored
    # Other slots are not held up.
    assert accept("slot-003", ingest_password).slot_id == "slot-003"

    (taken,) = services.acquire_jobs(worker_id="tests:1", limit=1)
    assert taken.id == first.id and taken.lease_token is not None
    assert services.finalize_failure(
        job=taken, lease_token=taken.lease_token, reason=FailureReason.CANCELLED
    )
    assert accept("slot-001", ingest_password).slot_id == "slot-001"

    # Without the option the same slot takes several photos at once.
    Slot.objects.filter(id="slot-001").update(one_at_a_time=False)
    assert accept("slot-001", ingest_password).slot_id == "slot-001"


def test_a_burst_at_a_one_at_a_time_slot_never_runs_two_of_its_jobs_at_once(
    small_stack: SmallStack, ingest_password: str, media_root: Path
) -> None:
    configure_testing_slot(
        "slot-002", settings={"seconds": 1}, sync_response_seconds=20, one_at_a_time=True
    )
    responses = burst_of_uploads(small_stack, "slot-002", ingest_password)

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, (statuses, small_stack.logs())
    assert set(statuses) == {200, 429}, statuses
    for response in responses:
        if response.status_code == 429:
            http_error(response, 429, "slot_busy")
        else:
            assert response.content[:2] == b"\xff\xd8"
    # Each accepted job was queued only after the one before it had finished.
    jobs = list(Job.objects.all())
    assert len(jobs) == statuses.count(200)
    spans = sorted(
        (
            job.logs.get(event=ProcessingLog.Event.QUEUED).created_at,
            job.logs.get(event=ProcessingLog.Event.FINALIZED).created_at,
        )
        for job in jobs
    )
    for (_, finished), (queued, _) in zip(spans, spans[1:], strict=False):
        assert queued > finished, spans
    assert all(job.succeeded for job in jobs)
    wait_until(lambda: stored_files(media_root, "payloads") == [], timeout=5)
