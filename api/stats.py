"""GET /api/stats/global and GET /api/stats/<slot_id>: job counts per period (stats:read).

The queries live in jobqueue.stats; these views read the query string and answer in JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS, errors, valid_query
from jobqueue import stats

_COUNT_HELP = {
    "success": "Jobs that finished with a result.",
    "timeouts": "Jobs that failed because their deadline passed.",
    "provider_errors": "Jobs the AI provider failed or refused.",
    "cancelled": "Jobs cancelled before they finished.",
    "errors": "Jobs that failed on an internal error of the server.",
    "ingest_count": "Every job created (photos received), whatever its outcome or state; jobs "
    "still waiting or running count only here.",
}

_PERIODS_UTC = (
    "Periods are UTC: hours, days from 00:00, ISO weeks from Monday 00:00, calendar months. "
    "A job counts in the period it was created in, whatever its outcome. Every period of the "
    "range is listed, with zero counts where nothing happened; the first may start before "
    "`from` and the last may end after `to` (only jobs inside the range count)."
)


def _range_fields() -> dict[str, Any]:
    return {
        "from": serializers.DateTimeField(help_text="Start of the range (inclusive), UTC."),
        "to": serializers.DateTimeField(help_text="End of the range (exclusive), UTC."),
    }


class StatsTotalsSerializer(serializers.Serializer[Any]):
    """Counts of jobs created in a period or a whole range."""

    success = serializers.IntegerField(min_value=0, help_text=_COUNT_HELP["success"])
    timeouts = serializers.IntegerField(min_value=0, help_text=_COUNT_HELP["timeouts"])
    provider_errors = serializers.IntegerField(
        min_value=0, help_text=_COUNT_HELP["provider_errors"]
    )
    cancelled = serializers.IntegerField(min_value=0, help_text=_COUNT_HELP["cancelled"])
    errors = serializers.IntegerField(min_value=0, help_text=_COUNT_HELP["errors"])
    ingest_count = serializers.IntegerField(min_value=0, help_text=_COUNT_HELP["ingest_count"])


class StatsPeriodSerializer(StatsTotalsSerializer):
    """One period's counts."""

    start = serializers.DateTimeField(
        help_text="Start of the period, UTC (the hour; the day at 00:00; Monday 00:00 for a "
        "week; the 1st at 00:00 for a month)."
    )


SLOT_STATS = inline_serializer(
    name="SlotStats",
    fields={
        "slot_id": serializers.CharField(),
        "group_by": serializers.ChoiceField(
            choices=stats.SLOT_GROUPINGS, help_text="The period length used."
        ),
        **_range_fields(),
        "last_reset_at": serializers.DateTimeField(
            allow_null=True,
            help_text="When the slot's statistics were last reset (null: never). Jobs created "
            "before it are not counted.",
        ),
        "periods": StatsPeriodSerializer(
            many=True, help_text="Every period of the range, oldest first, zeros included."
        ),
        "totals": StatsTotalsSerializer(help_text="The whole range."),
    },
)

GLOBAL_STATS = inline_serializer(
    name="GlobalStats",
    fields={
        "group_by": serializers.ChoiceField(
            choices=stats.GLOBAL_GROUPINGS, help_text="The period length used."
        ),
        **_range_fields(),
        "count": serializers.IntegerField(min_value=0, help_text="Periods on all pages."),
        "page": serializers.IntegerField(min_value=1, max_value=stats.GLOBAL_MAX_PAGE),
        "page_size": serializers.IntegerField(min_value=1, max_value=stats.GLOBAL_MAX_PAGE_SIZE),
        "periods": StatsPeriodSerializer(
            many=True,
            help_text="This page's periods, oldest first, zeros included; empty past the last "
            "page.",
        ),
        "totals": StatsTotalsSerializer(help_text="The whole range."),
    },
)


def _range_parameters(default_days: int, max_days: int) -> list[OpenApiParameter]:
    bound = (
        "ISO 8601 date (2025-03-01) or date-time (2025-03-01T12:00:00Z; without an offset it "
        "is UTC)."
    )
    return [
        OpenApiParameter(
            "from",
            OpenApiTypes.STR,
            description=f"Start of the range, inclusive. {bound} A date means 00:00 UTC that "
            f"day. Default: {default_days} days before `to`.",
        ),
        OpenApiParameter(
            "to",
            OpenApiTypes.STR,
            description=f"End of the range, exclusive. {bound} A date means the end of that day "
            f"(00:00 UTC the next day). Default: now. The range must be at most {max_days} days "
            "and `from` earlier than `to` (else 400 `invalid_range`).",
        ),
    ]


