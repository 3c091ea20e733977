"""GET /api/stats/<slot_id> and GET /api/stats/global: exact counts per period, gaps filled,
resets, filters, pagination, range and grouping errors, query count, permissions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.models import Slot
from jobqueue import stats
from jobqueue.models import FailureReason, Job, JobStatus
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db

COUNT_KEYS = {"success", "timeouts", "provider_errors", "cancelled", "errors", "ingest_count"}
SLOT_KEYS = {"slot_id", "group_by", "from", "to", "last_reset_at", "periods", "totals"}
GLOBAL_KEYS = {"group_by", "from", "to", "count", "page", "page_size", "periods", "totals"}
OUTCOMES = ("success", *FailureReason.values, "pending", "processing")
FIELD_OF = {
    "success": "success",
    FailureReason.TIMEOUT: "timeouts",
    FailureReason.PROVIDER_ERROR: "provider_errors",
    FailureReason.CANCELLED: "cancelled",
    FailureReason.INTERNAL_ERROR: "errors",
}


def utc(text: str) -> datetime:
    """'2025-03-01T10:00' -> that instant in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def job(
    created_at: datetime | str,
    outcome: str = "success",
    *,
    slot: str = "slot-001",
    provider: str = "local",
) -> Job:
    """An unsaved Job row created at `created_at` with this outcome (success, a failure
    reason, pending or processing)."""
    created = utc(created_at) if isinstance(created_at, str) else created_at
    assert outcome in OUTCOMES, outcome
    values: dict[str, Any] = {
        "slot_id": slot,
        "provider_id": provider,
        "operation_id": "photo_look",
        "created_at": created,
        "expires_at": created + timedelta(seconds=48),
        "payload_mime": "image/jpeg",
        "payload_size": 1000,
        "payload_sha256": "0" * 64,
        "payload_expires_at": created + timedelta(seconds=48),
        "result_retention_seconds": 3600,
    }
    if outcome != "pending":
        values.update(status=JobStatus.PROCESSING, started_at=created + timedelta(seconds=1))
    if outcome not in ("pending", "processing"):
        values.update(is_finalized=True, finalized_at=created + timedelta(seconds=5))
    if outcome in FailureReason.values:
        values["failure_reason"] = outcome
    return Job(**values)


def add_jobs(*rows: Job) -> None:
    Job.objects.bulk_create(rows)


def counts(**nonzero: int) -> dict[str, int]:
    """A counts object: every count 0 except those named."""
    assert set(nonzero) <= COUNT_KEYS, nonzero
    return {key: nonzero.get(key, 0) for key in COUNT_KEYS}


def period(start: str, **nonzero: int) -> dict[str, Any]:
    return {"start": start, **counts(**nonzero)}


def ok(response: Any, keys: set[str]) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.content[:500])
    body: dict[str, Any] = response.json()
    assert set(body) == keys, body.keys()
    assert set(body["totals"]) == COUNT_KEYS, body["totals"]
    for entry in body["periods"]:
        assert set(entry) == {"start", *COUNT_KEYS}, entry
    return body


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Logins are not what these tests are about: skip the deliberately slow hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def stats_api(api_client_with: Callable[..., APIClient]) -> APIClient:
    return api_client_with("stats:read")


def march_week() -> None:
    """Jobs of slot-001 on 1–5 March 2025 (none on the 3rd), and others that must not count."""
    add_jobs(
        job("2025-03-01T00:00", "success"),  # the first instant of the range counts
        job("2025-03-01T09:15", "success"),
        job("2025-03-01T09:45", FailureReason.TIMEOUT),
        job("2025-03-01T23:59:59", FailureReason.PROVIDER_ERROR),
        job("2025-03-02T10:00", FailureReason.CANCELLED),
        job("2025-03-02T11:00", FailureReason.INTERNAL_ERROR),
        job("2025-03-02T12:00", "pending"),
        job("2025-03-02T12:30", "processing"),
        job("2025-03-04T08:00", "success"),
        job("2025-03-04T08:01", "success"),
        job("2025-03-05T23:59:59.999999", FailureReason.TIMEOUT),
        # Outside the range or of another slot: never counted.
        job("2025-02-28T23:59:59.999999", "success"),
        job("2025-03-06T00:00", "success"),
        job("2025-03-02T10:00", "success", slot="slot-002"),
    )


