"""Prometheus metrics: who may read /metrics, and that each figure counts what it claims.

In-process tests go through Django's test client; the rest through real uvicorn and run_workers
processes (tests/support/stack.py), scraped over HTTP like Prometheus would.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ingest.models import IngestSettings, TemplateMedia
from ingest.services import update_slot
from jobqueue import services
from jobqueue.models import FailureReason, Job, JobStatus, MediaObject, WorkerHeartbeat
from jobqueue.worker import RetryPolicy, process_job
from photobooth import metrics
from tests.conftest import INGEST_PASSWORD, Stack
from tests.ingest.test_end_to_end import post_photo
from tests.jobqueue.test_queue_services import enqueue
from tests.support.fakes.turbotext import FakeTurbotext
from tests.support.images import make_photo
from tests.support.stack import ManagedProcess, free_port, process_environment, wait_until
from tests.test_alert_rules import metric_names_in, needs_promtool, promtool

TOKEN = "metrics-token-3f9c2a7e5b1d4c6a8e0f"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` having at least `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def bucket(samples: Samples, name: str, le: float, **labels: str) -> float:
    for (n, have), v in samples.items():
        found = dict(have)
        if n == f"{name}_bucket" and float(found.pop("le")) == le and found == labels:
            return v
    return 0.0


def local(name: str, **labels: str) -> float:
    """A metric of this (pytest) process."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(url: str, **headers: str) -> Samples:
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.text)


def scrape_until(attempt: Callable[[], Samples | None], timeout: float = 5) -> Samples:
    found = wait_until(attempt, timeout=timeout, interval=0.1)
    assert isinstance(found, dict)
    return found


@pytest.fixture(autouse=True)
def fresh_database_figures() -> Iterator[None]:
    """Database figures are read anew in each test (they are cached between scrapes)."""
    metrics.reset_caches()
    yield
    metrics.reset_caches()


# --- Who may read /metrics ------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_metrics_are_served_to_the_machine_itself(client: Client, address: str) -> None:
    response = client.get("/metrics", REMOTE_ADDR=address)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    names = {name for name, _ in parse(response.content.decode())}
    assert "photobooth_jobs" in names and "photobooth_workers_live" in names


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["203.0.113.7", "10.1.2.3", "2001:db8::1", "not-an-address"])
def test_other_clients_get_403(client: Client, address: str) -> None:
    response = client.get("/metrics", REMOTE_ADDR=address)

    assert response.status_code == 403
    assert response["Cache-Control"] == "no-store"
    error = response.json()["error"]
    assert error["code"] == "metrics_forbidden"
    assert "photobooth_" not in response.content.decode()


@pytest.mark.django_db
def test_configured_networks_replace_the_default(client: Client, settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]

    assert client.get("/metrics", REMOTE_ADDR="10.200.0.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="11.0.0.1").status_code == 403


@pytest.mark.django_db
def test_the_token_opens_metrics_to_any_address(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    outside = {"REMOTE_ADDR": "203.0.113.7"}

    assert (
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **outside).status_code == 200
    )
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}", **outside).status_code == 200
    )
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN):
        response = client.get("/metrics", HTTP_AUTHORIZATION=wrong, **outside)
        assert response.status_code == 403, wrong
    assert client.get("/metrics", **outside).status_code == 403
    # Without networks, even the machine itself needs the token.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_no_token_configured_means_no_token_accepted(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403


