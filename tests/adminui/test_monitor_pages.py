"""The jobs monitor, a job's page, the statistics page, their SVG charts and recent failures."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import SCOPES
from adminui import charts
from ingest.models import Slot
from jobqueue import failures
from jobqueue.models import FailureReason, Job, JobStatus, ProcessingLog, WorkerHeartbeat
from tests.api.conftest import ADMIN_PASSWORD, make_admin

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
BASE_URL = "https://booth.example"


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PUBLIC_BASE_URL = BASE_URL


def logged_in(*scopes: str, username: str = "olga") -> Client:
    make_admin(username, scopes)
    client = Client()
    response = client.post("/dashboard/login", {"username": username, "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    return client


@pytest.fixture
def monitor() -> Client:
    return logged_in("stats:read")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_job(
    state: str = "succeeded",
    *,
    created_at: datetime | None = None,
    slot_id: str = "slot-001",
    provider_id: str = "local",
    reason: str | None = None,
    detail: str = "",
    result_for: timedelta = timedelta(hours=1),
) -> Job:
    """A job row: pending, processing, succeeded or failed (picked up after 1.5 s, finalized
    after 4 s)."""
    created_at = created_at or timezone.now()
    values: dict[str, Any] = {
        "slot_id": slot_id,
        "provider_id": provider_id,
        "operation_id": "photo_look",
        "created_at": created_at,
        "expires_at": created_at + timedelta(seconds=48),
        "payload_mime": "image/jpeg",
        "payload_size": 1234,
        "payload_sha256": "0" * 64,
        "payload_expires_at": created_at + timedelta(seconds=48),
        "result_retention_seconds": 3600,
    }
    if state != "pending":
        values.update(
            status=JobStatus.PROCESSING,
            started_at=created_at + timedelta(seconds=1.5),
            attempt_count=1,
        )
    if state in ("succeeded", "failed"):
        values.update(is_finalized=True, finalized_at=created_at + timedelta(seconds=4))
    if state == "failed":
        values.update(
            failure_reason=reason or FailureReason.PROVIDER_ERROR,
            failure_detail=detail or "rejected: the provider refused the photo",
        )
    if state == "succeeded":
        values.update(
            result_path="results/x.jpg",
            result_mime="image/jpeg",
            result_size=4321,
            result_expires_at=values["finalized_at"] + result_for,
        )
    return Job.objects.create(**values)


def svg_of(page: str) -> ET.Element:
    """The page's (only) inline SVG, parsed as XML: it must be well-formed."""
    found = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(found) == 1, f"{len(found)} charts"
    return ET.fromstring(found[0])


def bar_groups(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == "bar-group"]


def bar(group: ET.Element, series: str) -> ET.Element:
    [found] = [r for r in group.iter(f"{SVG}rect") if r.get("data-series") == series]
    return found


def height(rect: ET.Element) -> float:
    return float(rect.get("height", "nan"))


# --- access --------------------------------------------------------------------------------------


PAGES = ["/dashboard/jobs", f"/dashboard/jobs/{uuid.uuid4()}", "/dashboard/stats"]


@pytest.mark.parametrize("address", PAGES)
def test_the_pages_need_a_login(address: str) -> None:
    response = Client().get(address)

    assert response.status_code == 302
    assert response["Location"].startswith(f"/dashboard/login?next={address}")


@pytest.mark.parametrize("address", PAGES)
def test_the_pages_need_stats_read(address: str) -> None:
    client = logged_in(*(scope for scope in SCOPES if scope != "stats:read"))

    response = client.get(address)

    assert response.status_code == 403
    assert "stats:read" in response.content.decode()


@pytest.mark.parametrize("address", ["/dashboard/jobs", "/dashboard/stats"])
def test_the_pages_only_answer_reads(monitor: Client, address: str) -> None:
    assert monitor.post(address).status_code == 405


def test_the_menu_leads_to_both_pages(monitor: Client) -> None:
    page = monitor.get("/dashboard/jobs").content.decode()

    assert 'href="/dashboard/jobs" aria-current="page"' in page
    assert 'href="/dashboard/stats"' in page


# --- the jobs list -------------------------------------------------------------------------------