# --- GET /api/stats/<slot_id> ----------------------------------------------------------------


def test_slot_stats_by_day_count_each_outcome_and_list_empty_days(stats_api: APIClient) -> None:
    march_week()
    body = ok(
        stats_api.get("/api/stats/slot-001", {"from": "2025-03-01", "to": "2025-03-05"}),
        SLOT_KEYS,
    )
    assert body == {
        "slot_id": "slot-001",
        "group_by": "day",
        "from": "2025-03-01T00:00:00Z",
        "to": "2025-03-06T00:00:00Z",  # a date as `to` includes that whole day
        "last_reset_at": None,
        "periods": [
            period(
                "2025-03-01T00:00:00Z", success=2, timeouts=1, provider_errors=1, ingest_count=4
            ),
            period("2025-03-02T00:00:00Z", cancelled=1, errors=1, ingest_count=4),
            period("2025-03-03T00:00:00Z"),
            period("2025-03-04T00:00:00Z", success=2, ingest_count=2),
            period("2025-03-05T00:00:00Z", timeouts=1, ingest_count=1),
        ],
        "totals": counts(
            success=4, timeouts=2, provider_errors=1, cancelled=1, errors=1, ingest_count=11
        ),
    }


def test_slot_stats_by_hour_list_every_hour_of_the_range(stats_api: APIClient) -> None:
    march_week()
    body = ok(
        stats_api.get(
            "/api/stats/slot-001",
            {"group_by": "hour", "from": "2025-03-01T08:30:00Z", "to": "2025-03-02T11:00:00Z"},
        ),
        SLOT_KEYS,
    )
    starts = [entry["start"] for entry in body["periods"]]
    # The first hour starts before `from`; `to` is exclusive: 08:00 on the 1st … 10:00 on the 2nd.
    assert len(starts) == 27
    assert starts[0] == "2025-03-01T08:00:00Z" and starts[-1] == "2025-03-02T10:00:00Z"
    by_start = {entry["start"]: entry for entry in body["periods"]}
    assert by_start["2025-03-01T09:00:00Z"] == period(
        "2025-03-01T09:00:00Z", success=1, timeouts=1, ingest_count=2
    )
    assert by_start["2025-03-01T23:00:00Z"] == period(
        "2025-03-01T23:00:00Z", provider_errors=1, ingest_count=1
    )
    assert by_start["2025-03-02T10:00:00Z"] == period(
        "2025-03-02T10:00:00Z", cancelled=1, ingest_count=1
    )
    # 00:00 on the 1st is before `from`; 11:00 on the 2nd is at `to`: neither counts.
    assert body["totals"] == counts(
        success=1, timeouts=1, provider_errors=1, cancelled=1, ingest_count=4
    )


def test_slot_stats_by_week_start_on_monday_utc(stats_api: APIClient) -> None:
    # 2025-03-03 and 2025-03-10 are Mondays.
    add_jobs(
        job("2025-03-02T23:59", "success"),  # Sunday: week of 24 February
        job("2025-03-03T00:00", "success"),
        job("2025-03-09T23:59", FailureReason.TIMEOUT),
        job("2025-03-10T00:00", FailureReason.CANCELLED),
    )
    body = ok(
        stats_api.get(
            "/api/stats/slot-001", {"group_by": "week", "from": "2025-03-01", "to": "2025-03-16"}
        ),
        SLOT_KEYS,
    )
    assert body["periods"] == [
        period("2025-02-24T00:00:00Z", success=1, ingest_count=1),
        period("2025-03-03T00:00:00Z", success=1, timeouts=1, ingest_count=2),
        period("2025-03-10T00:00:00Z", cancelled=1, ingest_count=1),
    ]


def test_periods_are_utc_whatever_the_server_time_zone(stats_api: APIClient, settings: Any) -> None:
    settings.TIME_ZONE = "Pacific/Auckland"  # 13 hours ahead of UTC in March
    add_jobs(job("2025-03-01T23:30", "success"), job("2025-03-02T00:30", "success"))
    body = ok(
        stats_api.get(
            "/api/stats/slot-001", {"from": "2025-03-01T12:00:00+13:00", "to": "2025-03-02"}
        ),
        SLOT_KEYS,
    )
    assert body["from"] == "2025-02-28T23:00:00Z"
    assert body["periods"] == [
        period("2025-02-28T00:00:00Z"),
        period("2025-03-01T00:00:00Z", success=1, ingest_count=1),
        period("2025-03-02T00:00:00Z", success=1, ingest_count=1),
    ]


