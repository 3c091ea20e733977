"""Job statistics: how many jobs arrived, succeeded and failed (and why) per hour/day/week/month.

Used by the admin API (GET /api/stats/<slot_id>, GET /api/stats/global) and the dashboard.
Every count is computed by the database in one aggregate query (jobs grouped by the UTC period
they were created in); only the short list of periods is completed here, so that periods without
jobs show up with zero counts and charts stay continuous.

A job counts in the period it was *created* in, whatever its outcome and whenever it finished:
- ingest_count: every job created (pending and processing ones included);
- success: finalized without a failure reason;
- timeouts / provider_errors / cancelled / errors: finalized with that failure reason
  (`errors` are internal errors).
A job still pending or processing counts only in ingest_count.

Periods are UTC: hours, days (00:00 UTC), ISO weeks (Monday 00:00 UTC) and calendar months. The
range is [from, to): `from` inclusive, `to` exclusive. The first period starts at or before
`from` and the last one may end after `to`; only jobs inside the range count.

Per-slot statistics honour the slot's `last_reset_at` (jobs created before the reset are not
counted; the periods before it are shown with zeros). Global statistics ignore resets: a reset
clears a slot's own view, not the history of the installation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, F, OuterRef, Q, Subquery
from django.db.models.functions import TruncDay, TruncHour, TruncMonth, TruncWeek
from django.utils import timezone

from ingest.models import Slot
from jobqueue.models import FailureReason, Job
from photobooth.errors import BadRequest, NotFound

HOUR, DAY, WEEK, MONTH = "hour", "day", "week", "month"
SLOT_GROUPINGS = (HOUR, DAY, WEEK)
GLOBAL_GROUPINGS = (DAY, WEEK, MONTH)
DEFAULT_GROUPING = DAY

SLOT_MAX_RANGE = timedelta(days=31)
GLOBAL_MAX_RANGE = timedelta(days=90)
# When `from` is left out: this long before `to` (which defaults to now).
SLOT_DEFAULT_RANGE = timedelta(days=7)
GLOBAL_DEFAULT_RANGE = timedelta(days=30)

GLOBAL_DEFAULT_PAGE_SIZE = 31
GLOBAL_MAX_PAGE_SIZE = 100
# Far beyond the last page of any allowed range (90 days by day: 91 periods).
GLOBAL_MAX_PAGE = 10_000

# Instants outside these bounds are refused: no statistics exist there, and the period
# arithmetic must stay inside what Python and every database can represent.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

SLOT_ID_MAX_LENGTH = Slot._meta.get_field("id").max_length or 32

_TRUNC = {HOUR: TruncHour, DAY: TruncDay, WEEK: TruncWeek, MONTH: TruncMonth}

# Each count's condition, in the order the answers list them; ingest_count counts every job.
COUNTED: Mapping[str, Q] = {
    "success": Q(is_finalized=True, failure_reason__isnull=True),
    "timeouts": Q(failure_reason=FailureReason.TIMEOUT),
    "provider_errors": Q(failure_reason=FailureReason.PROVIDER_ERROR),
    "cancelled": Q(failure_reason=FailureReason.CANCELLED),
    "errors": Q(failure_reason=FailureReason.INTERNAL_ERROR),
}
COUNT_NAMES = (*COUNTED, "ingest_count")


class InvalidRange(BadRequest):
    code, message = "invalid_range", "The time range is invalid."


class InvalidGroupBy(BadRequest):
    code, message = "invalid_group_by", "This grouping is not offered here."


@dataclass(frozen=True)
class Counts:
    """Jobs created in a period (or a whole range), by outcome."""

    success: int = 0
    timeouts: int = 0
    provider_errors: int = 0
    cancelled: int = 0
    errors: int = 0
    ingest_count: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_NAMES}

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{name: getattr(self, name) + getattr(other, name) for name in COUNT_NAMES})


@dataclass(frozen=True)
class Period:
    """One period (hour/day/week/month, UTC) starting at `start`, with its counts."""

    start: datetime
    counts: Counts


@dataclass(frozen=True)
class SlotStats:
    """One slot's statistics over [start, end), counting only jobs since its last reset."""

    slot_id: str
    group_by: str
    start: datetime
    end: datetime
    last_reset_at: datetime | None
    periods: list[Period]
    totals: Counts


@dataclass(frozen=True)
class GlobalStats:
    """All slots' statistics over [start, end); `periods` is one page of `count` periods and
    `totals` covers the whole range."""

    group_by: str
    start: datetime
    end: datetime
    count: int
    page: int
    page_size: int
    periods: list[Period]
    totals: Counts


# --- Parsing and checking the range ---------------------------------------------------------------


