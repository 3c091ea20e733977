"""The jobs monitor, one job's page and the statistics page (all need `stats:read`).

The pages read what the admin API reads, with the same rules: the jobs list validates its
filters with the API's own query serializer (api.jobs.JobListQuery) and asks
jobqueue.job_queries; the statistics parse and check their range and grouping in jobqueue.stats
(the API's messages, shown next to the fields); the recent failures come from
jobqueue.failures. Bad filters never cause a 500: the page comes back (400) with the form and
the message.

Live updates are progressive: the jobs list (and an unfinished job's page) holds a
`data-live-src` address answering just the changing fragment (`?partial=1`), which
static/adminui/monitor.js fetches every few seconds; without JavaScript a "Refresh" link reloads
the page.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.views.decorators.http import require_safe

from adminui import charts
from adminui.access import requires_scope
from api.jobs import JobListQuery
from api.schema import valid_query
from api.stats import GlobalQuery
from ingest.models import Slot
from jobqueue import failures, job_queries, stats
from jobqueue.job_queries import JobFilters, JobView
from jobqueue.models import FailureReason, ProcessingLog
from jobqueue.selectors import any_live_worker
from photobooth.errors import BadRequest, NotFound
from providers.registry import all_providers

# How often monitor.js fetches a live fragment again (milliseconds).
LIVE_INTERVAL_MS = 3000

STATUS_LABELS = {
    job_queries.PENDING: "Waiting",
    job_queries.PROCESSING: "Processing",
    job_queries.SUCCEEDED: "Succeeded",
    job_queries.FAILED: "Failed",
}
# The badge class of each status (app.css: .badge on/off/bad; monitor.css: .badge.busy).
STATUS_BADGES = {
    job_queries.PENDING: "off",
    job_queries.PROCESSING: "busy",
    job_queries.SUCCEEDED: "on",
    job_queries.FAILED: "bad",
}
REASON_LABELS = {str(value): str(label) for value, label in FailureReason.choices}
SORT_LABELS = {
    "-created_at": "Newest first",
    "created_at": "Oldest first",
    "expires_at": "Deadline, soonest first",
    "-expires_at": "Deadline, latest first",
}
PAGE_SIZES = (25, 50, 100, 200)
# The query parameters of the jobs list (those of GET /api/jobs).
JOB_PARAMETERS = tuple(JobListQuery().fields)
# The query parameters of the statistics page: the API's plus the scope and the window.
STATS_PARAMETERS = ("scope", "slot", "provider", "group_by", "from", "to", "hours")
GLOBAL, SLOT = "global", "slot"
GROUPING_LABELS = {
    stats.HOUR: "Hour (one slot)",
    stats.DAY: "Day",
    stats.WEEK: "Week",
    stats.MONTH: "Month (all slots)",
}


# --- shared helpers ------------------------------------------------------------------------------


def _filled(query: QueryDict, names: Iterable[str]) -> dict[str, str]:
    """The named parameters that have a value (an empty form field means "any")."""
    found = {name: query.get(name) for name in names}
    return {name: value for name, value in found.items() if isinstance(value, str) and value}


def _address(values: Mapping[str, object]) -> str:
    """A query string ("?a=1&b=2") holding these values."""
    query = QueryDict(mutable=True)
    for name, value in values.items():
        query[name] = str(value)
    return f"?{query.urlencode()}" if query else "?"


def _messages(error: BadRequest) -> dict[str, list[str]]:
    return {field: [str(text) for text in texts] for field, texts in error.details.items()}


def duration(milliseconds: int | None) -> str:
    """850 ms, 4.2 s, 3 min 05 s; an en dash while unknown."""
    if milliseconds is None:
        return "–"
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f} s"
    minutes, seconds = divmod(round(milliseconds / 1000), 60)
    return f"{minutes} min {seconds:02d} s"


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _slot_names() -> dict[str, str]:
    return dict(Slot.objects.order_by("id").values_list("id", "name"))


def _provider_choices() -> list[tuple[str, str]]:
    return [(provider.id, provider.label) for provider in all_providers().values()]


# --- the jobs list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """A job as a row of the list: the job plus its durations in words."""

    job: JobView
    status_label: str
    badge: str
    reason_label: str
    waited: str
    processing: str
    total: str
    remaining: str


def job_row(job: JobView) -> JobRow:
    return JobRow(
        job=job,
        status_label=STATUS_LABELS[job.status],
        badge=STATUS_BADGES[job.status],
        reason_label=REASON_LABELS.get(job.failure_reason or "", job.failure_reason or ""),
        waited=duration(job.timings.queue_wait_ms),
        processing=duration(job.timings.processing_ms),
        total=duration(job.timings.total_elapsed_ms),
        remaining=duration(job.deadline.remaining_ms),
    )


@dataclass(frozen=True)
class PageLink:
    label: str
    address: str
    rel: str  # first, prev, next or last


def _page_links(filters: Mapping[str, str], page: int, pages: int) -> list[PageLink]:
    def to(number: int) -> str:
        return _address({**filters, "page": number})

    found: list[PageLink] = []
    if page > 1:
        found += [PageLink("First", to(1), "first"), PageLink("Previous", to(page - 1), "prev")]
    if page < pages:
        found += [PageLink("Next", to(page + 1), "next"), PageLink("Last", to(pages), "last")]
    return found


@require_safe
@requires_scope("stats:read")
def jobs_page(request: HttpRequest) -> HttpResponse:
    """Current and recent jobs, filtered and sorted as GET /api/jobs does; `?partial=1`
    answers only the live part (summary, table, page links) for monitor.js."""
    partial = request.GET.get("partial") == "1"
    raw = _filled(request.GET, JOB_PARAMETERS)
    context: dict[str, Any] = {
        "nav": "jobs",
        "values": raw,
        "errors": {},
        "error": "",
        "statuses": [(status, STATUS_LABELS[status]) for status in job_queries.STATUSES],
        "reasons": list(REASON_LABELS.items()),
        "slots": list(_slot_names().items()),
        "providers": _provider_choices(),
        "sorts": list(SORT_LABELS.items()),
        "page_sizes": PAGE_SIZES,
        "time_zone": settings.TIME_ZONE,
        "live_interval": LIVE_INTERVAL_MS,
        "page_size_value": raw.get("page_size", str(job_queries.DEFAULT_PAGE_SIZE)),
        "refresh_address": _address(raw),
        "first_address": _address({k: v for k, v in raw.items() if k != "page"}),
        "live_address": _address({**raw, "partial": "1"}),
    }
    status = 200
    try:
        params = valid_query(JobListQuery(data=raw))
    except BadRequest as error:
        context["errors"] = _messages(error)
        context["error"] = "Some filters are invalid: correct them and try again."
        status = 400
    else:
        page = job_queries.job_page(
            JobFilters(
                status=params.get("status"),
                is_finalized=params.get("is_finalized"),
                failure_reason=params.get("failure_reason"),
                slot_id=params.get("slot"),
                provider_id=params.get("provider"),
                created_after=params.get("created_after"),
                created_before=params.get("created_before"),
            ),
            sort=params["sort"],
            page=params["page"],
            page_size=params["page_size"],
        )
        pages = max(1, math.ceil(page.count / page.page_size))
        kept = {name: value for name, value in raw.items() if name != "page"}
        context.update(
            page=page,
            pages=pages,
            rows=[job_row(job) for job in page.results],
            page_links=_page_links(kept, page.page, min(pages, job_queries.MAX_PAGE)),
            worker_alive=any_live_worker(
                stale_after=timedelta(seconds=settings.WORKER_STALE_SECONDS)
            ),
            updated_at=timezone.now(),
            filtered=any(name not in ("sort", "page", "page_size") for name in raw),
        )
    template = "adminui/jobs_live.html" if partial else "adminui/jobs.html"
    return _no_store(render(request, template, context, status=status))


# --- one job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRow:
    event: str
    label: str
    created_at: datetime
    details: str  # pretty-printed JSON ("" when there are none)


def _event_label(event: str) -> str:
    try:
        return str(ProcessingLog.Event(event).label)
    except ValueError:
        return event


@require_safe
@requires_scope("stats:read")
def job_detail_page(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Everything GET /api/jobs/<id> shows, with the processing log; an unfinished job's page
    stays live (`?partial=1` answers the changing part)."""
    try:
        job = job_queries.job_detail(job_id)
    except NotFound:
        return render(request, "adminui/not_found.html", status=404)
    log = [
        LogRow(
            event=entry.event,
            label=_event_label(entry.event),
            created_at=entry.created_at,
            details=(
                json.dumps(entry.details, indent=2, sort_keys=True, ensure_ascii=False, default=str)
                if entry.details
                else ""
            ),
        )
        for entry in job.log
    ]
    result_available = job.result is not None and job.result.expires_at > timezone.now()
    context = {
        "nav": "jobs",
        "job": job,
        "row": job_row(job),
        "log": log,
        "result_available": result_available,
        # Same origin as the dashboard (the public address may be another host name).
        "thumbnail_path": (
            reverse("public-result-thumbnail", kwargs={"job_id": job.id})
            if result_available
            else ""
        ),
        "time_zone": settings.TIME_ZONE,
        "live_interval": LIVE_INTERVAL_MS,
        "live_address": "?partial=1",
    }
    partial = request.GET.get("partial") == "1"
    template = "adminui/jobs_detail_live.html" if partial else "adminui/job_detail.html"
    return _no_store(render(request, template, context))