@pytest.mark.django_db
def test_metrics_are_read_only(client: Client) -> None:
    response = client.post("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- Ingest latency (in process) ------------------------------------------------------------------
INGEST = "photobooth_ingest_duration_seconds"


@pytest.mark.django_db
def test_refused_uploads_are_counted_with_their_status(
    client: Client, ingest_password: str, photo_jpeg: bytes
) -> None:
    def upload(slot_id: str, password: str) -> int:
        response = client.post(
            f"/ingest/{slot_id}",
            {"password": password, "fileToUpload": SimpleUploadedFile("p.jpg", photo_jpeg)},
        )
        return response.status_code

    before = {
        key: local(f"{INGEST}_count", slot=slot, outcome=outcome)
        for key, (slot, outcome) in {
            "401": ("unknown", "401"),
            "404": ("slot-012", "404"),
            "odd": ("unknown", "404"),
        }.items()
    }
    assert upload("slot-001", "wrong password") == 401
    assert upload("slot-012", ingest_password) == 404  # a seeded slot, inactive
    assert upload("no-such-slot", ingest_password) == 404

    # A wrong password is not tied to the slot it named (anyone may name any slot).
    assert local(f"{INGEST}_count", slot="unknown", outcome="401") == before["401"] + 1
    assert local(f"{INGEST}_count", slot="slot-012", outcome="404") == before["404"] + 1
    assert local(f"{INGEST}_count", slot="unknown", outcome="404") == before["odd"] + 1


def test_the_slot_label_keeps_only_slot_ids() -> None:
    assert metrics.slot_label("slot-004", "200") == "slot-004"
    assert metrics.slot_label("slot-004", "401") == "unknown"
    assert metrics.slot_label("slot-4", "404") == "unknown"
    assert metrics.slot_label("slot-004x", "200") == "unknown"
    assert metrics.slot_label("x" * 300, "400") == "unknown"


# --- State read from the database -----------------------------------------------------------------
def scrape_client(client: Client) -> Samples:
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    return parse(response.content.decode())


@pytest.mark.django_db
def test_jobs_by_state_match_the_database(client: Client) -> None:
    jobs = [enqueue() for _ in range(5)]
    Job.objects.filter(id=jobs[0].id).update(created_at=timezone.now() - timedelta(seconds=7))
    held = services.acquire_jobs(worker_id="w1", limit=2)
    services.finalize_failure(
        job=held[1], lease_token=held[1].lease_token, reason=FailureReason.PROVIDER_ERROR
    )

    samples = scrape_client(client)

    for state in (JobStatus.PENDING, JobStatus.PROCESSING):
        in_db = Job.objects.filter(is_finalized=False, status=state).count()
        assert value(samples, "photobooth_jobs", state=str(state)) == in_db
    assert value(samples, "photobooth_jobs", state="pending") == 3
    assert value(samples, "photobooth_jobs", state="processing") == 1
    oldest = Job.objects.filter(is_finalized=False, status="pending").order_by("created_at")[0]
    age = value(samples, "photobooth_jobs_oldest_pending_age_seconds")
    assert (timezone.now() - oldest.created_at).total_seconds() - 1 < age
    assert value(samples, "photobooth_database_up") == 1


@pytest.mark.django_db
def test_database_figures_are_read_once_per_cache_period(client: Client, settings: Any) -> None:
    settings.METRICS_DB_CACHE_SECONDS = 60
    enqueue()
    assert value(scrape_client(client), "photobooth_jobs", state="pending") == 1
    enqueue()
    with CaptureQueriesContext(connection) as queries:
        cached = scrape_client(client)
    assert value(cached, "photobooth_jobs", state="pending") == 1
    assert not [q for q in queries.captured_queries if "jobqueue_" in q["sql"]]

    settings.METRICS_DB_CACHE_SECONDS = 0
    with CaptureQueriesContext(connection) as queries:
        fresh = scrape_client(client)
    assert value(fresh, "photobooth_jobs", state="pending") == 2
    job_queries = [q for q in queries.captured_queries if '"jobqueue_job"' in q["sql"]]
    # One aggregate for the queue; the storage sums are on their own (longer) cache.
    assert len(job_queries) <= 2


@pytest.mark.django_db
def test_live_workers_come_from_the_heartbeats(client: Client, settings: Any) -> None:
    settings.WORKER_STALE_SECONDS = 10
    job_ids = [uuid.uuid4(), uuid.uuid4()]
    services.record_heartbeat(worker_id="a:1", concurrency=4, job_ids=job_ids, is_stopping=False)
    services.record_heartbeat(worker_id="b:2", concurrency=2, job_ids=[], is_stopping=True)
    services.record_heartbeat(worker_id="c:3", concurrency=8, job_ids=[], is_stopping=False)
    WorkerHeartbeat.objects.filter(worker_id="c:3").update(
        last_seen_at=timezone.now() - timedelta(seconds=95)
    )

    samples = scrape_client(client)

    assert value(samples, "photobooth_workers_live") == 1
    assert value(samples, "photobooth_workers_stopping") == 1
    assert value(samples, "photobooth_workers_capacity") == 4
    assert value(samples, "photobooth_workers_running_jobs") == 2
    assert value(samples, "photobooth_workers_last_heartbeat_age_seconds") < 5
    assert 95 <= value(samples, "photobooth_worker_heartbeat_age_seconds", worker="c:3") < 100


@pytest.mark.django_db
def test_no_worker_row_means_no_live_worker(client: Client) -> None:
    samples = scrape_client(client)
    assert value(samples, "photobooth_workers_live") == 0
    assert ("photobooth_workers_last_heartbeat_age_seconds", frozenset()) not in samples


@pytest.mark.django_db
def test_stored_bytes_by_kind_sum_the_rows_that_own_files(client: Client) -> None:
    pending = enqueue()  # its payload is stored
    done = enqueue()
    Job.objects.filter(id=done.id).update(
        payload_path="", result_path="results/x.jpg", result_size=1234
    )
    now = timezone.now()
    MediaObject.objects.create(
        path="media/a.jpg", mime="image/jpeg", size=300, created_at=now, expires_at=now
    )
    TemplateMedia.objects.create(
        path="templates/t.png", mime="image/png", size=5000, sha256="0" * 64, width=1, height=1
    )

    samples = scrape_client(client)

    assert value(samples, "photobooth_media_storage_bytes", kind="payloads") == pending.payload_size
    assert value(samples, "photobooth_media_storage_files", kind="payloads") == 1
    assert value(samples, "photobooth_media_storage_bytes", kind="results") == 1234
    assert value(samples, "photobooth_media_storage_bytes", kind="media") == 300
    assert value(samples, "photobooth_media_storage_bytes", kind="templates") == 5000
    assert value(samples, "photobooth_media_storage_files", kind="templates") == 1


@pytest.mark.django_db
def test_django_prometheus_request_and_query_metrics_are_served(client: Client) -> None:
    client.get("/metrics", REMOTE_ADDR="203.0.113.7")  # a 403
    samples = scrape_client(client)

    assert (
        value(
            samples,
            "django_http_responses_total_by_status_view_method_total",
            status="403",
            view="metrics",
            method="GET",
        )
        >= 1
    )
    assert total(samples, "django_db_execute_total", alias="default") > 0
    assert total(samples, "django_db_query_duration_seconds_count", alias="default") > 0


# --- Finalization and provider runs (in process) --------------------------------------------------
@pytest.mark.django_db
def test_finalization_observes_queue_wait_and_processing_time() -> None:
    job = enqueue()
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(seconds=3))
    labels = {"provider": "local"}
    before = (
        local("photobooth_jobs_finalized_total", provider="local", outcome="success"),
        local("photobooth_job_queue_wait_seconds_count", **labels),
        local("photobooth_job_queue_wait_seconds_bucket", le="2.0", **labels),
        local("photobooth_job_processing_seconds_count", provider="local", outcome="success"),
        local("photobooth_provider_attempts_total", provider="local", outcome="success"),
    )
    [held] = services.acquire_jobs(worker_id="w1", limit=1)
    process_job(held)

    assert Job.objects.get(id=job.id).succeeded
    after = (
        local("photobooth_jobs_finalized_total", provider="local", outcome="success"),
        local("photobooth_job_queue_wait_seconds_count", **labels),
        local("photobooth_job_queue_wait_seconds_bucket", le="2.0", **labels),
        local("photobooth_job_processing_seconds_count", provider="local", outcome="success"),
        local("photobooth_provider_attempts_total", provider="local", outcome="success"),
    )
    # Waited about 3 s: counted, and not in the 2 s bucket.
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 0, 1, 1]