def test_the_list_shows_each_jobs_state_slot_provider_timings_and_failure(
    monitor: Client,
) -> None:
    done = make_job("succeeded", slot_id="slot-002", provider_id="gemini")
    failed = make_job("failed", slot_id="slot-003", detail="rate_limited: quota exhausted")
    waiting = make_job("pending")

    response = monitor.get("/dashboard/jobs")
    page = response.content.decode()

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert page.count("<tr data-job=") == 3
    row = re.search(rf'<tr data-job="{done.id}".*?</tr>', page, flags=re.S)
    assert row is not None
    assert '<span class="badge on">Succeeded</span>' in row.group(0)
    assert "slot-002" in row.group(0) and "gemini / photo_look" in row.group(0)
    # Waited 1.5 s, processed 2.5 s, 4 s in all.
    assert ">1.5 s<" in row.group(0) and ">2.5 s<" in row.group(0) and ">4.0 s<" in row.group(0)
    assert f'href="/dashboard/jobs/{done.id}"' in row.group(0)
    failed_row = re.search(rf'<tr data-job="{failed.id}".*?</tr>', page, flags=re.S)
    assert failed_row is not None
    assert '<span class="badge bad">Failed</span>' in failed_row.group(0)
    assert "Provider error" in failed_row.group(0)
    assert "rate_limited: quota exhausted" in failed_row.group(0)
    waiting_row = re.search(rf'<tr data-job="{waiting.id}".*?</tr>', page, flags=re.S)
    assert waiting_row is not None
    assert "Waiting" in waiting_row.group(0) and "left" in waiting_row.group(0)
    assert "3 jobs" in page


def test_failure_details_are_escaped(monitor: Client) -> None:
    make_job("failed", detail="rejected: <script>alert(1)</script>")

    page = monitor.get("/dashboard/jobs").content.decode()

    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, {"failed", "timeout"}),
        ({"status": "pending"}, {"pending"}),
        ({"failure_reason": "timeout"}, {"timeout"}),
        ({"slot": "slot-009"}, {"other slot"}),
        ({"provider": "gemini"}, {"gemini"}),
        ({"created_after": "2025-03-02T00:00"}, {"march 2"}),
        ({"created_before": "2025-03-02T00:00"}, {"march 1"}),
    ],
)
def test_filters(monitor: Client, query: dict[str, str], expected: set[str]) -> None:
    jobs = {
        "failed": make_job("failed", created_at=timezone.now() - timedelta(minutes=1)),
        "pending": make_job("pending"),
        "timeout": make_job("failed", reason=FailureReason.TIMEOUT, detail="deadline reached"),
        "other slot": make_job("processing", slot_id="slot-009"),
        "gemini": make_job("succeeded", provider_id="gemini"),
        "march 1": make_job("succeeded", created_at=utc("2025-03-01T12:00")),
        "march 2": make_job("succeeded", created_at=utc("2025-03-02T12:00")),
    }

    page = monitor.get("/dashboard/jobs", query).content
    shown = set(re.findall(r'<tr data-job="([^"]+)"', page.decode()))

    if "created_after" in query or "created_before" in query:
        # Dated filters: only the two March jobs can match (the others are from today).
        shown &= {str(jobs["march 1"].id), str(jobs["march 2"].id)}
    assert shown == {str(jobs[name].id) for name in expected}


def test_the_form_keeps_the_chosen_filters(monitor: Client) -> None:
    page = monitor.get(
        "/dashboard/jobs", {"status": "failed", "slot": "slot-004", "sort": "created_at"}
    ).content.decode()

    assert '<option value="failed" selected>' in page
    assert '<option value="slot-004" selected>' in page
    assert '<option value="created_at" selected>' in page
    assert "match the filters" in page


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"status": "exploded"}, "jobs-status-error", "is not a valid choice"),
        ({"failure_reason": "bad_luck"}, "jobs-reason-error", "is not a valid choice"),
        ({"created_after": "yesterday"}, "jobs-created-after-error", "Datetime has wrong format"),
        ({"sort": "name"}, "jobs-sort-error", "is not a valid choice"),
        ({"page_size": "1000"}, "jobs-page-size-error", "less than or equal to 200"),
        ({"page": "0"}, "jobs-page-error", "greater than or equal to 1"),
        ({"slot": "x" * 40}, "jobs-slot-error", "no more than 32 characters"),
    ],
)
def test_invalid_filters_show_the_apis_message_next_to_the_field(
    monitor: Client, query: dict[str, str], field: str, message: str
) -> None:
    make_job()

    response = monitor.get("/dashboard/jobs", query)
    page = response.content.decode()

    assert response.status_code == 400
    assert 'id="jobs-filters-error"' in page
    shown = re.search(rf'id="{field}">([^<]*)<', page)
    assert shown is not None and message in shown.group(1)
    assert "<tr data-job=" not in page  # no list for filters that mean nothing
    assert 'id="jobs-live"' not in page