# --- statistics ----------------------------------------------------------------------------------

# What the charts stack, bottom up: finished jobs by outcome (the Counts field, label, colour).
OUTCOMES = (
    charts.Series("success", "Succeeded", "#1f7a3a"),
    charts.Series("timeouts", "Timeouts", "#c27c0e"),
    charts.Series("provider_errors", "Provider errors", "#b42318"),
    charts.Series("cancelled", "Cancelled", "#7d8797"),
    charts.Series("errors", "Internal errors", "#6b3fa0"),
)
UNFINISHED = charts.Series("unfinished", "Not finished yet", "#8fb0ef")
PERIOD_WORDS = {stats.HOUR: "hour", stats.DAY: "day", stats.WEEK: "week", stats.MONTH: "month"}
AXIS_FORMATS = {
    stats.HOUR: "%m-%d %Hh",
    stats.DAY: "%b %d",
    stats.WEEK: "%b %d",
    stats.MONTH: "%b %Y",
}
PERIOD_FORMATS = {
    stats.HOUR: "%Y-%m-%d %H:00",
    stats.DAY: "%Y-%m-%d",
    stats.WEEK: "week of %Y-%m-%d",
    stats.MONTH: "%Y-%m",
}


@dataclass(frozen=True)
class PeriodRow:
    label: str
    counts: stats.Counts
    unfinished: int
    success_rate: int | None