@pytest.mark.django_db
def test_retries_and_errors_are_counted_by_provider_and_code() -> None:
    flaky = services.JobConfiguration(
        slot_id="slot-006",
        provider_id="testing",
        operation_id="flaky",
        settings={"failures": 2},
        template_refs={},
    )
    failing = services.JobConfiguration(
        slot_id="slot-007",
        provider_id="testing",
        operation_id="fail",
        settings={"retryable": False},
        template_refs={},
    )

    def counts() -> list[float]:
        return [
            local("photobooth_provider_attempts_total", provider="testing", outcome="retry"),
            local("photobooth_provider_attempts_total", provider="testing", outcome="success"),
            local("photobooth_provider_attempts_total", provider="testing", outcome="error"),
            local("photobooth_provider_retries_total", provider="testing", code="unavailable"),
            local("photobooth_provider_errors_total", provider="testing", code="unavailable"),
            local("photobooth_provider_errors_total", provider="testing", code="told_to_fail"),
        ]

    before = counts()
    enqueue(configuration=flaky)
    enqueue(configuration=failing)
    for held in services.acquire_jobs(worker_id="w1", limit=2):
        process_job(held, retry=RetryPolicy(max_retries=2, backoff_seconds=0.01))

    assert [a - b for a, b in zip(counts(), before, strict=True)] == [2, 1, 1, 2, 2, 1]