def test_slot_stats_count_only_jobs_since_the_last_reset(stats_api: APIClient) -> None:
    march_week()
    Slot.objects.filter(id="slot-001").update(last_reset_at=utc("2025-03-02T11:00"))
    body = ok(
        stats_api.get("/api/stats/slot-001", {"from": "2025-03-01", "to": "2025-03-05"}),
        SLOT_KEYS,
    )
    assert body["last_reset_at"] == "2025-03-02T11:00:00Z"
    assert body["periods"] == [
        period("2025-03-01T00:00:00Z"),  # still listed, so the chart keeps its days
        # The job created exactly at the reset counts; the cancelled one at 10:00 does not.
        period("2025-03-02T00:00:00Z", errors=1, ingest_count=3),
        period("2025-03-03T00:00:00Z"),
        period("2025-03-04T00:00:00Z", success=2, ingest_count=2),
        period("2025-03-05T00:00:00Z", timeouts=1, ingest_count=1),
    ]
    assert body["totals"] == counts(success=2, timeouts=1, errors=1, ingest_count=6)


def test_slot_stats_after_a_reset_later_than_the_range_are_all_zero(
    stats_api: APIClient,
) -> None:
    march_week()
    Slot.objects.filter(id="slot-001").update(last_reset_at=utc("2025-04-01T00:00"))
    body = ok(
        stats_api.get("/api/stats/slot-001", {"from": "2025-03-01", "to": "2025-03-05"}),
        SLOT_KEYS,
    )
    assert len(body["periods"]) == 5
    assert body["totals"] == counts()


def test_slot_stats_default_to_the_last_seven_days_by_day(stats_api: APIClient) -> None:
    now = timezone.now()
    add_jobs(
        job(now - timedelta(minutes=1), "success"),
        job(now - timedelta(days=6, hours=23), FailureReason.TIMEOUT),
        job(now - timedelta(days=7, minutes=1), "success"),  # just before the default range
    )
    before = timezone.now()
    body = ok(stats_api.get("/api/stats/slot-001"), SLOT_KEYS)
    end = datetime.fromisoformat(body["to"])
    start = datetime.fromisoformat(body["from"])
    assert before <= end <= timezone.now()
    assert end - start == timedelta(days=7)
    assert body["group_by"] == "day"
    assert [entry["start"] for entry in body["periods"]] == [
        stats.utc_text(moment) for moment in stats.period_starts(start, end, "day")
    ]
    assert body["totals"] == counts(success=1, timeouts=1, ingest_count=2)


def test_only_from_given_reaches_up_to_now(stats_api: APIClient) -> None:
    start = timezone.now() - timedelta(days=2)
    body = ok(stats_api.get("/api/stats/slot-001", {"from": stats.utc_text(start)}), SLOT_KEYS)
    assert datetime.fromisoformat(body["from"]) == start
    assert timezone.now() - datetime.fromisoformat(body["to"]) < timedelta(minutes=1)


def test_a_range_of_exactly_31_days_is_accepted(stats_api: APIClient) -> None:
    body = ok(
        stats_api.get("/api/stats/slot-001", {"from": "2025-03-01", "to": "2025-03-31"}),
        SLOT_KEYS,
    )
    assert len(body["periods"]) == 31


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2025-03-01", "to": "2025-04-01"}, "to"),  # 32 days
        ({"from": "2025-03-01T00:00:00Z", "to": "2025-04-01T00:00:01Z"}, "to"),
        ({"from": "2025-03-05T00:00:00Z", "to": "2025-03-05T00:00:00Z"}, "to"),  # empty
        ({"from": "2025-03-06", "to": "2025-03-05"}, "to"),  # backwards
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-01"}, "to"),
        ({"from": "2025-03-01T25:00"}, "from"),
        ({"to": "9999-12-31"}, "to"),  # the day after does not exist
        ({"from": "0001-01-01", "to": "0001-01-02"}, "to"),  # outside the supported years
        ({"from": "2000-01-01"}, "to"),  # up to now: far more than 31 days
    ],
)
def test_slot_stats_refuse_a_bad_range_with_400(
    stats_api: APIClient, params: dict[str, str], field: str
) -> None:
    error = assert_error(stats_api.get("/api/stats/slot-001", params), 400, "invalid_range")
    assert set(error["details"]) == {field}, error