def _unfinished(counts: stats.Counts) -> int:
    finished = sum(getattr(counts, outcome.key) for outcome in OUTCOMES)
    return max(0, counts.ingest_count - finished)


def _success_rate(counts: stats.Counts) -> int | None:
    finished = counts.ingest_count - _unfinished(counts)
    return round(100 * counts.success / finished) if finished else None


def _period_rows(periods: Sequence[stats.Period], group_by: str) -> list[PeriodRow]:
    return [
        PeriodRow(
            label=period.start.strftime(PERIOD_FORMATS[group_by]),
            counts=period.counts,
            unfinished=_unfinished(period.counts),
            success_rate=_success_rate(period.counts),
        )
        for period in periods
    ]


def outcome_chart(
    *, chart_id: str, title: str, periods: Sequence[stats.Period], group_by: str
) -> SafeString:
    """The stacked bar chart of the periods' outcomes (plus unfinished jobs, if any)."""
    series = list(OUTCOMES)
    rows = [[getattr(p.counts, outcome.key) for outcome in OUTCOMES] for p in periods]
    unfinished = [_unfinished(p.counts) for p in periods]
    if any(unfinished):
        series.append(UNFINISHED)
        rows = [[*row, extra] for row, extra in zip(rows, unfinished, strict=True)]
    total = stats.Counts()
    for period in periods:
        total += period.counts
    word = PERIOD_WORDS[group_by]
    description = (
        f"Stacked bars, one per {word} (UTC): "
        f"{total.ingest_count} photos received, {total.success} succeeded, "
        f"{total.timeouts} timeouts, {total.provider_errors} provider errors, "
        f"{total.cancelled} cancelled, {total.errors} internal errors. "
        "The table below the chart lists every period."
    )
    return charts.stacked_bar_chart(
        chart_id=chart_id,
        title=title,
        description=description,
        categories=[p.start.strftime(PERIOD_FORMATS[group_by]) for p in periods],
        category_labels=[p.start.strftime(AXIS_FORMATS[group_by]) for p in periods],
        series=series,
        values=rows,
        x_label=f"{word.capitalize()} (UTC)",
        y_label="Jobs",
    )