def test_a_nul_character_in_a_filter_is_an_error_not_a_crash(monitor: Client) -> None:
    response = monitor.get("/dashboard/jobs", {"provider": "lo\x00cal"})

    assert response.status_code == 400
    assert 'id="jobs-provider-error"' in response.content.decode()


def test_pages_of_jobs_link_to_each_other_keeping_the_filters(monitor: Client) -> None:
    for minute in range(5):
        make_job(slot_id="slot-005", created_at=utc("2025-03-01T12:00") + timedelta(minutes=minute))
    make_job(slot_id="slot-006")

    first = monitor.get("/dashboard/jobs", {"slot": "slot-005", "page_size": "2"}).content.decode()

    assert "5 jobs match the filters · page 1 of 3" in first
    assert first.count("<tr data-job=") == 2
    following = re.search(r'href="([^"]+)" id="jobs-page-next"', first)
    assert following is not None
    address = following.group(1).replace("&amp;", "&")
    assert "slot=slot-005" in address and "page_size=2" in address and "page=2" in address
    assert "jobs-page-prev" not in first

    second = monitor.get(f"/dashboard/jobs{address}").content.decode()

    assert "page 2 of 3" in second
    assert 'id="jobs-page-prev"' in second and 'id="jobs-page-next"' in second
    assert not set(re.findall(r"<tr data-job=\"([^\"]+)\"", first)) & set(
        re.findall(r"<tr data-job=\"([^\"]+)\"", second)
    )


def test_sorting_by_creation_and_by_deadline(monitor: Client) -> None:
    old = make_job(created_at=utc("2025-03-01T12:00"))
    new = make_job(created_at=utc("2025-03-02T12:00"))

    def order(sort: str) -> list[str]:
        page = monitor.get("/dashboard/jobs", {"sort": sort}).content.decode()
        return re.findall(r'<tr data-job="([^"]+)"', page)

    assert order("-created_at") == [str(new.id), str(old.id)]
    assert order("created_at") == [str(old.id), str(new.id)]
    assert order("expires_at") == [str(old.id), str(new.id)]
    assert order("-expires_at") == [str(new.id), str(old.id)]


def test_the_list_refreshes_itself_from_a_partial_address(monitor: Client) -> None:
    page = monitor.get("/dashboard/jobs", {"status": "failed"}).content.decode()

    live = re.search(r'id="jobs-live" data-live-src="([^"]+)" data-live-interval="3000"', page)
    assert live is not None
    assert live.group(1).replace("&amp;", "&") == "?status=failed&partial=1"
    assert 'src="/static/adminui/monitor.js" defer' in page
    assert 'id="jobs-refresh"' in page  # without JavaScript


def test_the_partial_answer_is_only_the_list(monitor: Client) -> None:
    make_job("failed")
    make_job("succeeded")

    response = monitor.get("/dashboard/jobs", {"status": "failed", "partial": "1"})
    fragment = response.content.decode()

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert "<html" not in fragment and "jobs-filters" not in fragment
    assert fragment.count("<tr data-job=") == 1
    assert 'id="jobs-summary"' in fragment


def test_the_partial_answer_sees_new_jobs(monitor: Client) -> None:
    before = monitor.get("/dashboard/jobs", {"partial": "1"}).content.decode()
    job = make_job("pending")

    after = monitor.get("/dashboard/jobs", {"partial": "1"}).content.decode()

    assert str(job.id) not in before and str(job.id) in after


def test_a_partial_answer_for_bad_filters_is_a_400(monitor: Client) -> None:
    response = monitor.get("/dashboard/jobs", {"status": "nope", "partial": "1"})

    assert response.status_code == 400
    assert "<html" not in response.content.decode()