def test_http_statuses_are_grouped_into_classes() -> None:
    assert [metrics.http_status_label(s) for s in (200, 204, 302, 400, 429, 503)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "429",
        "5xx",
    ]
    assert metrics.http_status_label("timeout") == "timeout"
    assert metrics.http_status_label("network_error") == "network_error"
    assert metrics.http_status_label("something else") == "unknown"


def test_a_failing_metric_update_never_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("metrics broke")

    monkeypatch.setattr(metrics.PROVIDER_HTTP_REQUESTS, "labels", broken)
    metrics.observe_provider_http(200, 0.1)  # no exception


# --- Real processes -------------------------------------------------------------------------------
def test_the_web_process_counts_each_ingest_by_slot_and_outcome(
    stack_factory: Callable[..., Stack], ingest_password: str, photo_jpeg: bytes
) -> None:
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=2)
    update_slot(
        slot_id="slot-001",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "sepia"},
        is_active=True,
    )
    update_slot(
        slot_id="slot-002", provider_id="testing", operation_id="fail", settings={}, is_active=True
    )
    update_slot(
        slot_id="slot-003",
        provider_id="testing",
        operation_id="sleep",
        settings={"seconds": 30},
        is_active=True,
    )
    worker_port = free_port()
    stack = stack_factory(METRICS_TOKEN=TOKEN, WORKER_METRICS_PORT=str(worker_port))
    metrics_url = f"{stack.base_url}/metrics"

    assert post_photo(stack, "slot-001", photo_jpeg, ingest_password).status_code == 200
    assert post_photo(stack, "slot-002", photo_jpeg, ingest_password).status_code == 502
    assert post_photo(stack, "slot-003", photo_jpeg, ingest_password).status_code == 504
    assert post_photo(stack, "slot-001", photo_jpeg, "not the password").status_code == 401

    web = scrape(metrics_url)
    count = f"{INGEST}_count"
    assert value(web, count, slot="slot-001", outcome="200") == 1, stack.logs()
    assert value(web, count, slot="slot-002", outcome="502") == 1
    assert value(web, count, slot="slot-003", outcome="504") == 1
    assert value(web, count, slot="unknown", outcome="401") == 1
    assert total(web, count) == 4
    # The 504 came at the 2 s deadline: above the 1 s bucket, within the 3 s one.
    assert bucket(web, INGEST, 1.0, slot="slot-003", outcome="504") == 0
    assert bucket(web, INGEST, 3.0, slot="slot-003", outcome="504") == 1
    # The share of timeouts as the alert computes it: among answers that were not 4xx.
    answered = total(web, count) - value(web, count, slot="unknown", outcome="401")
    assert value(web, count, slot="slot-003", outcome="504") / answered == 1 / 3

    # State read from the database matches it.
    assert value(web, "photobooth_workers_live") == 1
    for state in ("pending", "processing"):
        expected = Job.objects.filter(is_finalized=False, status=state).count()
        assert value(web, "photobooth_jobs", state=state) == expected
    assert value(web, "photobooth_database_up") == 1

    # The timed-out job was finalized either by the waiting request or by the worker (which
    # counts it just after its commit, so possibly a moment after the booth's answer).
    finalized = "photobooth_jobs_finalized_total"

    def counted_by_both() -> Samples | None:
        worker = scrape(f"http://127.0.0.1:{worker_port}/metrics")
        timeouts = value(web, finalized, provider="testing", outcome="timeout") + value(
            worker, finalized, provider="testing", outcome="timeout"
        )
        return worker if timeouts == 1 else None

    worker = scrape_until(counted_by_both)
    assert value(worker, finalized, provider="local", outcome="success") == 1
    assert value(worker, finalized, provider="testing", outcome="provider_error") == 1

    # django-prometheus, through its middleware pair and the database wrapper.
    assert (
        value(
            web,
            "django_http_responses_total_by_status_view_method_total",
            status="504",
            view="ingest",
            method="POST",
        )
        == 1
    )
    assert total(web, "django_db_execute_total") > 0

    # Behind a proxy on this machine uvicorn takes the client from X-Forwarded-For: a remote
    # client is refused, unless it brings the token.
    remote = {"X-Forwarded-For": "203.0.113.9"}
    refused = requests.get(metrics_url, headers=remote, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "metrics_forbidden"
    with_token = requests.get(
        metrics_url, headers={**remote, "Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert with_token.status_code == 200


def test_the_worker_serves_provider_calls_polls_and_queue_waits(
    stack_factory: Callable[..., Stack], ingest_password: str, tmp_path: Path
) -> None:
    key = "tt-metrics-key-81c3d5"
    fake = FakeTurbotext(expected_key=key, reconnects=2)
    fake.start()
    try:
        update_slot(
            slot_id="slot-001",
            provider_id="local",
            operation_id="photo_look",
            settings={"look": "vivid"},
            is_active=True,
        )
        update_slot(
            slot_id="slot-002",
            provider_id="testing",
            operation_id="flaky",
            settings={"failures": 1},
            is_active=True,
        )
        update_slot(
            slot_id="slot-003",
            provider_id="turbotext",
            operation_id="image_edit",
            settings={"prompt": "a postcard"},
            is_active=True,
        )
        port = free_port()
        stack = stack_factory(
            WORKER_METRICS_PORT=str(port),
            TURBOTEXT_BASE_URL=fake.base_url,
            TURBOTEXT_API_KEY=key,
            TURBOTEXT_POLL_SECONDS="0.05",
            PROVIDER_RETRY_BACKOFF_SECONDS="0.1",
        )
        for slot_id, color in (("slot-001", (1, 2, 3)), ("slot-002", (4, 5, 6))):
            response = post_photo(stack, slot_id, make_photo(color=color), ingest_password)
            assert response.status_code == 200, stack.logs()
        response = post_photo(stack, "slot-003", make_photo(color=(7, 8, 9)), ingest_password)
        assert response.status_code == 200, stack.logs()
    finally:
        fake.stop()

    # Each job is counted just after its finalization commits: maybe a moment after the answer.
    def all_finalized() -> Samples | None:
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        return samples if total(samples, "photobooth_jobs_finalized_total") == 3 else None

    worker = scrape_until(all_finalized)

    attempts = "photobooth_provider_attempts_total"
    assert value(worker, attempts, provider="local", outcome="success") == 1, stack.logs()
    assert value(worker, attempts, provider="testing", outcome="retry") == 1
    assert value(worker, attempts, provider="testing", outcome="success") == 1
    assert value(worker, attempts, provider="turbotext", outcome="success") == 1
    assert value(
        worker, "photobooth_provider_retries_total", provider="testing", code="unavailable"
    )
    assert value(worker, "photobooth_provider_errors_total", provider="testing", code="unavailable")
    duration = "photobooth_provider_attempt_duration_seconds_count"
    assert value(worker, duration, provider="turbotext", outcome="success") == 1
    # providers/http.py: create_queue, 2 "reconnect" polls and the ready one, the download.
    http = "photobooth_provider_http_requests_total"
    assert value(worker, http, provider="turbotext", status="2xx") == 5
    assert total(worker, http) == 5
    assert (
        value(
            worker, "photobooth_provider_http_request_duration_seconds_count", provider="turbotext"
        )
        == 5
    )
    assert value(worker, "photobooth_turbotext_polls_total", outcome="ready") == 3
    assert value(worker, "photobooth_turbotext_polled_tasks_total", outcome="ready") == 1
    # Queue wait and processing time, observed when each job was finalized.
    for provider in ("local", "testing", "turbotext"):
        assert value(worker, "photobooth_job_queue_wait_seconds_count", provider=provider) == 1
        processing = "photobooth_job_processing_seconds_count"
        assert value(worker, processing, provider=provider, outcome="success") == 1
    # The worker's own queries, through django-prometheus's database metrics.
    assert total(worker, "django_db_execute_total") > 0
    # Database state is the web's to report, so that it is never counted twice.
    assert not total(worker, "photobooth_jobs")


def test_several_uvicorn_processes_report_their_sum(
    live_db: None, tmp_path: Path, photo_jpeg: bytes
) -> None:
    from ingest.services import set_ingest_password

    set_ingest_password(password=INGEST_PASSWORD, changed_by="tests")
    directory = tmp_path / "prometheus"
    directory.mkdir()
    port = free_port()
    web = ManagedProcess(
        name="web",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "photobooth.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=process_environment(PROMETHEUS_MULTIPROC_DIR=str(directory)),
        log_path=tmp_path / "web.log",
    ).start()
    base_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(answers, timeout=30)
        uploads = 12
        for _ in range(uploads):  # a new connection each: the kernel spreads them
            response = requests.post(
                f"{base_url}/ingest/slot-001",
                data={"password": "wrong"},
                files={"fileToUpload": ("p.jpg", photo_jpeg, "image/jpeg")},
                timeout=10,
            )
            assert response.status_code == 401
        # Whichever process answers the scrape reports every process's uploads.
        for _ in range(4):
            samples = scrape(f"{base_url}/metrics")
            assert value(samples, f"{INGEST}_count", slot="unknown", outcome="401") == uploads
        # Each process wrote its own files there.
        assert len(list(directory.glob("histogram_*.db"))) >= 2
    finally:
        web.stop()


# --- What the dashboards and alerts may refer to --------------------------------------------------
@pytest.mark.django_db
def test_exported_names_cover_every_figure() -> None:
    names = metrics.exported_metric_names()
    for name in (
        "photobooth_ingest_duration_seconds_bucket",
        "photobooth_jobs",
        "photobooth_jobs_finalized_total",
        "photobooth_job_queue_wait_seconds_bucket",
        "photobooth_job_processing_seconds_bucket",
        "photobooth_provider_attempts_total",
        "photobooth_provider_http_requests_total",
        "photobooth_turbotext_polls_total",
        "photobooth_media_storage_bytes",
        "photobooth_workers_live",
        "django_db_query_duration_seconds_bucket",
        "django_http_requests_latency_seconds_by_view_method_bucket",
    ):
        assert name in names, name


# --- The Grafana dashboard ------------------------------------------------------------------------
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "photobooth.json"


def dashboard_panels() -> list[dict[str, Any]]:
    document = json.loads(DASHBOARD.read_text())
    return [panel for panel in document["panels"] if panel["type"] != "row"]


def test_the_dashboard_is_valid_json_with_one_query_at_least_per_panel() -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] and document["title"]
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


@pytest.mark.django_db
def test_every_dashboard_query_names_metrics_we_export() -> None:
    exported = metrics.exported_metric_names()
    used: set[str] = set()
    for panel in dashboard_panels():
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names - exported == set(), panel["title"]
            used |= names
    # The main figures are all on it.
    assert {
        "photobooth_ingest_duration_seconds_bucket",
        "photobooth_ingest_duration_seconds_count",
        "photobooth_jobs",
        "photobooth_job_queue_wait_seconds_bucket",
        "photobooth_job_processing_seconds_bucket",
        "photobooth_provider_errors_total",
        "photobooth_provider_retries_total",
        "photobooth_workers_live",
        "photobooth_media_storage_bytes",
    } <= used


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses the expressions of recording rules: one per dashboard query.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": target["expr"]}
        for index, target in enumerate(
            target for panel in dashboard_panels() for target in panel["targets"]
        )
    ]
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