@dataclass(frozen=True)
class StatsView:
    """What the statistics form asked for, resolved by jobqueue.stats."""

    title: str
    group_by: str
    start: datetime
    end: datetime
    last_reset_at: datetime | None
    periods: list[stats.Period]
    totals: stats.Counts
    omitted: int  # periods past the page (never with the allowed ranges)


def _read_stats(values: Mapping[str, str], slot_names: Mapping[str, str]) -> StatsView:
    """Ask jobqueue.stats for what the form says; BadRequest/NotFound with its message."""
    scope = values.get("scope", GLOBAL)
    if scope not in (GLOBAL, SLOT):
        raise BadRequest(
            "Choose all slots or one slot.", details={"scope": ["Choose all slots or one slot."]}
        )
    # Slot and provider first, as the API checks them (length, no NUL characters).
    query = valid_query(
        GlobalQuery(data={key: values[key] for key in ("slot", "provider") if key in values})
    )
    start = values.get("from")
    end = values.get("to")
    start_at = None if start is None else stats.parse_bound(start, name="from", is_end=False)
    end_at = None if end is None else stats.parse_bound(end, name="to", is_end=True)
    group_by = values.get("group_by", stats.DEFAULT_GROUPING)
    if scope == SLOT:
        slot_id = query.get("slot")
        if slot_id is None:
            raise BadRequest("Choose a slot.", details={"slot": ["Choose a slot."]})
        try:
            found = stats.slot_stats(slot_id, group_by=group_by, start=start_at, end=end_at)
        except NotFound as error:
            raise BadRequest(error.message, details={"slot": [error.message]}) from error
        name = slot_names.get(slot_id, "")
        return StatsView(
            title=f"Jobs per {PERIOD_WORDS[found.group_by]} of {slot_id} · {name}",
            group_by=found.group_by,
            start=found.start,
            end=found.end,
            last_reset_at=found.last_reset_at,
            periods=found.periods,
            totals=found.totals,
            omitted=0,
        )
    found_global = stats.global_stats(
        group_by=group_by,
        start=start_at,
        end=end_at,
        provider_id=query.get("provider"),
        slot_id=query.get("slot"),
        page_size=stats.GLOBAL_MAX_PAGE_SIZE,
    )
    scope_words = ["all slots"]
    if query.get("slot"):
        scope_words = [f"{query['slot']} · {slot_names.get(query['slot'], '')}"]
    if query.get("provider"):
        scope_words.append(f"provider {query['provider']}")
    return StatsView(
        title=f"Jobs per {PERIOD_WORDS[found_global.group_by]}, {', '.join(scope_words)}",
        group_by=found_global.group_by,
        start=found_global.start,
        end=found_global.end,
        last_reset_at=None,
        periods=found_global.periods,
        totals=found_global.totals,
        omitted=found_global.count - len(found_global.periods),
    )