def test_the_list_warns_when_no_worker_runs(monitor: Client) -> None:
    assert 'id="jobs-no-worker"' in monitor.get("/dashboard/jobs").content.decode()
    WorkerHeartbeat.objects.create(
        worker_id="w1",
        hostname="h",
        pid=1,
        concurrency=1,
        started_at=timezone.now(),
        last_seen_at=timezone.now(),
    )

    assert 'id="jobs-no-worker"' not in monitor.get("/dashboard/jobs").content.decode()


def test_no_jobs_yet(monitor: Client) -> None:
    page = monitor.get("/dashboard/jobs").content.decode()

    assert "No jobs yet." in page


# --- one job -------------------------------------------------------------------------------------


def test_a_succeeded_job_shows_its_timings_result_link_and_log(monitor: Client) -> None:
    job = make_job("succeeded", slot_id="slot-002")
    ProcessingLog.objects.create(
        job=job, event="received", created_at=job.created_at, details={"size": 1234}
    )
    ProcessingLog.objects.create(
        job=job,
        event="provider_call",
        created_at=job.created_at + timedelta(seconds=2),
        details={"outcome": "success", "note": "<b>bold</b> & more"},
    )

    response = monitor.get(f"/dashboard/jobs/{job.id}")
    page = response.content.decode()

    assert response.status_code == 200
    assert str(job.id) in page
    assert 'id="job-status" data-status="succeeded"' in page
    assert 'id="job-waited">1.5 s<' in page
    assert 'id="job-processing">2.5 s<' in page
    assert 'id="job-total">4.0 s<' in page
    download = f"{BASE_URL}/public/results/{job.id}"
    assert f'href="{download}" id="job-download"' in page
    assert f'<img src="/public/results/{job.id}/thumbnail"' in page
    assert page.index(">Received<") < page.index(">Provider call<")
    # Details pretty-printed, escaped.
    assert "&quot;outcome&quot;: &quot;success&quot;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "<b>bold</b>" not in page
    assert "data-live-done" in page and "data-live-src" not in page


def test_a_failed_job_shows_its_reason_and_detail(monitor: Client) -> None:
    job = make_job("failed", detail="rate_limited: quota exhausted")

    page = monitor.get(f"/dashboard/jobs/{job.id}").content.decode()

    assert "Provider error" in page and "rate_limited: quota exhausted" in page
    assert 'id="job-download"' not in page


def test_an_expired_result_is_said_to_be_gone(monitor: Client) -> None:
    job = make_job(
        "succeeded", created_at=timezone.now() - timedelta(hours=3), result_for=timedelta(hours=1)
    )

    page = monitor.get(f"/dashboard/jobs/{job.id}").content.decode()

    assert 'id="job-result-expired"' in page and 'id="job-download"' not in page


def test_an_unfinished_job_page_refreshes_itself(monitor: Client) -> None:
    job = make_job("processing")

    page = monitor.get(f"/dashboard/jobs/{job.id}").content.decode()
    fragment = monitor.get(f"/dashboard/jobs/{job.id}", {"partial": "1"}).content.decode()

    assert 'data-live-src="?partial=1"' in page and 'id="job-refresh"' in page
    assert "<html" not in fragment and 'data-status="processing"' in fragment
    assert "data-live-done" not in fragment
    Job.objects.filter(id=job.id).update(
        is_finalized=True,
        finalized_at=timezone.now(),
        failure_reason=FailureReason.TIMEOUT,
        failure_detail="deadline reached",
    )
    final = monitor.get(f"/dashboard/jobs/{job.id}", {"partial": "1"}).content.decode()
    assert "data-live-done" in final and "Timeout" in final


def test_an_unknown_job_is_a_404_page(monitor: Client) -> None:
    response = monitor.get(f"/dashboard/jobs/{uuid.uuid4()}")

    assert response.status_code == 404
    assert "Not found" in response.content.decode()


# --- the SVG chart -------------------------------------------------------------------------------

SERIES = [charts.Series("ok", "Succeeded", "#0a0"), charts.Series("bad", "Failed", "#a00")]