def parse_bound(text: str, *, name: str, is_end: bool) -> datetime:
    """A range bound from ISO 8601 text, as an aware UTC datetime.

    A date alone (2025-03-01) means midnight UTC at the start of that day for `from`, and the
    end of that day (midnight UTC of the next one) for `to`, so from=2025-03-01&to=2025-03-31
    covers all of March. A date-time without an offset is taken as UTC. InvalidRange (naming
    the parameter `name`) if the text is neither.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    try:
        if day is not None:
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if is_end:
                moment += timedelta(days=1)
        else:
            moment = datetime.fromisoformat(text)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise InvalidRange(
            f"`{name}` must be an ISO 8601 date or date-time.",
            details={name: ["Use an ISO 8601 date (2025-03-01) or date-time."]},
        ) from error
    return moment


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    *,
    default_range: timedelta,
    max_range: timedelta,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The range to report on (aware datetimes, returned in UTC): `end` defaults to now,
    `start` to `default_range` before `end`.

    InvalidRange unless start < end, the range spans at most `max_range` and both lie within
    the supported years.
    """
    end = (now or timezone.now()) if end is None else end
    if not EARLIEST <= end <= LATEST:
        raise InvalidRange(
            "`to` is out of the supported range.",
            details={"to": [f"Must lie between {EARLIEST.year} and {LATEST.year}."]},
        )
    start = end - default_range if start is None else start
    if not EARLIEST <= start <= LATEST:
        raise InvalidRange(
            "`from` is out of the supported range.",
            details={"from": [f"Must lie between {EARLIEST.year} and {LATEST.year}."]},
        )
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start >= end:
        raise InvalidRange(
            "`from` must be earlier than `to`.", details={"to": ["Must be later than `from`."]}
        )
    if end - start > max_range:
        days = max_range.days
        raise InvalidRange(
            f"The range may span at most {days} days.",
            details={"to": [f"Must be at most {days} days after `from`."]},
        )
    return start, end


def _check_grouping(group_by: str, allowed: Sequence[str]) -> None:
    if group_by not in allowed:
        raise InvalidGroupBy(
            f"group_by must be one of: {', '.join(allowed)}.",
            details={"group_by": [f"Choose one of: {', '.join(allowed)}."]},
        )


# --- Periods --------------------------------------------------------------------------------------


def period_start(moment: datetime, group_by: str) -> datetime:
    """The start (UTC) of the period containing `moment`, as the database truncates it."""
    moment = moment.astimezone(UTC)
    if group_by == HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if group_by == DAY:
        return day
    if group_by == WEEK:
        return day - timedelta(days=day.weekday())
    if group_by == MONTH:
        return day.replace(day=1)
    raise ValueError(f"unknown grouping {group_by!r}")


def next_period(start: datetime, group_by: str) -> datetime:
    """The start of the period after the one starting at `start`."""
    if group_by == HOUR:
        return start + timedelta(hours=1)
    if group_by == DAY:
        return start + timedelta(days=1)
    if group_by == WEEK:
        return start + timedelta(weeks=1)
    if group_by == MONTH:
        year, month = divmod(start.month, 12)
        return start.replace(year=start.year + year, month=month + 1)
    raise ValueError(f"unknown grouping {group_by!r}")


def period_starts(start: datetime, end: datetime, group_by: str) -> list[datetime]:
    """Every period start touching [start, end), oldest first."""
    starts: list[datetime] = []
    current = period_start(start, group_by)
    while current < end:
        starts.append(current)
        current = next_period(current, group_by)
    return starts


def _counts_by_period(condition: Q, group_by: str) -> dict[datetime, Counts]:
    """One aggregate query: the counts of the jobs matching `condition`, per UTC period."""
    truncate = _TRUNC[group_by]
    rows = (
        Job.objects.filter(condition)
        .annotate(period=truncate("created_at", tzinfo=UTC, output_field=DateTimeField()))
        .values("period")
        .annotate(
            **{name: Count("id", filter=rule) for name, rule in COUNTED.items()},
            ingest_count=Count("id"),
        )
        .order_by("period")
    )
    return {
        row["period"].astimezone(UTC): Counts(**{name: row[name] for name in COUNT_NAMES})
        for row in rows
    }


def _periods(condition: Q, start: datetime, end: datetime, group_by: str) -> list[Period]:
    """Every period of [start, end), with zero counts where no job was created."""
    found = _counts_by_period(condition, group_by)
    return [
        Period(start=s, counts=found.get(s, Counts())) for s in period_starts(start, end, group_by)
    ]


def _total(periods: Sequence[Period]) -> Counts:
    total = Counts()
    for period in periods:
        total += period.counts
    return total


# --- The two reports ------------------------------------------------------------------------------