@pytest.mark.parametrize("group_by", ["month", "minute", "DAY", "x" * 200])
def test_slot_stats_refuse_an_unknown_grouping_with_400(
    stats_api: APIClient, group_by: str
) -> None:
    error = assert_error(
        stats_api.get("/api/stats/slot-001", {"group_by": group_by}), 400, "invalid_group_by"
    )
    assert set(error["details"]) == {"group_by"}


@pytest.mark.parametrize("slot_id", ["slot-999", "slot-0001", "x" * 200, "slot-001%00"])
def test_an_unknown_slot_is_404(stats_api: APIClient, slot_id: str) -> None:
    assert_error(stats_api.get(f"/api/stats/{slot_id}"), 404, "slot_not_found")


def test_empty_parameters_count_as_left_out(stats_api: APIClient) -> None:
    body = ok(
        stats_api.get("/api/stats/slot-001", {"group_by": "", "from": "", "to": ""}), SLOT_KEYS
    )
    assert body["group_by"] == "day"


# --- GET /api/stats/global -------------------------------------------------------------------


def mixed_history() -> None:
    """Jobs of several slots and providers over three weeks of March 2025."""
    add_jobs(
        job("2025-03-01T10:00", "success", slot="slot-001", provider="local"),
        job("2025-03-01T11:00", FailureReason.TIMEOUT, slot="slot-002", provider="gemini"),
        job("2025-03-02T10:00", FailureReason.PROVIDER_ERROR, slot="slot-002", provider="gemini"),
        job("2025-03-04T10:00", "success", slot="slot-003", provider="openai"),
        job("2025-03-04T12:00", FailureReason.CANCELLED, slot="slot-001", provider="local"),
        job("2025-03-10T10:00", FailureReason.INTERNAL_ERROR, slot="slot-002", provider="gemini"),
        job("2025-03-10T11:00", "pending", slot="slot-001", provider="local"),
        job("2025-03-20T10:00", "success", slot="slot-002", provider="gemini"),
        job("2025-04-01T00:00", "success", slot="slot-001", provider="local"),  # after `to`
    )


def test_global_stats_by_week_over_all_slots(stats_api: APIClient) -> None:
    mixed_history()
    body = ok(
        stats_api.get(
            "/api/stats/global", {"group_by": "week", "from": "2025-03-01", "to": "2025-03-31"}
        ),
        GLOBAL_KEYS,
    )
    assert body == {
        "group_by": "week",
        "from": "2025-03-01T00:00:00Z",
        "to": "2025-04-01T00:00:00Z",
        "count": 6,
        "page": 1,
        "page_size": 31,
        "periods": [
            period(
                "2025-02-24T00:00:00Z", success=1, timeouts=1, provider_errors=1, ingest_count=3
            ),
            period("2025-03-03T00:00:00Z", success=1, cancelled=1, ingest_count=2),
            period("2025-03-10T00:00:00Z", errors=1, ingest_count=2),
            period("2025-03-17T00:00:00Z", success=1, ingest_count=1),
            period("2025-03-24T00:00:00Z"),
            period("2025-03-31T00:00:00Z"),
        ],
        "totals": counts(
            success=3, timeouts=1, provider_errors=1, cancelled=1, errors=1, ingest_count=8
        ),
    }


def test_global_stats_by_month_cross_the_new_year(stats_api: APIClient) -> None:
    add_jobs(
        job("2024-11-20T10:00", "success", slot="slot-004"),
        job("2024-12-31T23:59:59", FailureReason.TIMEOUT, slot="slot-005"),
        job("2025-01-01T00:00", "success", slot="slot-004"),
    )
    body = ok(
        stats_api.get(
            "/api/stats/global",
            {"group_by": "month", "from": "2024-11-15", "to": "2025-01-31"},
        ),
        GLOBAL_KEYS,
    )
    assert body["periods"] == [
        period("2024-11-01T00:00:00Z", success=1, ingest_count=1),
        period("2024-12-01T00:00:00Z", timeouts=1, ingest_count=1),
        period("2025-01-01T00:00:00Z", success=1, ingest_count=1),
    ]