def test_the_chart_is_well_formed_accessible_svg() -> None:
    svg = ET.fromstring(
        charts.stacked_bar_chart(
            chart_id="c1",
            title="Jobs per day",
            description="Three days",
            categories=["2025-03-01", "2025-03-02", "2025-03-03"],
            series=SERIES,
            values=[[1, 0], [2, 1], [0, 0]],
            x_label="Day (UTC)",
            y_label="Jobs",
        )
    )

    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "c1-title c1-desc"
    title = svg.find(f"{SVG}title")
    desc = svg.find(f"{SVG}desc")
    assert title is not None and title.get("id") == "c1-title" and title.text == "Jobs per day"
    assert desc is not None and desc.get("id") == "c1-desc" and desc.text == "Three days"
    assert len(bar_groups(svg)) == 3
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Day (UTC)" in texts and "Jobs" in texts  # axis titles
    assert "Succeeded" in texts and "Failed" in texts  # legend
    assert "2025-03-01" in texts  # x labels


def test_bar_heights_are_proportional_to_the_values() -> None:
    svg = ET.fromstring(
        charts.stacked_bar_chart(
            chart_id="c",
            title="t",
            description="d",
            categories=["a", "b", "c"],
            series=SERIES,
            values=[[2, 1], [4, 3], [0, 0]],
            x_label="x",
            y_label="y",
        )
    )

    first, second, empty = bar_groups(svg)
    assert height(bar(second, "ok")) == pytest.approx(2 * height(bar(first, "ok")), rel=1e-3)
    assert height(bar(second, "bad")) == pytest.approx(3 * height(bar(first, "bad")), rel=1e-3)
    # Stacked: "bad" sits right on top of "ok".
    ok, bad = bar(second, "ok"), bar(second, "bad")
    assert float(bad.get("y", "0")) + height(bad) == pytest.approx(
        float(ok.get("y", "0")), abs=0.02
    )
    assert list(empty.iter(f"{SVG}rect")) == []
    assert (first.get("data-total"), second.get("data-total")) == ("3", "7")


def test_the_chart_escapes_every_text() -> None:
    nasty = "<script>alert('x')</script> & \"quotes\""

    markup = charts.stacked_bar_chart(
        chart_id="c",
        title=nasty,
        description=nasty,
        categories=[nasty],
        series=[charts.Series("k", nasty, "#000")],
        values=[[1]],
        x_label=nasty,
        y_label=nasty,
    )

    assert "<script>" not in markup
    svg = ET.fromstring(markup)
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text == nasty
    assert bar_groups(svg)[0].get("data-category") == nasty


def test_an_empty_chart_still_draws_its_axes() -> None:
    svg = ET.fromstring(
        charts.stacked_bar_chart(
            chart_id="c",
            title="t",
            description="d",
            categories=["a", "b"],
            series=SERIES,
            values=[[0, 0], [0, 0]],
            x_label="x",
            y_label="y",
        )
    )

    assert len(bar_groups(svg)) == 2
    assert [r for g in bar_groups(svg) for r in g.iter(f"{SVG}rect")] == []


def test_the_chart_refuses_mismatched_data() -> None:
    with pytest.raises(ValueError, match="one row of values per category"):
        charts.stacked_bar_chart(
            chart_id="c",
            title="t",
            description="d",
            categories=["a"],
            series=SERIES,
            values=[],
            x_label="x",
            y_label="y",
        )


@pytest.mark.parametrize(
    ("maximum", "expected"),
    [(0, (1, 1)), (1, (1, 1)), (3, (3, 1)), (7, (8, 2)), (10, (10, 2)), (93, (100, 20))],
)
def test_the_y_axis_ends_on_a_round_number(maximum: int, expected: tuple[int, int]) -> None:
    assert charts.nice_ceiling(maximum) == expected


# --- the statistics page -------------------------------------------------------------------------


def add_day_of_jobs(
    day: str, *, success: int = 0, timeouts: int = 0, slot: str = "slot-001"
) -> None:
    start = utc(f"{day}T10:00")
    for index in range(success):
        make_job("succeeded", created_at=start + timedelta(minutes=index), slot_id=slot)
    for index in range(timeouts):
        make_job(
            "failed",
            created_at=start + timedelta(minutes=30 + index),
            slot_id=slot,
            reason=FailureReason.TIMEOUT,
            detail="deadline reached",
        )