def slot_stats(
    slot_id: str,
    *,
    group_by: str = DEFAULT_GROUPING,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> SlotStats:
    """One slot's counts per hour/day/week over [start, end) (at most 31 days; by default the
    7 days up to now), counting only jobs created at or after the slot's last reset.

    NotFound for an unknown slot, InvalidGroupBy / InvalidRange for a bad grouping or range.
    """
    _check_grouping(group_by, SLOT_GROUPINGS)
    start, end = resolve_range(
        start, end, default_range=SLOT_DEFAULT_RANGE, max_range=SLOT_MAX_RANGE, now=now
    )
    # An id no slot can have (too long, NUL bytes PostgreSQL refuses) needs no query.
    plausible = len(slot_id) <= SLOT_ID_MAX_LENGTH and "\x00" not in slot_id
    resets = Slot.objects.filter(id=slot_id).values_list("last_reset_at", flat=True)
    found = list(resets[:1]) if plausible else []
    if not found:
        raise NotFound("No slot with this id.", code="slot_not_found")
    reset: datetime | None = found[0]
    counted_from = start if reset is None else max(start, reset)
    condition = Q(slot_id=slot_id, created_at__gte=counted_from, created_at__lt=end)
    periods = _periods(condition, start, end, group_by)
    return SlotStats(
        slot_id=slot_id,
        group_by=group_by,
        start=start,
        end=end,
        last_reset_at=reset,
        periods=periods,
        totals=_total(periods),
    )


def global_stats(
    *,
    group_by: str = DEFAULT_GROUPING,
    start: datetime | None = None,
    end: datetime | None = None,
    provider_id: str | None = None,
    slot_id: str | None = None,
    page: int = 1,
    page_size: int = GLOBAL_DEFAULT_PAGE_SIZE,
    now: datetime | None = None,
) -> GlobalStats:
    """Counts over all slots (or one provider's / one slot's jobs) per day/week/month over
    [start, end) (at most 90 days; by default the 30 days up to now), one page of periods at a
    time (oldest first); `totals` covers the whole range. Slot resets are ignored.

    InvalidGroupBy / InvalidRange for a bad grouping or range; ValueError for a page or page
    size out of bounds.
    """
    _check_grouping(group_by, GLOBAL_GROUPINGS)
    if not 1 <= page_size <= GLOBAL_MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {GLOBAL_MAX_PAGE_SIZE}")
    if not 1 <= page <= GLOBAL_MAX_PAGE:
        raise ValueError(f"page must be between 1 and {GLOBAL_MAX_PAGE}")
    start, end = resolve_range(
        start, end, default_range=GLOBAL_DEFAULT_RANGE, max_range=GLOBAL_MAX_RANGE, now=now
    )
    condition = Q(created_at__gte=start, created_at__lt=end)
    if provider_id is not None:
        condition &= Q(provider_id=provider_id)
    if slot_id is not None:
        condition &= Q(slot_id=slot_id)
    periods = _periods(condition, start, end, group_by)
    offset = (page - 1) * page_size
    return GlobalStats(
        group_by=group_by,
        start=start,
        end=end,
        count=len(periods),
        page=page,
        page_size=page_size,
        periods=periods[offset : offset + page_size],
        totals=_total(periods),
    )


# --- JSON -----------------------------------------------------------------------------------------


def utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, whatever the server's TIME_ZONE."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def period_json(period: Period) -> dict[str, Any]:
    return {"start": utc_text(period.start), **period.counts.as_dict()}


def slot_stats_json(stats: SlotStats) -> dict[str, Any]:
    """The API's answer for one slot's statistics."""
    return {
        "slot_id": stats.slot_id,
        "group_by": stats.group_by,
        "from": utc_text(stats.start),
        "to": utc_text(stats.end),
        "last_reset_at": None if stats.last_reset_at is None else utc_text(stats.last_reset_at),
        "periods": [period_json(period) for period in stats.periods],
        "totals": stats.totals.as_dict(),
    }


def global_stats_json(stats: GlobalStats) -> dict[str, Any]:
    """The API's answer for the global statistics."""
    return {
        "group_by": stats.group_by,
        "from": utc_text(stats.start),
        "to": utc_text(stats.end),
        "count": stats.count,
        "page": stats.page,
        "page_size": stats.page_size,
        "periods": [period_json(period) for period in stats.periods],
        "totals": stats.totals.as_dict(),
    }


# --- Per-slot summary (dashboard home) ---------------------------------------------------------


def counts_by_slot(*, since: datetime) -> dict[str, Counts]:
    """Each slot's counts for jobs created since `since` (and since the slot's last reset), in
    one aggregate query. Slots without jobs are absent."""
    last_reset = Slot.objects.filter(id=OuterRef("slot_id")).values("last_reset_at")[:1]
    rows = (
        Job.objects.filter(created_at__gte=since)
        .annotate(slot_reset_at=Subquery(last_reset))
        .filter(Q(slot_reset_at__isnull=True) | Q(created_at__gte=F("slot_reset_at")))
        .values("slot_id")
        .annotate(
            **{name: Count("id", filter=rule) for name, rule in COUNTED.items()},
            ingest_count=Count("id"),
        )
        .order_by("slot_id")
    )
    return {row["slot_id"]: Counts(**{name: row[name] for name in COUNT_NAMES}) for row in rows}
