"""Deadline and TTL rules (SPEC §2), as pure functions used by every component.

Nothing here reads the clock or the database: callers pass the instants and durations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

SYNC_RESPONSE_DEFAULT_SECONDS = 48
SYNC_RESPONSE_MIN_SECONDS = 45
SYNC_RESPONSE_MAX_SECONDS = 60
RESULT_RETENTION_DEFAULT = timedelta(hours=72)


@dataclass(frozen=True)
class JobDeadlines:
    """The instants fixed when a job is created."""

    expires_at: datetime
    payload_expires_at: datetime


def validate_sync_response_seconds(seconds: int) -> int:
    """`seconds` if it is an allowed T_sync_response (45–60), else ValueError."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError("must be a whole number of seconds")
    if not SYNC_RESPONSE_MIN_SECONDS <= seconds <= SYNC_RESPONSE_MAX_SECONDS:
        raise ValueError(
            f"must be between {SYNC_RESPONSE_MIN_SECONDS} and {SYNC_RESPONSE_MAX_SECONDS} seconds"
        )
    return seconds


def job_deadlines(
    *,
    created_at: datetime,
    sync_response: timedelta,
    ingest_ttl: timedelta | None = None,
) -> JobDeadlines:
    """expires_at = created_at + T_sync_response; the payload lives no longer than the job."""
    expires_at = created_at + sync_response
    return JobDeadlines(
        expires_at=expires_at,
        payload_expires_at=bounded_by_job(
            created_at=created_at,
            job_expires_at=expires_at,
            ttl=sync_response if ingest_ttl is None else ingest_ttl,
        ),
    )


def bounded_by_job(*, created_at: datetime, job_expires_at: datetime, ttl: timedelta) -> datetime:
    """min(job.expires_at, created_at + ttl): the rule for payloads and temporary public links."""
    return min(job_expires_at, created_at + ttl)


def result_expires_at(*, finalized_at: datetime, retention: timedelta) -> datetime:
    """A result stays downloadable for T_result_retention after its job finalized."""
    return finalized_at + retention


def remaining(*, deadline: datetime, now: datetime) -> timedelta:
    """Time left until `deadline`, never negative."""
    return max(timedelta(0), deadline - now)


def is_expired(*, deadline: datetime, now: datetime) -> bool:
    """True once `deadline` has been reached."""
    return now >= deadline