def test_global_statistics_chart_one_bar_group_per_day_with_proportional_heights(
    monitor: Client,
) -> None:
    add_day_of_jobs("2025-03-01", success=2, timeouts=1)
    add_day_of_jobs("2025-03-02", success=4, timeouts=2, slot="slot-002")

    response = monitor.get(
        "/dashboard/stats",
        {"scope": "global", "group_by": "day", "from": "2025-03-01", "to": "2025-03-03"},
    )
    page = response.content.decode()

    assert response.status_code == 200
    svg = svg_of(page)
    groups = bar_groups(svg)
    assert [g.get("data-category") for g in groups] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    first, second, third = groups
    assert height(bar(second, "success")) == pytest.approx(
        2 * height(bar(first, "success")), rel=1e-3
    )
    assert height(bar(second, "timeouts")) == pytest.approx(
        2 * height(bar(first, "timeouts")), rel=1e-3
    )
    assert third.get("data-total") == "0"
    # The same numbers in the table under the chart.
    table = page[page.index('id="stats-table"') :]
    assert re.search(
        r'<th scope="row">2025-03-02</th>\s*<td class="num">6</td>\s*'
        r'<td class="num">4</td>\s*<td class="num">2</td>',
        table,
    )
    assert "9 photos received" in page and "6 succeeded (67 % of the finished ones)" in page
    assert "From 2025-03-01 00:00 to 2025-03-04 00:00 UTC." in page


def test_global_statistics_by_provider_and_by_slot(monitor: Client) -> None:
    add_day_of_jobs("2025-03-01", success=2)
    make_job(
        "succeeded", created_at=utc("2025-03-01T11:00"), provider_id="gemini", slot_id="slot-003"
    )
    window = {"from": "2025-03-01", "to": "2025-03-01"}

    by_provider = monitor.get("/dashboard/stats", {**window, "provider": "gemini"}).content.decode()
    by_slot = monitor.get("/dashboard/stats", {**window, "slot": "slot-001"}).content.decode()

    assert "1 photo received" in by_provider and "provider gemini" in by_provider
    assert "2 photos received" in by_slot


def test_slot_statistics_by_hour_honour_the_reset(monitor: Client) -> None:
    make_job("succeeded", created_at=utc("2025-03-01T09:10"), slot_id="slot-004")
    make_job("succeeded", created_at=utc("2025-03-01T10:10"), slot_id="slot-004")
    make_job("succeeded", created_at=utc("2025-03-01T10:20"), slot_id="slot-004")
    Slot.objects.filter(id="slot-004").update(last_reset_at=utc("2025-03-01T10:00"))

    page = monitor.get(
        "/dashboard/stats",
        {
            "scope": "slot",
            "slot": "slot-004",
            "group_by": "hour",
            "from": "2025-03-01",
            "to": "2025-03-01",
        },
    ).content.decode()

    groups = bar_groups(svg_of(page))
    assert len(groups) == 24
    totals = {g.get("data-category"): g.get("data-total") for g in groups}
    assert totals["2025-03-01 09:00"] == "0" and totals["2025-03-01 10:00"] == "2"
    assert "Counting since the slot's reset on 2025-03-01 10:00 UTC" in page


def test_the_chart_escapes_slot_names(monitor: Client) -> None:
    Slot.objects.filter(id="slot-007").update(name='<script>alert("x")</script> & Co')
    make_job("succeeded", created_at=utc("2025-03-01T10:00"), slot_id="slot-007")

    page = monitor.get(
        "/dashboard/stats",
        {"scope": "slot", "slot": "slot-007", "from": "2025-03-01", "to": "2025-03-02"},
    ).content.decode()

    assert '<script>alert("x")' not in page
    svg = svg_of(page)
    title = svg.find(f"{SVG}title")
    assert title is not None
    assert title.text == 'Jobs per day of slot-007 · <script>alert("x")</script> & Co'


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            {"from": "2025-03-05", "to": "2025-03-01"},
            "stats-to-error",
            "Must be later than `from`.",
        ),
        ({"from": "2025-01-01", "to": "2025-06-01"}, "stats-to-error", "at most 90 days"),
        (
            {"scope": "slot", "slot": "slot-001", "from": "2025-01-01", "to": "2025-03-01"},
            "stats-to-error",
            "at most 31 days",
        ),
        ({"from": "last tuesday"}, "stats-from-error", "ISO 8601"),
        ({"group_by": "hour"}, "stats-group-by-error", "day, week, month"),
        (
            {"scope": "slot", "slot": "slot-001", "group_by": "month"},
            "stats-group-by-error",
            "hour, day, week",
        ),
        ({"scope": "slot"}, "stats-slot-error", "Choose a slot."),
        ({"scope": "slot", "slot": "slot-099"}, "stats-slot-error", "No slot with this id."),
        ({"scope": "everything"}, "stats-scope-error", "Choose all slots or one slot."),
        ({"provider": "p" * 70}, "stats-provider-error", "no more than 64 characters"),
        ({"slot": "s\x00"}, "stats-slot-error", "Null characters are not allowed."),
    ],
)
def test_invalid_statistics_filters_show_the_services_message(
    monitor: Client, query: dict[str, str], field: str, message: str
) -> None:
    response = monitor.get("/dashboard/stats", query)
    page = response.content.decode()

    assert response.status_code == 400
    assert 'id="stats-error"' in page
    shown = re.search(rf'id="{field}">([^<]*)<', page)
    assert shown is not None, page[page.index("stats-filters") :][:3000]
    assert message in shown.group(1)
    assert "<svg" not in page


