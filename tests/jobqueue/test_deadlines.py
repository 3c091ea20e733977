"""The deadline and TTL rules of SPEC §2, as the pure functions every component uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobqueue import deadlines

CREATED = datetime(2025, 6, 14, 18, 30, 0, tzinfo=UTC)
SYNC = timedelta(seconds=48)


def test_job_expires_t_sync_response_after_it_was_created() -> None:
    job = deadlines.job_deadlines(created_at=CREATED, sync_response=SYNC)

    assert job.expires_at == datetime(2025, 6, 14, 18, 30, 48, tzinfo=UTC)


def test_changing_t_sync_response_gives_new_jobs_a_different_deadline() -> None:
    short = deadlines.job_deadlines(created_at=CREATED, sync_response=timedelta(seconds=45))
    long = deadlines.job_deadlines(created_at=CREATED, sync_response=timedelta(seconds=60))

    assert long.expires_at - short.expires_at == timedelta(seconds=15)


def test_payload_lives_exactly_as_long_as_the_job_by_default() -> None:
    job = deadlines.job_deadlines(created_at=CREATED, sync_response=SYNC)

    assert job.payload_expires_at == job.expires_at


def test_a_shorter_ingest_ttl_removes_the_payload_before_the_job_ends() -> None:
    job = deadlines.job_deadlines(
        created_at=CREATED, sync_response=SYNC, ingest_ttl=timedelta(seconds=30)
    )

    assert job.payload_expires_at == CREATED + timedelta(seconds=30)
    assert job.expires_at == CREATED + SYNC


def test_a_payload_never_outlives_its_job_even_with_a_longer_ttl() -> None:
    job = deadlines.job_deadlines(
        created_at=CREATED, sync_response=SYNC, ingest_ttl=timedelta(minutes=10)
    )

    assert job.payload_expires_at == job.expires_at


@pytest.mark.parametrize(
    ("ttl_seconds", "expected_seconds_after_creation"),
    [(10, 10), (48, 48), (600, 48)],
)
def test_public_link_expires_at_the_earlier_of_its_ttl_and_the_job_deadline(
    ttl_seconds: int, expected_seconds_after_creation: int
) -> None:
    link_expires_at = deadlines.bounded_by_job(
        created_at=CREATED, job_expires_at=CREATED + SYNC, ttl=timedelta(seconds=ttl_seconds)
    )

    assert link_expires_at == CREATED + timedelta(seconds=expected_seconds_after_creation)


def test_public_link_published_late_in_a_job_still_dies_with_the_job() -> None:
    job_expires_at = CREATED + SYNC
    published_at = CREATED + timedelta(seconds=40)

    link_expires_at = deadlines.bounded_by_job(
        created_at=published_at, job_expires_at=job_expires_at, ttl=SYNC
    )

    assert link_expires_at == job_expires_at


def test_result_stays_downloadable_for_the_retention_after_finalization() -> None:
    finalized_at = CREATED + timedelta(seconds=7)

    expires = deadlines.result_expires_at(
        finalized_at=finalized_at, retention=deadlines.RESULT_RETENTION_DEFAULT
    )

    assert expires == finalized_at + timedelta(hours=72)


def test_retention_is_counted_from_finalization_not_from_the_job_deadline() -> None:
    # A job that finished in 3 s of its 48 s: the link lives one day from second 3.
    finalized_at = CREATED + timedelta(seconds=3)

    one_day = deadlines.result_expires_at(finalized_at=finalized_at, retention=timedelta(days=1))

    assert one_day == datetime(2025, 6, 15, 18, 30, 3, tzinfo=UTC)


def test_remaining_time_counts_down_to_the_deadline() -> None:
    deadline = CREATED + SYNC

    assert deadlines.remaining(deadline=deadline, now=CREATED) == SYNC
    assert deadlines.remaining(
        deadline=deadline, now=CREATED + timedelta(seconds=47, milliseconds=500)
    ) == timedelta(milliseconds=500)


@pytest.mark.parametrize("late_by", [timedelta(0), timedelta(microseconds=1), timedelta(hours=5)])
def test_remaining_time_is_never_negative(late_by: timedelta) -> None:
    deadline = CREATED + SYNC

    assert deadlines.remaining(deadline=deadline, now=deadline + late_by) == timedelta(0)


def test_a_job_is_expired_from_its_deadline_on() -> None:
    deadline = CREATED + SYNC

    assert not deadlines.is_expired(deadline=deadline, now=deadline - timedelta(microseconds=1))
    assert deadlines.is_expired(deadline=deadline, now=deadline)
    assert deadlines.is_expired(deadline=deadline, now=deadline + timedelta(seconds=1))


def test_default_sync_response_is_48_seconds_and_valid() -> None:
    assert deadlines.SYNC_RESPONSE_DEFAULT_SECONDS == 48
    assert deadlines.validate_sync_response_seconds(48) == 48


@pytest.mark.parametrize("seconds", [45, 46, 59, 60])
def test_sync_response_between_45_and_60_seconds_is_accepted(seconds: int) -> None:
    assert deadlines.validate_sync_response_seconds(seconds) == seconds


@pytest.mark.parametrize("seconds", [44, 61, 0, -48, 3600])
def test_sync_response_outside_45_to_60_seconds_is_refused(seconds: int) -> None:
    with pytest.raises(ValueError, match="between 45 and 60"):
        deadlines.validate_sync_response_seconds(seconds)


@pytest.mark.parametrize("value", [True, False, 48.0, 45.5, "48", None])
def test_sync_response_must_be_a_whole_number_of_seconds(value: Any) -> None:
    with pytest.raises(ValueError, match="whole number"):
        deadlines.validate_sync_response_seconds(value)