def _group_by_parameter(values: tuple[str, ...]) -> OpenApiParameter:
    return OpenApiParameter(
        "group_by",
        OpenApiTypes.STR,
        enum=list(values),
        default=stats.DEFAULT_GROUPING,
        description="Period length (UTC). Anything else is a 400 `invalid_group_by`.",
    )


class GlobalQuery(serializers.Serializer[Any]):
    """The query parameters of GET /api/stats/global besides the range and grouping."""

    provider = serializers.CharField(max_length=64, required=False)
    slot = serializers.CharField(max_length=32, required=False)
    page = serializers.IntegerField(min_value=1, max_value=stats.GLOBAL_MAX_PAGE, default=1)
    page_size = serializers.IntegerField(
        min_value=1,
        max_value=stats.GLOBAL_MAX_PAGE_SIZE,
        default=stats.GLOBAL_DEFAULT_PAGE_SIZE,
    )


def _query(request: Request) -> dict[str, str]:
    """The query string as a plain dict; an empty value counts as leaving the parameter out."""
    return {key: value for key, value in request.query_params.items() if value != ""}


def _bounds(query: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    start = query.get("from")
    end = query.get("to")
    return (
        None if start is None else stats.parse_bound(start, name="from", is_end=False),
        None if end is None else stats.parse_bound(end, name="to", is_end=True),
    )


class SlotStatsView(APIView):
    required_scopes = {"GET": "stats:read"}

    @extend_schema(
        operation_id="stats_slot",
        parameters=[
            OpenApiParameter(
                "slot_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="slot-001…015"
            ),
            _group_by_parameter(stats.SLOT_GROUPINGS),
            *_range_parameters(stats.SLOT_DEFAULT_RANGE.days, stats.SLOT_MAX_RANGE.days),
        ],
        responses={200: SLOT_STATS, **AUTHENTICATED_ERRORS, **errors(400, 404)},
        tags=["stats"],
        description="One slot's job counts per hour, day or week over a range of at most 31 "
        "days (default: the last 7 days). Only jobs created at or after the slot's "
        f"`last_reset_at` count. {_PERIODS_UTC} 400 `invalid_range` / `invalid_group_by` for "
        "a bad range or grouping, 404 for an unknown slot.",
    )
    def get(self, request: Request, slot_id: str) -> Response:
        query = _query(request)
        start, end = _bounds(query)
        result = stats.slot_stats(
            slot_id, group_by=query.get("group_by", stats.DEFAULT_GROUPING), start=start, end=end
        )
        return Response(stats.slot_stats_json(result))


class GlobalStatsView(APIView):
    required_scopes = {"GET": "stats:read"}

    @extend_schema(
        operation_id="stats_global",
        parameters=[
            _group_by_parameter(stats.GLOBAL_GROUPINGS),
            *_range_parameters(stats.GLOBAL_DEFAULT_RANGE.days, stats.GLOBAL_MAX_RANGE.days),
            GlobalQuery,
        ],
        responses={200: GLOBAL_STATS, **AUTHENTICATED_ERRORS, **errors(400)},
        tags=["stats"],
        description="Job counts over all slots per day, week or month over a range of at most "
        "90 days (default: the last 30 days), optionally for one provider (the provider a job "
        "was created with) or one slot; unknown values simply match no jobs. Slot resets are "
        "ignored here: a reset clears a slot's own statistics, not the installation's history. "
        f"{_PERIODS_UTC} Periods are paginated, oldest first; `totals` covers the whole range. "
        "400 `invalid_range` / `invalid_group_by` / `invalid_parameter` for bad parameters.",
    )
    def get(self, request: Request) -> Response:
        query = _query(request)
        values = valid_query(GlobalQuery(data=query))
        start, end = _bounds(query)
        result = stats.global_stats(
            group_by=query.get("group_by", stats.DEFAULT_GROUPING),
            start=start,
            end=end,
            provider_id=values.get("provider"),
            slot_id=values.get("slot"),
            page=values["page"],
            page_size=values["page_size"],
        )
        return Response(stats.global_stats_json(result))


# `stats/global` comes first: it must never be read as a slot id.
urlpatterns = [
    path("stats/global", GlobalStatsView.as_view(), name="api-stats-global"),
    path("stats/<str:slot_id>", SlotStatsView.as_view(), name="api-stats-slot"),
]