def test_the_range_error_message_is_the_services(monitor: Client) -> None:
    page = monitor.get(
        "/dashboard/stats", {"from": "2025-03-05", "to": "2025-03-01"}
    ).content.decode()

    assert "`from` must be earlier than `to`." in page


def test_the_default_statistics_are_the_last_30_days_per_day(monitor: Client) -> None:
    make_job("succeeded")

    page = monitor.get("/dashboard/stats").content.decode()

    assert len(bar_groups(svg_of(page))) == 31
    assert "1 photo received" in page
    assert '<option value="day" selected>' in page


# --- recent failures -----------------------------------------------------------------------------


@pytest.fixture
def failures_over_three_days() -> dict[str, Job]:
    now = timezone.now()
    return {
        "30 min": make_job(
            "failed",
            created_at=now - timedelta(minutes=30),
            slot_id="slot-002",
            provider_id="gemini",
            detail="rate_limited: quota exhausted",
        ),
        "3 h": make_job(
            "failed",
            created_at=now - timedelta(hours=3),
            reason=FailureReason.TIMEOUT,
            detail="deadline reached",
        ),
        "2 days": make_job(
            "failed",
            created_at=now - timedelta(hours=48),
            provider_id="gemini",
            slot_id="slot-002",
            detail="rate_limited: quota exhausted again",
        ),
        "4 days": make_job("failed", created_at=now - timedelta(hours=96)),
        "ok": make_job("succeeded", created_at=now - timedelta(minutes=10)),
    }


@pytest.mark.parametrize(
    ("hours", "expected"),
    [("1", ["30 min"]), ("6", ["30 min", "3 h"]), ("72", ["30 min", "3 h", "2 days"])],
)
def test_the_failures_window_lists_the_latest_failures_newest_first(
    monitor: Client, failures_over_three_days: dict[str, Job], hours: str, expected: list[str]
) -> None:
    page = monitor.get("/dashboard/stats", {"hours": hours}).content.decode()

    section = page[page.index('id="recent-failures"') :]
    listed = re.findall(r'<tr data-job="([^"]+)"', section)
    assert listed == [str(failures_over_three_days[name].id) for name in expected]
    assert f'<option value="{hours}" selected>' in section


def test_recent_failures_show_the_provider_code_and_counts_per_reason(
    monitor: Client, failures_over_three_days: dict[str, Job]
) -> None:
    page = monitor.get("/dashboard/stats", {"hours": "6"}).content.decode()

    section = page[page.index('id="recent-failures"') :]
    assert "<strong>2</strong> of 3 jobs created in the last 6 hours failed (66.7 %)" in section
    assert re.search(
        r'data-reason="provider_error"><th scope="row">Provider error</th><td class="num">1<',
        section,
    )
    assert re.search(
        r'data-reason="timeout"><th scope="row">Timeout</th><td class="num">1<', section
    )
    assert re.search(
        r'data-reason="cancelled"><th scope="row">Cancelled</th><td class="num">0<', section
    )
    assert '<tr data-code="rate_limited" data-reason="provider_error">' in section
    assert "<code>rate_limited</code>" in section
    assert "rate_limited: quota exhausted" in section
    link = re.search(r'href="(/dashboard/jobs\?[^"]+)" id="failures-jobs-link"', section)
    assert link is not None and "status=failed" in link.group(1)
    listed = monitor.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert set(re.findall(r'<tr data-job="([^"]+)"', listed)) == {
        str(failures_over_three_days[name].id) for name in ("30 min", "3 h")
    }


