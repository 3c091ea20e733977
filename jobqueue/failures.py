"""Recent failures: what went wrong over the last 1–72 hours, and the provider codes behind it.

Used by the dashboard's statistics page ("failure statistics over the last 1–72 h with the last
errors and their provider codes", SPEC §7). Everything is computed by the database in three
queries whatever the number of jobs: the counts per failure reason (and of all jobs, for the
failure rate), the counts per reason and provider code, and the latest failed jobs.

As in the statistics (jobqueue.stats), a job belongs to the window it was *created* in:
jobs created in [now - hours, now]. A job lives for less than a minute, so this is also when it
failed. Slot resets are ignored here: a reset clears a slot's success counters, not the record of
what failed.

The provider code is how a failure detail starts: the worker records a provider's refusal as
"<code>: <message>" (e.g. "rate_limited: quota exceeded"). A detail without such a prefix (e.g.
"deadline reached") has no code (the empty string).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, CharField, Count, F, Q, Value, When
from django.db.models.functions import StrIndex, Substr
from django.utils import timezone

from jobqueue.models import FailureReason, Job
from photobooth.errors import BadRequest

# The windows the dashboard offers; any whole number of hours in [MIN_HOURS, MAX_HOURS] works.
WINDOW_HOURS = (1, 6, 24, 72)
MIN_HOURS, MAX_HOURS = 1, 72
DEFAULT_HOURS = 24
DEFAULT_LIMIT = 20
MAX_LIMIT = 200

REASONS = tuple(str(reason) for reason in FailureReason.values)
# A provider code: snake_case, as ProviderError codes are; anything else is not a code.
CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
CODE_MAX_LENGTH = 40
CODE_SEPARATOR = ": "

FAILED = Q(is_finalized=True, failure_reason__isnull=False)


def reason_label(reason: str) -> str:
    """ "Provider error" for provider_error; an unknown reason as it is."""
    try:
        return str(FailureReason(reason).label)
    except ValueError:
        return reason


class InvalidWindow(BadRequest):
    code, message = "invalid_window", "The time window is invalid."


@dataclass(frozen=True)
class RecentFailure:
    """One failed job, newest first in the list."""

    job_id: uuid.UUID
    slot_id: str
    provider_id: str
    operation_id: str
    reason: str
    detail: str
    provider_code: str
    created_at: datetime
    finalized_at: datetime

    @property
    def reason_label(self) -> str:
        return reason_label(self.reason)


@dataclass(frozen=True)
class CodeCount:
    """How many jobs failed for `reason` with this provider code ("" = no code) in the window."""

    reason: str
    provider_code: str
    count: int

    @property
    def reason_label(self) -> str:
        return reason_label(self.reason)


@dataclass(frozen=True)
class RecentFailures:
    """Failures among the jobs created in [since, until]."""

    hours: int
    since: datetime
    until: datetime
    slot_id: str | None
    provider_id: str | None
    jobs: int  # every job created in the window, whatever its outcome
    failed: int
    by_reason: dict[str, int]  # every reason, zeros included, in FailureReason order
    by_code: list[CodeCount]  # most frequent first
    latest: list[RecentFailure]  # at most `limit`, newest first

    @property
    def failure_rate(self) -> float | None:
        """Percentage of the window's jobs that failed; None without jobs."""
        return round(100 * self.failed / self.jobs, 1) if self.jobs else None


def _window_error() -> InvalidWindow:
    return InvalidWindow(
        f"The window must be between {MIN_HOURS} and {MAX_HOURS} hours.",
        details={"hours": [f"Choose a whole number of hours from {MIN_HOURS} to {MAX_HOURS}."]},
    )


def parse_hours(text: str) -> int:
    """A window length from a query parameter ("24"); InvalidWindow unless 1–72 hours."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 3:
        raise _window_error()
    hours = int(text)
    if not MIN_HOURS <= hours <= MAX_HOURS:
        raise _window_error()
    return hours


# Where the detail's first ": " is (1-based; 0 if none), and the text before it when that is
# short enough to be a code (else ""), both computed by the database.
SEPARATOR_AT = StrIndex("failure_detail", Value(CODE_SEPARATOR))
CODE_PREFIX = Case(
    When(
        Q(separator_at__gt=1, separator_at__lte=CODE_MAX_LENGTH + 1),
        then=Substr("failure_detail", 1, F("separator_at") - 1),
    ),
    default=Value(""),
    output_field=CharField(),
)


def _code(prefix: str) -> str:
    """The provider code a detail's prefix holds, or "" when it is no code."""
    return prefix if CODE_PATTERN.fullmatch(prefix) else ""


def recent_failures(
    *,
    hours: int = DEFAULT_HOURS,
    slot_id: str | None = None,
    provider_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    now: datetime | None = None,
) -> RecentFailures:
    """Failures among the jobs created in the last `hours` hours (1–72), optionally of one
    slot and/or one provider: counts per reason and per provider code, and the latest `limit`
    failed jobs. InvalidWindow for hours out of range; ValueError for a bad limit."""
    if isinstance(hours, bool) or not isinstance(hours, int) or not MIN_HOURS <= hours <= MAX_HOURS:
        raise _window_error()
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    until = now or timezone.now()
    since = until - timedelta(hours=hours)
    window = Q(created_at__gte=since, created_at__lte=until)
    if slot_id is not None:
        window &= Q(slot_id=slot_id)
    if provider_id is not None:
        window &= Q(provider_id=provider_id)
    in_window = Job.objects.filter(window)

    totals = in_window.aggregate(
        jobs=Count("id"),
        failed=Count("id", filter=FAILED),
        **{reason: Count("id", filter=Q(failure_reason=reason)) for reason in REASONS},
    )

    code_counts: dict[tuple[str, str], int] = {}
    grouped = (
        in_window.filter(FAILED)
        .annotate(separator_at=SEPARATOR_AT)
        .annotate(code_prefix=CODE_PREFIX)
        .values("failure_reason", "code_prefix")
        .annotate(count=Count("id"))
        .order_by()
    )
    for row in grouped:
        key = (row["failure_reason"], _code(row["code_prefix"]))
        code_counts[key] = code_counts.get(key, 0) + row["count"]
    by_code = [
        CodeCount(reason=reason, provider_code=code, count=count)
        for (reason, code), count in sorted(
            code_counts.items(), key=lambda item: (-item[1], item[0][0], item[0][1])
        )
    ]

    rows = (
        in_window.filter(FAILED)
        .annotate(separator_at=SEPARATOR_AT)
        .annotate(code_prefix=CODE_PREFIX)
        .order_by("-created_at", "-id")
        .values(
            "id",
            "slot_id",
            "provider_id",
            "operation_id",
            "failure_reason",
            "failure_detail",
            "code_prefix",
            "created_at",
            "finalized_at",
        )[:limit]
    )
    latest = [
        RecentFailure(
            job_id=row["id"],
            slot_id=row["slot_id"],
            provider_id=row["provider_id"],
            operation_id=row["operation_id"],
            reason=row["failure_reason"],
            detail=row["failure_detail"],
            provider_code=_code(row["code_prefix"]),
            created_at=row["created_at"],
            finalized_at=row["finalized_at"],
        )
        for row in rows
    ]
    return RecentFailures(
        hours=hours,
        since=since,
        until=until,
        slot_id=slot_id,
        provider_id=provider_id,
        jobs=totals["jobs"],
        failed=totals["failed"],
        by_reason={reason: totals[reason] for reason in REASONS},
        by_code=by_code,
        latest=latest,
    )
