"""GET /api/jobs and GET /api/jobs/<id>: filters, sorting, pages, timings, deadline, log, errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobqueue import files, services
from jobqueue.models import FailureReason, Job, JobStatus
from tests.api.conftest import assert_error
from tests.jobqueue.test_queue_services import enqueue

pytestmark = pytest.mark.django_db

BASE_URL = "https://booth.example"
JOB_KEYS = {
    "id",
    "slot_id",
    "provider_id",
    "operation_id",
    "status",
    "is_finalized",
    "failure_reason",
    "failure_detail",
    "created_at",
    "started_at",
    "finalized_at",
    "expires_at",
    "attempt_count",
    "deadline",
    "timings",
    "result",
}


def at(seconds: float) -> datetime:
    """An instant `seconds` after a fixed moment in the past."""
    base = datetime.fromisoformat("2025-03-01T12:00:00+00:00")
    return base + timedelta(seconds=seconds)


def job_row(
    *,
    state: str = "pending",
    created_at: datetime | None = None,
    slot_id: str = "slot-001",
    provider_id: str = "local",
    lifetime: timedelta = timedelta(seconds=48),
    reason: FailureReason | None = None,
    **fields: Any,
) -> Job:
    """A Job row in one of the states a person sees (pending/processing/succeeded/failed)."""
    created_at = created_at or timezone.now()
    values: dict[str, Any] = {
        "slot_id": slot_id,
        "provider_id": provider_id,
        "operation_id": "photo_look",
        "created_at": created_at,
        "expires_at": created_at + lifetime,
        "payload_mime": "image/jpeg",
        "payload_size": 1234,
        "payload_sha256": "0" * 64,
        "payload_expires_at": created_at + lifetime,
        "result_retention_seconds": 3600,
    }
    if state in ("processing", "succeeded", "failed"):
        values.update(status=JobStatus.PROCESSING, started_at=created_at + timedelta(seconds=1.5))
        values["attempt_count"] = 1
    if state in ("succeeded", "failed"):
        values.update(is_finalized=True, finalized_at=created_at + timedelta(seconds=4))
    if state == "failed":
        values.update(failure_reason=reason or FailureReason.PROVIDER_ERROR, failure_detail="boom")
    if state == "succeeded":
        values.update(
            result_path="results/x.jpg",
            result_mime="image/jpeg",
            result_size=4321,
            result_expires_at=values["finalized_at"] + timedelta(hours=1),
        )
    values.update(fields)
    return Job.objects.create(**values)


def get_jobs(client: APIClient, **params: Any) -> Any:
    return client.get("/api/jobs", params)


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [job["id"] for job in response.json()["results"]]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Logins are not what these tests are about: skip the deliberately slow hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def stats_api(api_client_with: Callable[..., APIClient], settings: Any) -> APIClient:
    settings.PUBLIC_BASE_URL = BASE_URL
    return api_client_with("stats:read")


# --- permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/jobs", f"/api/jobs/{uuid.uuid4()}"])
def test_no_token_is_401_and_a_token_without_stats_read_is_403(
    path: str, anonymous_api: APIClient, api_client_with: Callable[..., APIClient]
) -> None:
    assert_error(anonymous_api.get(path), 401, "not_authenticated")
    others = api_client_with("slots:read", "slots:write", "settings:read", "media:write")
    assert_error(others.get(path), 403, "forbidden")


def test_stats_read_is_enough_for_both_endpoints(stats_api: APIClient) -> None:
    job = job_row()

    assert stats_api.get("/api/jobs").status_code == 200
    assert stats_api.get(f"/api/jobs/{job.id}").status_code == 200


# --- shape -------------------------------------------------------------------------------------


def test_a_succeeded_job_in_the_list_has_timings_deadline_and_result(stats_api: APIClient) -> None:
    job = job_row(state="succeeded", created_at=at(0), slot_id="slot-007", provider_id="gemini")

    body = get_jobs(stats_api).json()

    assert set(body) == {"count", "page", "page_size", "results"}
    assert (body["count"], body["page"], body["page_size"]) == (1, 1, 50)
    [item] = body["results"]
    assert set(item) == JOB_KEYS
    assert item == {
        "id": str(job.id),
        "slot_id": "slot-007",
        "provider_id": "gemini",
        "operation_id": "photo_look",
        "status": "succeeded",
        "is_finalized": True,
        "failure_reason": None,
        "failure_detail": "",
        "created_at": "2025-03-01T12:00:00Z",
        "started_at": "2025-03-01T12:00:01.500000Z",
        "finalized_at": "2025-03-01T12:00:04Z",
        "expires_at": "2025-03-01T12:00:48Z",
        "attempt_count": 1,
        "deadline": {"remaining_ms": 0, "is_expired": True},
        "timings": {"queue_wait_ms": 1500, "processing_ms": 2500, "total_elapsed_ms": 4000},
        "result": {
            "download_url": f"{BASE_URL}/public/results/{job.id}",
            "mime": "image/jpeg",
            "size": 4321,
            "expires_at": "2025-03-01T13:00:04Z",
        },
    }


def test_timings_are_null_until_their_instants_are_known(stats_api: APIClient) -> None:
    now = timezone.now()
    pending = job_row(created_at=now - timedelta(seconds=10))
    processing = job_row(state="processing", created_at=now - timedelta(seconds=5))
    # Timed out before any worker took it: it waited in the queue the whole time.
    never_started = job_row(
        created_at=at(0),
        is_finalized=True,
        finalized_at=at(48),
        failure_reason=FailureReason.TIMEOUT,
        failure_detail="deadline reached",
    )
    failed = job_row(state="failed", created_at=at(10), reason=FailureReason.CANCELLED)

    jobs = {job["id"]: job for job in get_jobs(stats_api).json()["results"]}

    assert jobs[str(pending.id)]["status"] == "pending"
    assert jobs[str(pending.id)]["timings"] == {
        "queue_wait_ms": None,
        "processing_ms": None,
        "total_elapsed_ms": None,
    }
    assert jobs[str(processing.id)]["status"] == "processing"
    assert jobs[str(processing.id)]["timings"] == {
        "queue_wait_ms": 1500,
        "processing_ms": None,
        "total_elapsed_ms": None,
    }
    assert jobs[str(never_started.id)]["timings"] == {
        "queue_wait_ms": 48000,
        "processing_ms": None,
        "total_elapsed_ms": 48000,
    }
    assert jobs[str(never_started.id)]["status"] == "failed"
    assert jobs[str(never_started.id)]["failure_reason"] == "timeout"
    assert jobs[str(never_started.id)]["result"] is None
    assert jobs[str(failed.id)]["failure_reason"] == "cancelled"
    assert jobs[str(failed.id)]["failure_detail"] == "boom"
    assert jobs[str(failed.id)]["result"] is None


def test_deadline_counts_down_until_expires_at(stats_api: APIClient) -> None:
    running = job_row(created_at=timezone.now() - timedelta(seconds=8))  # 40 s left
    expired = job_row(created_at=timezone.now() - timedelta(seconds=60))

    jobs = {job["id"]: job for job in get_jobs(stats_api).json()["results"]}

    left = jobs[str(running.id)]["deadline"]
    assert left["is_expired"] is False
    assert 30_000 < left["remaining_ms"] <= 40_000
    assert jobs[str(expired.id)]["deadline"] == {"remaining_ms": 0, "is_expired": True}


def test_a_succeeded_job_whose_result_was_purged_has_no_result(stats_api: APIClient) -> None:
    job_row(state="succeeded", result_path="")

    [item] = get_jobs(stats_api).json()["results"]

    assert item["status"] == "succeeded"
    assert item["result"] is None


def test_detail_is_the_list_object_plus_the_processing_log_oldest_first(
    stats_api: APIClient,
) -> None:
    job = enqueue()
    [taken] = services.acquire_jobs(worker_id="worker-a", limit=1)
    stored = files.store_bytes(kind="results", stem=str(job.id), mime="image/jpeg", data=b"jpeg")
    assert services.finalize_success(
        job=taken, lease_token=taken.lease_token, result=stored, result_mime="image/jpeg"
    )

    response = stats_api.get(f"/api/jobs/{job.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == JOB_KEYS | {"log"}
    [listed] = get_jobs(stats_api).json()["results"]
    assert {key: value for key, value in body.items() if key not in ("log", "deadline")} == {
        key: value for key, value in listed.items() if key != "deadline"
    }
    assert body["status"] == "succeeded"
    assert body["attempt_count"] == 1
    assert body["result"]["size"] == 4
    assert all(isinstance(value, int) for value in body["timings"].values())
    events = [entry["event"] for entry in body["log"]]
    assert events == ["received", "queued", "picked_up", "finalized"]
    for entry in body["log"]:
        assert set(entry) == {"event", "created_at", "details"}
        assert isinstance(entry["details"], dict)
    times = [datetime.fromisoformat(entry["created_at"]) for entry in body["log"]]
    assert times == sorted(times)
    assert body["log"][-1]["details"]["outcome"] == "success"


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
def test_unknown_or_malformed_job_id_is_a_json_404(stats_api: APIClient, job_id: str) -> None:
    job_row()

    assert_error(stats_api.get(f"/api/jobs/{job_id}"), 404, "job_not_found")


# --- filters -----------------------------------------------------------------------------------


@pytest.fixture
def jobs_in_every_state() -> dict[str, Job]:
    now = timezone.now()
    return {
        "pending": job_row(created_at=now - timedelta(seconds=1)),
        "processing": job_row(state="processing", created_at=now - timedelta(seconds=2)),
        "succeeded": job_row(state="succeeded", created_at=now - timedelta(seconds=3)),
        "timeout": job_row(state="failed", reason=FailureReason.TIMEOUT, created_at=at(0)),
        "provider_error": job_row(state="failed", created_at=at(1), slot_id="slot-002"),
        "internal_error": job_row(
            state="failed",
            reason=FailureReason.INTERNAL_ERROR,
            created_at=at(2),
            provider_id="gemini",
        ),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "pending"}, {"pending"}),
        ({"status": "processing"}, {"processing"}),
        ({"status": "succeeded"}, {"succeeded"}),
        ({"status": "failed"}, {"timeout", "provider_error", "internal_error"}),
        ({"is_finalized": "false"}, {"pending", "processing"}),
        ({"is_finalized": "true"}, {"succeeded", "timeout", "provider_error", "internal_error"}),
        ({"failure_reason": "timeout"}, {"timeout"}),
        ({"failure_reason": "cancelled"}, set()),
        ({"slot": "slot-002"}, {"provider_error"}),
        ({"provider": "gemini"}, {"internal_error"}),
        ({"status": "failed", "provider": "local"}, {"timeout", "provider_error"}),
        (
            {"created_after": "2025-03-01T12:00:02Z", "created_before": "2025-03-01T12:00:01Z"},
            set(),
        ),
        ({"created_before": "2025-03-01T12:00:02Z"}, {"timeout", "provider_error"}),
        (  # inclusive: from at(1) on
            {"created_after": "2025-03-01T12:00:01Z"},
            {"pending", "processing", "succeeded", "provider_error", "internal_error"},
        ),
    ],
)
def test_filters(
    stats_api: APIClient,
    jobs_in_every_state: dict[str, Job],
    params: dict[str, str],
    expected: set[str],
) -> None:
    by_id = {str(job.id): name for name, job in jobs_in_every_state.items()}

    response = get_jobs(stats_api, **params)

    assert {by_id[job_id] for job_id in ids(response)} == expected
    assert response.json()["count"] == len(expected)


def test_created_after_and_before_accept_offsets_and_combine(
    stats_api: APIClient, jobs_in_every_state: dict[str, Job]
) -> None:
    response = get_jobs(
        stats_api,
        created_after="2025-03-01T13:00:01+01:00",
        created_before="2025-03-01T12:00:02.000001Z",
    )

    assert ids(response) == [
        str(jobs_in_every_state["internal_error"].id),
        str(jobs_in_every_state["provider_error"].id),
    ]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "done"}, "status"),
        ({"status": ""}, "status"),
        ({"slot": ""}, "slot"),
        ({"is_finalized": "maybe"}, "is_finalized"),
        ({"failure_reason": "oops"}, "failure_reason"),
        ({"slot": "s" * 33}, "slot"),
        ({"provider": "bad\x00id"}, "provider"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2025-02-30T00:00:00Z"}, "created_before"),
        ({"created_after": "9999-12-31T23:59:59-12:00"}, "created_after"),
        ({"sort": "slot_id"}, "sort"),
        ({"page": "0"}, "page"),
        ({"page": "abc"}, "page"),
        ({"page": "10000000000000000000000"}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "201"}, "page_size"),
    ],
)
def test_invalid_parameters_are_a_400_naming_them(
    stats_api: APIClient, params: dict[str, str], named: str
) -> None:
    error = assert_error(get_jobs(stats_api, **params), 400, "invalid_parameter")

    assert set(error["details"]) == {named}


# --- sorting and pages -------------------------------------------------------------------------


def test_sorting_by_created_at_and_expires_at(stats_api: APIClient) -> None:
    first = job_row(created_at=at(0), lifetime=timedelta(seconds=60))
    second = job_row(created_at=at(1), lifetime=timedelta(seconds=10))
    third = job_row(created_at=at(2), lifetime=timedelta(seconds=30))

    def order(sort: str | None) -> list[str]:
        return ids(get_jobs(stats_api, **({"sort": sort} if sort else {})))

    assert order(None) == [str(third.id), str(second.id), str(first.id)]
    assert order("-created_at") == order(None)
    assert order("created_at") == [str(first.id), str(second.id), str(third.id)]
    assert order("expires_at") == [str(second.id), str(third.id), str(first.id)]
    assert order("-expires_at") == [str(first.id), str(third.id), str(second.id)]


def test_pages_cover_every_job_once_even_with_equal_sort_keys(stats_api: APIClient) -> None:
    jobs = [job_row(created_at=at(0)) for _ in range(7)]

    seen: list[str] = []
    for page in (1, 2, 3):
        body = get_jobs(stats_api, page=page, page_size=3).json()
        assert (body["count"], body["page"], body["page_size"]) == (7, page, 3)
        seen += [job["id"] for job in body["results"]]

    assert len(seen) == 7
    assert set(seen) == {str(job.id) for job in jobs}


def test_a_page_past_the_last_is_empty_with_the_true_count(stats_api: APIClient) -> None:
    job_row()

    body = get_jobs(stats_api, page=5, page_size=10).json()

    assert body == {"count": 1, "page": 5, "page_size": 10, "results": []}


def test_default_page_size_is_50(stats_api: APIClient) -> None:
    Job.objects.bulk_create([job_row_unsaved(index) for index in range(55)])

    body = get_jobs(stats_api).json()

    assert (body["count"], body["page_size"], len(body["results"])) == (55, 50, 50)


def job_row_unsaved(index: int) -> Job:
    created_at = at(index)
    return Job(
        slot_id=f"slot-{index % 5:03d}",
        provider_id="local",
        operation_id="photo_look",
        created_at=created_at,
        expires_at=created_at + timedelta(seconds=48),
        status=JobStatus.PROCESSING,
        started_at=created_at + timedelta(seconds=1),
        is_finalized=True,
        finalized_at=created_at + timedelta(seconds=3),
        failure_reason=None,
        result_path=f"results/{index}.jpg",
        result_mime="image/jpeg",
        result_size=100 + index,
        result_expires_at=created_at + timedelta(hours=1),
        payload_mime="image/jpeg",
        payload_size=1,
        payload_sha256="0" * 64,
        payload_expires_at=created_at + timedelta(seconds=48),
        result_retention_seconds=3600,
    )


def test_query_count_does_not_grow_with_page_size(
    stats_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    Job.objects.bulk_create([job_row_unsaved(index) for index in range(210)])

    # The token's user, the count and the page: the same three for 1 job or 200.
    for page_size in (1, 200):
        with django_assert_max_num_queries(3):
            body = get_jobs(stats_api, page_size=page_size).json()
        assert len(body["results"]) == page_size
    with django_assert_max_num_queries(3):
        assert len(get_jobs(stats_api, page=2, page_size=200).json()["results"]) == 10


def test_detail_reads_the_job_and_its_log_in_two_queries(
    stats_api: APIClient, django_assert_max_num_queries: Any
) -> None:
    job = enqueue()

    with django_assert_max_num_queries(3):  # the token's user, the job, its log
        assert stats_api.get(f"/api/jobs/{job.id}").status_code == 200