def test_recent_failures_follow_the_chosen_slot(
    monitor: Client, failures_over_three_days: dict[str, Job]
) -> None:
    page = monitor.get(
        "/dashboard/stats", {"scope": "slot", "slot": "slot-002", "hours": "72"}
    ).content.decode()

    section = page[page.index('id="recent-failures"') :]
    listed = re.findall(r'<tr data-job="([^"]+)"', section)
    assert listed == [str(failures_over_three_days[n].id) for n in ("30 min", "2 days")]
    assert "For slot-002:" in section


def test_the_window_form_keeps_the_statistics_filters(monitor: Client) -> None:
    page = monitor.get(
        "/dashboard/stats", {"scope": "slot", "slot": "slot-003", "group_by": "hour"}
    ).content.decode()

    form = page[page.index('id="failures-filters"') : page.index('id="failures-hours"')]
    assert '<input type="hidden" name="scope" value="slot">' in form
    assert '<input type="hidden" name="slot" value="slot-003">' in form
    assert '<input type="hidden" name="group_by" value="hour">' in form


def test_an_invalid_window_is_an_error_next_to_the_selector(monitor: Client) -> None:
    response = monitor.get("/dashboard/stats", {"hours": "500"})
    page = response.content.decode()

    assert response.status_code == 400
    assert "The window must be between 1 and 72 hours." in page
    assert "<svg" in page  # the statistics themselves are fine


# --- jobqueue.failures ---------------------------------------------------------------------------


def test_codes_are_read_from_the_detail_by_the_database() -> None:
    now = timezone.now()
    for detail in (
        "rate_limited: too many",
        "rate_limited: again",
        "no_image: finishReason NO_IMAGE",
        "deadline reached",
        "HTTP 500: upstream",
        ": starts with a separator",
        "x" * 60 + ": too long to be a code",
    ):
        make_job("failed", created_at=now - timedelta(minutes=5), detail=detail)

    with CaptureQueriesContext(connection) as queries:
        found = failures.recent_failures(hours=1, now=now)

    assert len(queries) == 3
    assert [(c.provider_code, c.count) for c in found.by_code] == [
        ("", 4),
        ("rate_limited", 2),
        ("no_image", 1),
    ]
    assert {item.provider_code for item in found.latest} == {"", "rate_limited", "no_image"}
    assert found.failed == found.jobs == 7
    assert found.by_reason == {
        "timeout": 0,
        "provider_error": 7,
        "cancelled": 0,
        "internal_error": 0,
    }


def test_the_window_counts_jobs_created_inside_it() -> None:
    now = utc("2025-03-01T12:00")
    make_job("failed", created_at=now - timedelta(minutes=59))
    make_job("failed", created_at=now - timedelta(minutes=61))
    make_job("succeeded", created_at=now - timedelta(minutes=30))

    found = failures.recent_failures(hours=1, now=now)

    assert (found.jobs, found.failed, found.failure_rate) == (2, 1, 50.0)
    assert len(found.latest) == 1
    assert found.since == now - timedelta(hours=1)


def test_the_list_of_latest_failures_is_limited() -> None:
    now = timezone.now()
    for minute in range(5):
        make_job("failed", created_at=now - timedelta(minutes=minute + 1))

    found = failures.recent_failures(hours=1, limit=2, now=now)

    assert found.failed == 5 and len(found.latest) == 2
    assert found.latest[0].created_at > found.latest[1].created_at


@pytest.mark.parametrize("text", ["0", "73", "-1", "1.5", "", "abc", "٣"])
def test_windows_outside_1_to_72_hours_are_refused(text: str) -> None:
    with pytest.raises(failures.InvalidWindow):
        failures.parse_hours(text)


def test_a_window_of_any_whole_hours_in_range_works() -> None:
    assert failures.parse_hours(" 12 ") == 12
    with pytest.raises(failures.InvalidWindow):
        failures.recent_failures(hours=0)