def test_global_stats_filter_by_provider_and_slot(stats_api: APIClient) -> None:
    mixed_history()
    week = {"group_by": "week", "from": "2025-03-01", "to": "2025-03-31"}
    gemini = ok(stats_api.get("/api/stats/global", {**week, "provider": "gemini"}), GLOBAL_KEYS)
    assert gemini["totals"] == counts(
        success=1, timeouts=1, provider_errors=1, errors=1, ingest_count=4
    )
    assert gemini["count"] == 6  # the filters never remove periods
    slot_one = ok(stats_api.get("/api/stats/global", {**week, "slot": "slot-001"}), GLOBAL_KEYS)
    assert slot_one["totals"] == counts(success=1, cancelled=1, ingest_count=3)
    both = ok(
        stats_api.get("/api/stats/global", {**week, "slot": "slot-001", "provider": "gemini"}),
        GLOBAL_KEYS,
    )
    assert both["totals"] == counts()
    unknown = ok(stats_api.get("/api/stats/global", {**week, "provider": "nope"}), GLOBAL_KEYS)
    assert unknown["totals"] == counts() and len(unknown["periods"]) == 6


def test_global_stats_paginate_periods_and_total_the_whole_range(stats_api: APIClient) -> None:
    mixed_history()
    days = {"from": "2025-03-01", "to": "2025-03-10"}  # 10 days
    second = ok(
        stats_api.get("/api/stats/global", {**days, "page": 2, "page_size": 4}), GLOBAL_KEYS
    )
    assert (second["count"], second["page"], second["page_size"]) == (10, 2, 4)
    assert second["periods"] == [
        period("2025-03-05T00:00:00Z"),
        period("2025-03-06T00:00:00Z"),
        period("2025-03-07T00:00:00Z"),
        period("2025-03-08T00:00:00Z"),
    ]
    assert second["totals"] == counts(
        success=2, timeouts=1, provider_errors=1, cancelled=1, errors=1, ingest_count=7
    )
    last = ok(stats_api.get("/api/stats/global", {**days, "page": 3, "page_size": 4}), GLOBAL_KEYS)
    assert [entry["start"] for entry in last["periods"]] == [
        "2025-03-09T00:00:00Z",
        "2025-03-10T00:00:00Z",
    ]
    assert last["periods"][1] == period("2025-03-10T00:00:00Z", errors=1, ingest_count=2)
    past = ok(stats_api.get("/api/stats/global", {**days, "page": 4, "page_size": 4}), GLOBAL_KEYS)
    assert past["periods"] == [] and past["count"] == 10 and past["totals"] == last["totals"]


def test_global_stats_ignore_slot_resets(stats_api: APIClient) -> None:
    mixed_history()
    Slot.objects.update(last_reset_at=utc("2025-03-15T00:00"))
    body = ok(
        stats_api.get("/api/stats/global", {"from": "2025-03-01", "to": "2025-03-31"}),
        GLOBAL_KEYS,
    )
    assert body["totals"]["ingest_count"] == 8


def test_global_stats_default_to_the_last_30_days_by_day(stats_api: APIClient) -> None:
    add_jobs(job(timezone.now() - timedelta(hours=1), "success", slot="slot-009"))
    body = ok(stats_api.get("/api/stats/global"), GLOBAL_KEYS)
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=30)
    assert body["group_by"] == "day" and body["page"] == 1 and body["page_size"] == 31
    assert body["count"] in (30, 31)  # 31 unless `to` is exactly midnight
    assert body["totals"] == counts(success=1, ingest_count=1)


def test_global_stats_accept_90_days_and_refuse_more(stats_api: APIClient) -> None:
    ok(stats_api.get("/api/stats/global", {"from": "2025-01-01", "to": "2025-03-31"}), GLOBAL_KEYS)
    error = assert_error(
        stats_api.get("/api/stats/global", {"from": "2025-01-01", "to": "2025-04-01"}),
        400,
        "invalid_range",
    )
    assert set(error["details"]) == {"to"}
    assert_error(
        stats_api.get("/api/stats/global", {"from": "2025-03-02", "to": "2025-03-01"}),
        400,
        "invalid_range",
    )


