"""The whole pipeline through real processes: uvicorn, run_workers, the database, the files."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from PIL import ImageStat

from ingest.services import update_slot
from jobqueue import files
from jobqueue.models import FailureReason, Job, ProcessingLog
from tests.conftest import Stack
from tests.support.images import open_image
from tests.support.slots import configure_testing_slot
from tests.support.stack import all_at_once, wait_until

DSLR_FIELDS = {
    "time": "1764380000",
    "user_id": "booth-7",
    "id": "0123456789-0003",
    "profile": r"C:\Users\booth\profiles\wedding.xml",
    "status": r"C:\Users\booth\status",
    "name": "BOOTH-PC",
    "model": "Canon EOS R6",
    "version": "3.30",
}


def post_photo(
    stack: Stack, slot_id: str, photo: bytes, password: str, **fields: str
) -> requests.Response:
    return requests.post(
        f"{stack.base_url}/ingest/{slot_id}",
        data={"password": password, **fields},
        files={"fileToUpload": ("IMG_0003.JPG", photo, "image/jpeg")},
        timeout=90,
    )


def test_booth_gets_the_processed_photo_back(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    update_slot(
        slot_id="slot-001",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "black_and_white"},
        is_active=True,
    )
    response = post_photo(
        stack,
        "slot-001",
        photo_jpeg,
        ingest_password,
        hash=hashlib.sha1(photo_jpeg).hexdigest(),
        **DSLR_FIELDS,
    )

    assert response.status_code == 200, stack.logs()
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "no-store"
    result = open_image(response.content)
    original = open_image(photo_jpeg)
    assert result.size == original.size
    # Black and white: the three channels carry the same picture.
    red, green, blue = ImageStat.Stat(result).mean
    assert abs(red - green) < 2 and abs(green - blue) < 2
    assert ImageStat.Stat(original).mean != ImageStat.Stat(result).mean

    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    assert job.succeeded
    assert job.slot_id == "slot-001"
    assert job.metadata["model"] == "Canon EOS R6"
    assert job.metadata["profile"] == DSLR_FIELDS["profile"]
    assert "password" not in job.metadata
    assert job.result_sha256 == hashlib.sha256(response.content).hexdigest()
    assert job.result_expires_at == job.finalized_at + timedelta(hours=72)
    received = job.logs.get(event=ProcessingLog.Event.RECEIVED)
    assert received.details["integrity"] == "verified"
    # The uploaded photo is deleted once the job is finalized; no image bytes in the database.
    assert job.payload_path == ""
    assert not _files_under("payloads")
    events = list(job.logs.order_by("created_at", "id").values_list("event", flat=True))
    assert events[:3] == ["received", "queued", "picked_up"]
    assert events[-1] == "finalized"

    download = requests.get(f"{stack.base_url}/public/results/{job.id}", timeout=10)
    assert download.status_code == 200
    assert download.content == response.content
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"


def _files_under(kind: str) -> list[str]:
    root = files.default_storage.path(kind)
    return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]


def test_slow_provider_gets_504_at_the_deadline_and_nothing_is_left(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    configure_testing_slot("slot-002", settings={"seconds": 30}, sync_response_seconds=2)
    started = time.monotonic()
    response = post_photo(stack, "slot-002", photo_jpeg, ingest_password)
    elapsed = time.monotonic() - started

    assert response.status_code == 504, stack.logs()
    body = response.json()["error"]
    assert body["code"] == "timeout"
    job = Job.objects.get(id=body["details"]["job_id"])
    assert body["details"]["expires_at"] == job.expires_at.isoformat()
    assert elapsed < 2 + 1.5  # the booth is answered at the deadline, not when the provider ends
    assert job.is_finalized and job.failure_reason == FailureReason.TIMEOUT
    assert job.payload_path == "" and not _files_under("payloads")
    # The worker stops working on it: its provider call ends at the deadline, and its answer,
    # if any, changes nothing.
    wait_until(lambda: job.logs.filter(event=ProcessingLog.Event.PROVIDER_CALL).exists(), timeout=5)
    job.refresh_from_db()
    assert job.failure_reason == FailureReason.TIMEOUT
    assert job.result_path == "" and not _files_under("results")
    assert job.logs.filter(event=ProcessingLog.Event.FINALIZED).count() == 1


def test_a_burst_reaching_the_deadline_together_is_answered_504_each_job_timed_out_once(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    configure_testing_slot("slot-002", settings={"seconds": 30}, sync_response_seconds=2)
    booths = 12

    def booth(number: int) -> requests.Response:
        return requests.post(
            f"{stack.base_url}/ingest/slot-002",
            data={"password": ingest_password},
            files={"fileToUpload": ("IMG_0003.JPG", photo_jpeg, "image/jpeg")},
            headers={"X-Request-Id": f"burst-booth-{number:02d}"},
            timeout=90,
        )

    responses = all_at_once(booths, booth)

    assert [response.status_code for response in responses] == [504] * booths, stack.logs()
    job_ids = {response.json()["error"]["details"]["job_id"] for response in responses}
    assert len(job_ids) == booths
    for job in Job.objects.filter(id__in=job_ids):
        assert job.is_finalized and job.failure_reason == FailureReason.TIMEOUT
        [finalized] = job.logs.filter(event=ProcessingLog.Event.FINALIZED)
        assert finalized.details["outcome"] == "timeout"
    # Each request's timeout is logged under that request's own correlation id.
    lines = [
        json.loads(line)
        for line in stack.web.process.output().splitlines()
        if line.startswith("{") and '"job finalized"' in line
    ]
    by_job = {line["job_id"]: line.get("request_id") for line in lines}
    for number, response in enumerate(responses):
        job_id = response.json()["error"]["details"]["job_id"]
        if job_id in by_job:  # (the reaper may have been first for some)
            assert by_job[job_id] == f"burst-booth-{number:02d}"
    assert by_job, stack.logs()


def test_provider_error_is_answered_at_once_with_502(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    update_slot(
        slot_id="slot-003", provider_id="testing", operation_id="fail", settings={}, is_active=True
    )
    response = post_photo(stack, "slot-003", photo_jpeg, ingest_password)

    assert response.status_code == 502, stack.logs()
    assert response.json()["error"]["code"] == "provider_error"
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert "told_to_fail" in job.failure_detail
    assert not _files_under("payloads")


def test_public_result_is_gone_after_retention(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    response = post_photo(stack, "slot-001", photo_jpeg, ingest_password)
    assert response.status_code == 200, stack.logs()
    job_id = response.headers["X-Job-Id"]
    url = f"{stack.base_url}/public/results/{job_id}"
    assert requests.get(url, timeout=10).status_code == 200

    Job.objects.filter(id=job_id).update(result_expires_at=timezone.now() - timedelta(seconds=1))
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "result_expired"
    # The workers' periodic cleanup removes the file; the job row keeps its history.
    wait_until(lambda: Job.objects.get(id=job_id).result_path == "", timeout=10)
    assert not _files_under("results")
    assert Job.objects.get(id=job_id).succeeded


@pytest.mark.parametrize("job_id", [uuid.uuid4(), None])
def test_public_result_is_404_for_unknown_or_failed_jobs(
    stack: Stack, ingest_password: str, photo_jpeg: bytes, job_id: uuid.UUID | None
) -> None:
    if job_id is None:
        update_slot(
            slot_id="slot-003",
            provider_id="testing",
            operation_id="fail",
            settings={},
            is_active=True,
        )
        job_id = post_photo(stack, "slot-003", photo_jpeg, ingest_password).headers["X-Job-Id"]
    response = requests.get(f"{stack.base_url}/public/results/{job_id}", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "result_not_found"
