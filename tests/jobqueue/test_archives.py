"""All retained results of a slot or a time range as one streamed ZIP (jobqueue.archives)."""

from __future__ import annotations

import io
import logging
import random
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from ingest.models import Slot
from ingest.services import job_configuration
from jobqueue import archives, files, services
from jobqueue.archives import ResultArchive, select_results
from jobqueue.models import FailureReason, Job
from photobooth.errors import BadRequest
from tests.support.images import make_photo

pytestmark = pytest.mark.django_db

MARCH_1 = datetime(2025, 3, 1, 10, 15, 0, tzinfo=UTC)


# --- helpers (also used by the API's and the dashboard's tests) ----------------------------------
def _taken_job(slot_id: str) -> Job:
    stored = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=32)
    )
    job = services.enqueue_job(
        configuration=job_configuration(Slot.objects.get(id=slot_id)),
        payload=services.StoredPayload(
            path=stored.path, mime="image/jpeg", size=stored.size, sha256=stored.sha256
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=72),
    )
    [taken] = services.acquire_jobs(worker_id="tests", limit=1)
    assert taken.id == job.id and taken.lease_token is not None
    return taken


def result_job(
    slot_id: str = "slot-001",
    *,
    data: bytes | None = None,
    mime: str = "image/jpeg",
    created_at: datetime | None = None,
) -> Job:
    """A job that went through the queue and succeeded with this result file; its photo
    received at `created_at` (default: now)."""
    taken = _taken_job(slot_id)
    result = files.store_bytes(
        kind="results", stem=str(taken.id), mime=mime, data=data or make_photo(width=48)
    )
    assert services.finalize_success(
        job=taken, lease_token=taken.lease_token, result=result, result_mime=mime
    )
    if created_at is not None:
        Job.objects.filter(id=taken.id).update(created_at=created_at)
    return Job.objects.get(id=taken.id)


def failed_job(slot_id: str = "slot-001", *, created_at: datetime | None = None) -> Job:
    taken = _taken_job(slot_id)
    assert taken.lease_token is not None
    services.finalize_failure(
        job=taken, lease_token=taken.lease_token, reason=FailureReason.PROVIDER_ERROR
    )
    if created_at is not None:
        Job.objects.filter(id=taken.id).update(created_at=created_at)
    return Job.objects.get(id=taken.id)


def expire_result(job: Job) -> None:
    """The retention of this result is over (its file not cleaned up yet)."""
    Job.objects.filter(id=job.id).update(result_expires_at=timezone.now() - timedelta(minutes=1))


def expected_name(job: Job, extension: str = "jpg") -> str:
    return f"{job.slot_id}/{job.created_at.astimezone(UTC):%Y%m%d-%H%M%S}_{job.id}.{extension}"