@pytest.mark.parametrize("group_by", ["hour", "year", "Week"])
def test_global_stats_refuse_an_unknown_grouping_with_400(
    stats_api: APIClient, group_by: str
) -> None:
    assert_error(
        stats_api.get("/api/stats/global", {"group_by": group_by}), 400, "invalid_group_by"
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "101"}, "page_size"),
        ({"provider": "p" * 65}, "provider"),
        ({"slot": "   "}, "slot"),
        ({"slot": "slot\x00"}, "slot"),
    ],
)
def test_global_stats_refuse_bad_parameters_with_400(
    stats_api: APIClient, params: dict[str, str], field: str
) -> None:
    error = assert_error(stats_api.get("/api/stats/global", params), 400, "invalid_parameter")
    assert set(error["details"]) == {field}, error


# --- Both ----------------------------------------------------------------------------------------


def test_the_database_does_the_counting_in_a_constant_number_of_queries(
    stats_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    stats_api.get("/api/stats/global")  # warm-up: anything done once per process
    base = utc("2025-03-01T00:00")
    query_counts: list[int] = []
    for total in (3, 300):
        Job.objects.all().delete()
        add_jobs(
            *(
                job(base + timedelta(minutes=97 * n), OUTCOMES[n % len(OUTCOMES)])
                for n in range(total)
            )
        )  # 300 jobs span about 20 days
        # 1 query authenticates the token; the slot view reads the slot, then one aggregate.
        with django_assert_max_num_queries(3):
            one = ok(
                stats_api.get("/api/stats/slot-001", {"from": "2025-03-01", "to": "2025-03-21"}),
                SLOT_KEYS,
            )
        with django_assert_max_num_queries(2):
            every = ok(
                stats_api.get("/api/stats/global", {"from": "2025-03-01", "to": "2025-03-31"}),
                GLOBAL_KEYS,
            )
        assert one["totals"]["ingest_count"] == every["totals"]["ingest_count"] == total
        with CaptureQueriesContext(connection) as queries:
            hourly = stats_api.get(
                "/api/stats/slot-001",
                {"group_by": "hour", "from": "2025-03-01", "to": "2025-03-21"},
            )
        assert ok(hourly, SLOT_KEYS)["totals"]["ingest_count"] == total
        query_counts.append(len(queries))
    assert query_counts[0] == query_counts[1] <= 3


def test_slot_and_global_agree_on_each_count(stats_api: APIClient) -> None:
    """Every outcome lands in exactly one count; the slot view and the global one agree."""
    base = utc("2025-03-10T00:00")
    add_jobs(*(job(base + timedelta(hours=n), OUTCOMES[n % len(OUTCOMES)]) for n in range(70)))
    params = {"from": "2025-03-10", "to": "2025-03-12"}
    one = ok(stats_api.get("/api/stats/slot-001", params), SLOT_KEYS)["totals"]
    every = ok(stats_api.get("/api/stats/global", params), GLOBAL_KEYS)["totals"]
    assert one == every
    expected = {key: 0 for key in COUNT_KEYS}
    for n in range(70):
        expected["ingest_count"] += 1
        outcome = OUTCOMES[n % len(OUTCOMES)]
        if outcome in FIELD_OF:
            expected[FIELD_OF[outcome]] += 1
    assert one == expected


def test_global_is_never_read_as_a_slot_id(stats_api: APIClient) -> None:
    body = ok(stats_api.get("/api/stats/global"), GLOBAL_KEYS)
    assert "slot_id" not in body


@pytest.mark.parametrize("path", ["/api/stats/global", "/api/stats/slot-001"])
def test_permissions_no_token_401_without_stats_read_403_with_it_200(
    path: str, anonymous_api: APIClient, api_client_with: Callable[..., APIClient]
) -> None:
    assert_error(anonymous_api.get(path), 401, "not_authenticated")
    others = api_client_with("slots:read", "slots:write", "settings:read", "settings:write")
    assert_error(others.get(path), 403, "forbidden")
    assert api_client_with("media:write").get(path).status_code == 403
    assert api_client_with("stats:read").get(path).status_code == 200


@pytest.mark.parametrize("path", ["/api/stats/global", "/api/stats/slot-001"])
def test_only_get_is_allowed(path: str, stats_api: APIClient) -> None:
    assert_error(stats_api.post(path, {}, format="json"), 405, "method_not_allowed")