def _read_failures(
    values: Mapping[str, str], *, slot_id: str | None, provider_id: str | None
) -> failures.RecentFailures:
    hours = failures.parse_hours(values.get("hours", str(failures.DEFAULT_HOURS)))
    return failures.recent_failures(hours=hours, slot_id=slot_id, provider_id=provider_id)


@require_safe
@requires_scope("stats:read")
def stats_page(request: HttpRequest) -> HttpResponse:
    """Counts per period as a chart and a table, with the filters of the statistics API, and
    the recent failures with their provider codes."""
    values = _filled(request.GET, STATS_PARAMETERS)
    slot_names = _slot_names()
    errors: dict[str, list[str]] = {}
    context: dict[str, Any] = {
        "nav": "stats",
        "values": values,
        "scope": values.get("scope", GLOBAL),
        "group_by": values.get("group_by", stats.DEFAULT_GROUPING),
        "hours": values.get("hours", str(failures.DEFAULT_HOURS)),
        "slots": list(slot_names.items()),
        "providers": _provider_choices(),
        "groupings": list(GROUPING_LABELS.items()),
        "windows": failures.WINDOW_HOURS,
        "slot_max_days": stats.SLOT_MAX_RANGE.days,
        "global_max_days": stats.GLOBAL_MAX_RANGE.days,
        "error": "",
        "failures_error": "",
    }
    status = 200
    try:
        view = _read_stats(values, slot_names)
    except BadRequest as error:
        errors.update(_messages(error))
        context["error"] = error.message
        status = 400
    else:
        context.update(
            view=view,
            chart=outcome_chart(
                chart_id="stats-chart",
                title=view.title,
                periods=view.periods,
                group_by=view.group_by,
            ),
            rows=_period_rows(view.periods, view.group_by),
            total_row=PeriodRow(
                label="Total",
                counts=view.totals,
                unfinished=_unfinished(view.totals),
                success_rate=_success_rate(view.totals),
            ),
            show_unfinished=_unfinished(view.totals) > 0,
        )

    # The failures follow the slot (and provider) chosen above, when they are valid.
    slot_id = values.get("slot") if "slot" not in errors else None
    provider_id = None
    if context["scope"] == GLOBAL and "provider" not in errors:
        provider_id = values.get("provider")
    try:
        recent = _read_failures(values, slot_id=slot_id, provider_id=provider_id)
    except BadRequest as error:
        errors.update(_messages(error))
        context["failures_error"] = error.message
        status = 400
    else:
        context.update(
            recent=recent,
            recent_reasons=[
                (reason, failures.reason_label(reason), count)
                for reason, count in recent.by_reason.items()
            ],
            failed_jobs_address=_address(
                {
                    "status": job_queries.FAILED,
                    # The jobs form's own format (local time, to the minute), so it shows.
                    "created_after": timezone.localtime(recent.since).strftime("%Y-%m-%dT%H:%M"),
                    **({"slot": slot_id} if slot_id else {}),
                    **({"provider": provider_id} if provider_id else {}),
                }
            ),
        )
    context["errors"] = errors
    return _no_store(render(request, "adminui/stats.html", context, status=status))


urlpatterns = [
    path("dashboard/jobs", jobs_page, name="dashboard-jobs"),
    path("dashboard/jobs/<uuid:job_id>", job_detail_page, name="dashboard-job"),
    path("dashboard/stats", stats_page, name="dashboard-stats"),
]