def zip_contents(data: bytes) -> dict[str, bytes]:
    """Every entry of a ZIP by name, after checking each entry's CRC."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def whole(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


def archive_of(**selection: Any) -> tuple[bytes, ResultArchive]:
    archive = ResultArchive(select_results(**selection))
    return whole(archive.chunks()), archive


def noisy_bytes(size: int, seed: int = 0) -> bytes:
    """Distinct, incompressible content of this size (the same for the same seed)."""
    return random.Random(seed).randbytes(size)


# --- what an archive holds -----------------------------------------------------------------------
def test_the_archive_holds_every_retained_result_byte_for_byte_under_its_name() -> None:
    jpeg = result_job("slot-001", data=make_photo(width=64), created_at=MARCH_1)
    png = result_job(
        "slot-002",
        data=make_photo(width=64, format="PNG"),
        mime="image/png",
        created_at=MARCH_1 + timedelta(minutes=1),
    )
    webp = result_job(
        "slot-003",
        data=make_photo(width=64, format="WEBP"),
        mime="image/webp",
        created_at=MARCH_1 + timedelta(minutes=2),
    )

    data, archive = archive_of()

    assert zip_names(data) == [  # oldest first
        f"slot-001/20250301-101500_{jpeg.id}.jpg",
        f"slot-002/20250301-101600_{png.id}.png",
        f"slot-003/20250301-101700_{webp.id}.webp",
    ]
    contents = zip_contents(data)
    for job, extension in ((jpeg, "jpg"), (png, "png"), (webp, "webp")):
        assert contents[expected_name(job, extension)] == files.read_bytes(job.result_path)
    assert (archive.files_written, archive.files_skipped, archive.complete) == (3, 0, True)
    assert archive.bytes_sent == len(data)
    with zipfile.ZipFile(io.BytesIO(data)) as opened:
        info = opened.getinfo(expected_name(jpeg))
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.date_time == (2025, 3, 1, 10, 15, 0)


def test_expired_failed_other_slot_and_out_of_range_results_are_left_out() -> None:
    since, until = MARCH_1, MARCH_1 + timedelta(hours=2)
    at_start = result_job("slot-001", created_at=since)
    inside = result_job("slot-001", created_at=since + timedelta(hours=1))
    result_job("slot-001", created_at=since - timedelta(seconds=1))  # before the range
    result_job("slot-001", created_at=until)  # the end is not included
    result_job("slot-002", created_at=since + timedelta(minutes=5))  # another slot
    failed_job("slot-001", created_at=since + timedelta(minutes=10))
    expire_result(result_job("slot-001", created_at=since + timedelta(minutes=20)))

    data, archive = archive_of(slot_id="slot-001", since=since, until=until)

    assert zip_names(data) == [expected_name(at_start), expected_name(inside)]
    assert archive.files_written == 2
    summary = archives.archive_summary(select_results(slot_id="slot-001", since=since, until=until))
    assert summary.file_count == 2
    assert summary.total_bytes == at_start.result_size + inside.result_size  # type: ignore[operator]
    assert (summary.first_created_at, summary.last_created_at) == (since, inside.created_at)


def test_open_ranges_and_all_slots() -> None:
    old = result_job("slot-004", created_at=MARCH_1)
    new = result_job("slot-005", created_at=MARCH_1 + timedelta(days=1))

    assert zip_names(archive_of(since=MARCH_1 + timedelta(hours=1))[0]) == [expected_name(new)]
    assert zip_names(archive_of(until=MARCH_1 + timedelta(hours=1))[0]) == [expected_name(old)]
    assert archives.archive_summary(select_results()).file_count == 2


def test_nothing_selected_is_an_empty_but_valid_archive_and_a_zero_summary() -> None:
    failed_job("slot-001")

    data, archive = archive_of(slot_id="slot-001")

    assert zip_contents(data) == {}
    assert archive.complete and archive.files_written == 0
    summary = archives.archive_summary(select_results(slot_id="slot-001"))
    assert (summary.file_count, summary.total_bytes, summary.first_created_at) == (0, 0, None)


@pytest.mark.parametrize(
    ("since", "until"), [(MARCH_1, MARCH_1), (MARCH_1 + timedelta(seconds=1), MARCH_1)]
)
def test_since_must_come_before_until(since: datetime, until: datetime) -> None:
    with pytest.raises(BadRequest) as refused:
        select_results(since=since, until=until)

    assert refused.value.code == "invalid_parameter"
    assert "until" in refused.value.details


def test_entry_names_use_only_safe_characters() -> None:
    name = archives.entry_name(
        slot_id="../../etc/pass wd", created_at=MARCH_1, job_id=uuid.UUID(int=1), mime="x/unknown"
    )

    assert name == "_.._etc_pass_wd/20250301-101500_00000000-0000-0000-0000-000000000001.bin"
    assert archives.safe_name_part("..") == "_"


# --- files that vanish ---------------------------------------------------------------------------
def test_a_vanished_file_is_skipped_and_logged_and_the_archive_stays_valid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept = result_job("slot-001", created_at=MARCH_1)
    gone = result_job("slot-001", created_at=MARCH_1 + timedelta(minutes=1))
    also_kept = result_job("slot-001", created_at=MARCH_1 + timedelta(minutes=2))
    files.delete_quietly(gone.result_path)

    with caplog.at_level(logging.WARNING, logger="jobqueue.archives"):
        data, archive = archive_of()

    assert zip_contents(data) == {
        expected_name(kept): files.read_bytes(kept.result_path),
        expected_name(also_kept): files.read_bytes(also_kept.result_path),
    }
    assert (archive.files_written, archive.files_skipped) == (2, 1)
    [warning] = [r for r in caplog.records if r.name == "jobqueue.archives"]
    assert warning.levelno == logging.WARNING
    assert warning.job_id == str(gone.id)  # type: ignore[attr-defined]
    assert gone.result_path not in caplog.text


# --- streaming -----------------------------------------------------------------------------------
def test_the_archive_comes_in_bounded_chunks_and_starts_before_later_files_are_read() -> None:
    chunk_size = 64 * 1024
    first = result_job("slot-001", data=noisy_bytes(300_000, 1), created_at=MARCH_1)
    middle = result_job(
        "slot-001", data=noisy_bytes(200_000, 2), created_at=MARCH_1 + timedelta(minutes=1)
    )
    last = result_job(
        "slot-001", data=noisy_bytes(100_000, 3), created_at=MARCH_1 + timedelta(minutes=2)
    )
    archive = ResultArchive(select_results(), chunk_size=chunk_size)
    chunks: Iterator[bytes] = archive.chunks()

    opening = next(chunks)
    # The first bytes are out while the later files have not been read: removing one now
    # leaves it out of the archive.
    files.delete_quietly(last.result_path)
    rest = list(chunks)

    sizes = [len(opening), *(len(chunk) for chunk in rest)]
    assert max(sizes) <= chunk_size + 1024  # one read chunk plus at most a header
    assert len(sizes) > 10
    assert zip_contents(opening + whole(rest)) == {
        expected_name(first): noisy_bytes(300_000, 1),
        expected_name(middle): noisy_bytes(200_000, 2),
    }
    assert archive.files_skipped == 1


def test_jobs_are_read_in_batches_without_losing_or_repeating_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(archives, "BATCH_SIZE", 3)
    # Equal times: the batches continue by job id.
    jobs = [result_job("slot-001", created_at=MARCH_1) for _ in range(5)]
    jobs += [result_job("slot-002", created_at=MARCH_1 + timedelta(seconds=1)) for _ in range(3)]

    names = zip_names(archive_of()[0])

    assert sorted(names) == sorted(expected_name(job) for job in jobs)
    assert len(names) == len(set(names)) == 8


def test_the_asynchronous_stream_makes_the_same_archive() -> None:
    jobs = [
        result_job("slot-001", data=noisy_bytes(150_000, seed), created_at=MARCH_1)
        for seed in range(3)
    ]
    gone = result_job("slot-001", created_at=MARCH_1 + timedelta(hours=1))
    files.delete_quietly(gone.result_path)
    archive = ResultArchive(select_results(), chunk_size=64 * 1024)

    async def collect() -> list[bytes]:
        return [chunk async for chunk in archive.async_chunks()]

    chunks = async_to_sync(collect)()

    assert len(chunks) > 3
    assert zip_contents(whole(chunks)) == {
        expected_name(job): files.read_bytes(job.result_path) for job in jobs
    }
    assert (archive.files_written, archive.files_skipped, archive.complete) == (3, 1, True)


@pytest.mark.skipif(shutil.which("unzip") is None, reason="needs the unzip tool")
def test_other_zip_readers_accept_the_archive(tmp_path: Path) -> None:
    jobs = [
        result_job("slot-001", data=make_photo(width=40 + n), created_at=MARCH_1) for n in range(2)
    ]
    target = tmp_path / "results.zip"
    target.write_bytes(archive_of()[0])

    checked = subprocess.run(  # noqa: S603
        ["unzip", "-t", str(target)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No errors detected" in checked.stdout
    for job in jobs:
        assert expected_name(job) in checked.stdout
